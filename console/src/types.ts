// The console API's shapes (console/API.md) and the analysis service's result
// (`ExperimentResult` in services/cohort-analysis/src/analyze.rs; serde names are JSON names).

export const KINDS = ['flag', 'experiment', 'segment', 'metric', 'layer', 'holdout'] as const;
export type Kind = (typeof KINDS)[number];

export interface Environment {
  id: string;
  key: string;
  name: string;
  version: number;
}

export interface Session {
  environments: Environment[];
}

/** A definition as the API holds it: the cohort-core model object of its kind. */
export type Definition = Record<string, unknown>;

export interface Entity {
  kind: Kind;
  key: string;
  revision: number;
  definition: Definition;
  created_at_ms: number;
  updated_at_ms: number;
}

export interface Write {
  entity: Entity | null;
  version: number;
}

export interface AuditEntry {
  id: string | number;
  version: number;
  actor_key_id: string;
  actor_name: string;
  action: string;
  kind: Kind;
  key: string;
  before: Definition | null;
  after: Definition | null;
  reason: string | null;
  at_ms: number;
}

export interface Propagation {
  version: number;
  connected: number;
  acknowledged: number;
  p50_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
}

export type ExperimentAction = 'start' | 'pause' | 'resume' | 'complete';
export type ExperimentStatus = 'draft' | 'running' | 'paused' | 'completed';

export interface Violation {
  field: string;
  description: string;
}

export interface ErrorBody {
  error: { code: string; message: string; violations?: Violation[] };
}

export type IntervalKind = 'repeated' | 'fixed_horizon' | 'always_valid';

export interface IntervalReport {
  kind: IntervalKind;
  level: number;
  look?: number;
  critical_value?: number;
  abs: [number, number] | null;
  rel: [number, number] | null;
}

export interface CupedReport {
  theta: number;
  unadjusted_abs_diff: number | null;
  unadjusted_rel_diff: number | null;
  unadjusted_abs_std_error: number | null;
  unadjusted_p_value: number | null;
  variance_reduction: number | null;
}

export interface ComparisonResult {
  variant: string;
  abs_diff: number | null;
  rel_diff: number | null;
  abs_std_error: number | null;
  rel_std_error: number | null;
  statistic: number | null;
  p_value: number | null;
  p_value_holm: number | null;
  interval: IntervalReport | null;
  crossed_at_look?: number;
  harmful?: boolean;
  cuped?: CupedReport;
}

export interface VariantStats {
  variant: string;
  n: number;
  mean: number | null;
}

export interface GuardrailResult {
  threshold: number;
  method: string;
  harmful_variants: string[];
  harm_detected: boolean;
}

export type Aggregation = 'conversion' | 'count' | 'sum' | 'mean' | 'ratio';

export interface MetricResult {
  metric: string;
  event: string;
  aggregation: Aggregation;
  role: 'primary' | 'guardrail';
  variants: VariantStats[];
  comparisons: ComparisonResult[];
  p_value_family: string;
  guardrail?: GuardrailResult;
}

export interface SegmentResult {
  attribute: string;
  value: string;
  units: number;
  exploratory: boolean;
  metrics: MetricResult[];
}

export interface SrmReport {
  chi_square: number | null;
  p_value: number | null;
  detected: boolean;
}

export interface ResultCoverage {
  as_of_ms: number;
  ingest_position: number;
  newest_event_received_ms: number | null;
  lag_ms: number;
}

export interface ExperimentResult {
  experiment_id: string;
  experiment_key: string;
  computed_at_ms: number;
  holdout?: boolean;
  analysis: 'sequential' | 'fixed_horizon';
  look: number;
  information_fraction: number;
  boundary: number | null;
  planned_units_per_variant: number | null;
  units: Record<string, number>;
  excluded_units: number;
  srm: SrmReport;
  metrics: MetricResult[];
  segments: SegmentResult[];
  segment_comparisons: number;
  warnings: string[];
  decided_at_look?: number;
  paused_by_guardrail?: string;
  coverage?: ResultCoverage;
}

export interface Results {
  latest: ExperimentResult | null;
  looks: ExperimentResult[];
}
