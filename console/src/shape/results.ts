// A result (ExperimentResult) shaped for the results page: the header's facts, one scorecard per
// metric, and the series each chart draws. Every number is the API's own, unrounded, so the page
// can publish it in data attributes for tests and for people who copy it.

import type {
  ComparisonResult,
  Definition,
  ExperimentResult,
  GuardrailResult,
  IntervalKind,
  MetricResult,
  Results,
} from '../types';
import { wilson } from './stats';

export interface UnitsRow {
  variant: string;
  units: number;
  /** Observed share of the enrolled units. */
  share: number | null;
  /** The share the definition's weights ask for, when the definition is known. */
  expected: number | null;
}

export interface Header {
  key: string;
  analysis: ExperimentResult['analysis'];
  holdout: boolean;
  look: number;
  informationFraction: number;
  boundary: number | null;
  plannedUnitsPerVariant: number | null;
  units: UnitsRow[];
  totalUnits: number;
  excludedUnits: number;
  srm: ExperimentResult['srm'];
  decidedAtLook: number | null;
  pausedByGuardrail: string | null;
  computedAtMs: number;
  /** How old the data were when computed (`coverage.lag_ms`). */
  lagMs: number | null;
  /** Data as of (`coverage.as_of_ms`): every event stored before it is counted. */
  asOfMs: number | null;
  warnings: string[];
  segmentComparisons: number;
}

export function header(result: ExperimentResult, definition: Definition | null): Header {
  const weights = variantWeights(definition);
  const entries = Object.entries(result.units);
  const total = entries.reduce((s, [, u]) => s + u, 0);
  const weightTotal = [...weights.values()].reduce((s, w) => s + w, 0);
  return {
    key: result.experiment_key,
    analysis: result.analysis,
    holdout: result.holdout === true,
    look: result.look,
    informationFraction: result.information_fraction,
    boundary: result.boundary,
    plannedUnitsPerVariant: result.planned_units_per_variant,
    units: orderVariants(entries.map(([v]) => v), result).map((variant) => {
      const units = result.units[variant] ?? 0;
      const w = weights.get(variant);
      return {
        variant,
        units,
        share: total > 0 ? units / total : null,
        expected: w !== undefined && weightTotal > 0 ? w / weightTotal : null,
      };
    }),
    totalUnits: total,
    excludedUnits: result.excluded_units,
    srm: result.srm,
    decidedAtLook: result.decided_at_look ?? null,
    pausedByGuardrail: result.paused_by_guardrail ?? null,
    computedAtMs: result.computed_at_ms,
    lagMs: result.coverage?.lag_ms ?? null,
    asOfMs: result.coverage?.as_of_ms ?? null,
    warnings: result.warnings,
    segmentComparisons: result.segment_comparisons,
  };
}

function variantWeights(definition: Definition | null): Map<string, number> {
  const out = new Map<string, number>();
  const variants = definition?.variants;
  if (Array.isArray(variants)) {
    for (const v of variants) {
      if (v && typeof v.key === 'string' && typeof v.weight_bp === 'number') out.set(v.key, v.weight_bp);
    }
  }
  return out;
}

/** The control first, then the treatments in the order the analysis compares them. */
function orderVariants(variants: string[], result: ExperimentResult): string[] {
  const m = result.metrics[0];
  if (!m) return variants;
  const order = [controlOf(m), ...m.comparisons.map((c) => c.variant)];
  const rank = (v: string) => {
    const i = order.indexOf(v);
    return i < 0 ? order.length : i;
  };
  return [...variants].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** The variant the others are compared with: the one that has no comparison. */
export function controlOf(m: MetricResult): string {
  const treated = new Set(m.comparisons.map((c) => c.variant));
  return m.variants.find((v) => !treated.has(v.variant))?.variant ?? m.variants[0]?.variant ?? '';
}

export interface ScoreRow {
  metric: string;
  variant: string;
  control: boolean;
  n: number;
  mean: number | null;
  /** Wilson interval of a conversion rate; null for other aggregations (no variance published). */
  meanInterval: [number, number] | null;
  comparison: ComparisonResult | null;
  decision: Decision | null;
}

export type DecisionState = 'crossed' | 'harmful' | 'not_crossed' | 'fixed_horizon_pending';

export interface Decision {
  state: DecisionState;
  /** The look at which the comparison's interval first excluded 0. */
  crossedAtLook: number | null;
  /** Which side it crossed on: the interval lies above 0 (1) or below it (−1). */
  direction: 1 | -1 | 0;
  text: string;
}

export interface Scorecard {
  metric: string;
  event: string;
  aggregation: MetricResult['aggregation'];
  role: MetricResult['role'];
  family: string;
  level: number | null;
  intervalKind: IntervalKind | null;
  rows: ScoreRow[];
  guardrail: GuardrailResult | null;
}

/** One scorecard per metric: primaries first, then guardrails, each in the analysis' order. */
export function scorecards(result: ExperimentResult): Scorecard[] {
  const cards = result.metrics.map((m) => scorecard(m, result));
  return [...cards.filter((c) => c.role === 'primary'), ...cards.filter((c) => c.role !== 'primary')];
}

export function scorecard(m: MetricResult, result: ExperimentResult): Scorecard {
  const control = controlOf(m);
  const firstInterval = m.comparisons.find((c) => c.interval)?.interval ?? null;
  const level = firstInterval?.level ?? null;
  const byVariant = new Map(m.comparisons.map((c) => [c.variant, c]));
  const order = [control, ...m.comparisons.map((c) => c.variant)];
  const rows = order
    .map((variant) => m.variants.find((v) => v.variant === variant))
    .filter((v): v is NonNullable<typeof v> => v !== undefined)
    .map((v) => {
      const comparison = byVariant.get(v.variant) ?? null;
      return {
        metric: m.metric,
        variant: v.variant,
        control: v.variant === control,
        n: v.n,
        mean: v.mean,
        meanInterval:
          m.aggregation === 'conversion' && v.mean !== null ? wilson(v.mean, v.n, level ?? 0.95) : null,
        comparison,
        decision: comparison ? decide(comparison, m, result) : null,
      };
    });
  return {
    metric: m.metric,
    event: m.event,
    aggregation: m.aggregation,
    role: m.role,
    family: m.p_value_family,
    level,
    intervalKind: firstInterval?.kind ?? null,
    rows,
    guardrail: m.guardrail ?? null,
  };
}

function decide(c: ComparisonResult, m: MetricResult, result: ExperimentResult): Decision {
  const iv = c.interval?.abs ?? c.interval?.rel ?? null;
  const direction: 1 | -1 | 0 = iv ? (iv[0] > 0 ? 1 : iv[1] < 0 ? -1 : 0) : 0;
  if (m.role === 'guardrail') {
    return c.harmful
      ? { state: 'harmful', crossedAtLook: null, direction, text: 'Harmful beyond the tolerated change' }
      : { state: 'not_crossed', crossedAtLook: null, direction, text: 'No harm beyond the tolerated change' };
  }
  if (c.crossed_at_look !== undefined && c.crossed_at_look !== null) {
    const side = direction > 0 ? 'above 0' : direction < 0 ? 'below 0' : 'excluding 0';
    return {
      state: 'crossed',
      crossedAtLook: c.crossed_at_look,
      direction,
      text: `Crossed at look ${c.crossed_at_look} (interval ${side})`,
    };
  }
  if (result.analysis === 'fixed_horizon' && result.information_fraction < 1) {
    return {
      state: 'fixed_horizon_pending',
      crossedAtLook: null,
      direction,
      text: 'Undecided: one test at the planned sample',
    };
  }
  return { state: 'not_crossed', crossedAtLook: null, direction, text: 'Not crossed' };
}

/** Every (metric, treatment) pair of a result, in scorecard order. */
export function comparisonPairs(result: ExperimentResult): { metric: string; variant: string; role: string }[] {
  return scorecards(result).flatMap((card) =>
    card.rows.filter((r) => !r.control).map((r) => ({ metric: card.metric, variant: r.variant, role: card.role })),
  );
}

export interface LiftPoint {
  /** A formal look's recorded result, or the latest result when it is newer than the last look. */
  source: 'look' | 'latest';
  look: number;
  information_fraction: number;
  computed_at_ms: number;
  rel_diff: number | null;
  lo: number | null;
  hi: number | null;
  kind: IntervalKind | null;
  /** The multiplier of the standard error behind a repeated interval (the look's boundary c_k). */
  critical_value: number | null;
  /** The lift the interval must pass to exclude 0 at that look: c_k × SE of the relative lift. */
  boundary_lift: number | null;
}

/** The results a chart over looks draws: every look, then the latest when it is newer. */
export function timeline(results: Results): { source: 'look' | 'latest'; result: ExperimentResult }[] {
  const out: { source: 'look' | 'latest'; result: ExperimentResult }[] = results.looks.map((result) => ({ source: 'look', result }));
  const latest = results.latest;
  const last = results.looks[results.looks.length - 1];
  if (latest && (!last || latest.computed_at_ms > last.computed_at_ms)) out.push({ source: 'latest', result: latest });
  return out;
}

export function liftSeries(results: Results, metric: string, variant: string): LiftPoint[] {
  return timeline(results).flatMap(({ source, result }) => {
    const c = result.metrics.find((m) => m.metric === metric)?.comparisons.find((x) => x.variant === variant);
    if (!c) return [];
    const iv = c.interval;
    const critical = iv?.kind === 'repeated' ? (iv.critical_value ?? result.boundary) : null;
    return [
      {
        source,
        look: result.look,
        information_fraction: result.information_fraction,
        computed_at_ms: result.computed_at_ms,
        rel_diff: c.rel_diff,
        lo: iv?.rel?.[0] ?? null,
        hi: iv?.rel?.[1] ?? null,
        kind: iv?.kind ?? null,
        critical_value: critical ?? null,
        boundary_lift: critical !== null && critical !== undefined && c.rel_std_error !== null ? critical * c.rel_std_error : null,
      },
    ];
  });
}

export interface UnitsPoint {
  source: 'look' | 'latest';
  look: number;
  information_fraction: number;
  variant: string;
  units: number;
}

export function unitsSeries(results: Results): UnitsPoint[] {
  return timeline(results).flatMap(({ source, result }) =>
    Object.entries(result.units).map(([variant, units]) => ({
      source,
      look: result.look,
      information_fraction: result.information_fraction,
      variant,
      units,
    })),
  );
}

export interface SegmentPoint {
  attribute: string;
  value: string;
  label: string;
  units: number;
  metric: string;
  variant: string;
  rel_diff: number | null;
  lo: number | null;
  hi: number | null;
  kind: IntervalKind | null;
  level: number | null;
}

export function segmentSeries(result: ExperimentResult, metric: string, variant: string): SegmentPoint[] {
  return result.segments.flatMap((s) => {
    const c = s.metrics.find((m) => m.metric === metric)?.comparisons.find((x) => x.variant === variant);
    if (!c) return [];
    return [
      {
        attribute: s.attribute,
        value: s.value,
        label: `${s.attribute} = ${s.value}`,
        units: s.units,
        metric,
        variant,
        rel_diff: c.rel_diff,
        lo: c.interval?.rel?.[0] ?? null,
        hi: c.interval?.rel?.[1] ?? null,
        kind: c.interval?.kind ?? null,
        level: c.interval?.level ?? null,
      },
    ];
  });
}

export interface GuardrailRow {
  metric: string;
  threshold: number;
  method: string;
  harmDetected: boolean;
  harmfulVariants: string[];
}

export function guardrails(result: ExperimentResult): GuardrailRow[] {
  return result.metrics
    .filter((m) => m.role === 'guardrail' && m.guardrail)
    .map((m) => ({
      metric: m.metric,
      threshold: m.guardrail!.threshold,
      method: m.guardrail!.method,
      harmDetected: m.guardrail!.harm_detected,
      harmfulVariants: m.guardrail!.harmful_variants,
    }));
}
