import { describe, expect, it } from 'vitest';
import {
  comparisonPairs,
  controlOf,
  guardrails,
  header,
  liftSeries,
  scorecards,
  segmentSeries,
  timeline,
  unitsSeries,
} from '../src/shape/results';
import { result, results } from './fixtures';

describe('header', () => {
  it('reports units, shares against the weights, and freshness', () => {
    const r = result(2, 0.5, 5000);
    const h = header(r, { variants: [{ key: 'control', weight_bp: 5000 }, { key: 'treatment', weight_bp: 5000 }] });
    expect(h.units.map((u) => u.variant)).toEqual(['control', 'treatment']);
    expect(h.units[0]).toEqual({ variant: 'control', units: 500, share: 500 / 1010, expected: 0.5 });
    expect(h.totalUnits).toBe(1010);
    expect(h.lagMs).toBe(1200);
    expect(h.asOfMs).toBe(3800);
    expect(h.look).toBe(2);
    expect(h.informationFraction).toBe(0.5);
    expect(h.decidedAtLook).toBeNull();
    expect(h.pausedByGuardrail).toBeNull();
  });

  it('has no expected share without a definition, and carries a guardrail pause', () => {
    const h = header(result(1, 0.2, 1, { paused_by_guardrail: 'latency got worse', decided_at_look: 1, coverage: undefined }), null);
    expect(h.units.every((u) => u.expected === null)).toBe(true);
    expect(h.pausedByGuardrail).toBe('latency got worse');
    expect(h.decidedAtLook).toBe(1);
    expect(h.lagMs).toBeNull();
  });
});

describe('scorecards', () => {
  it('puts the control first and keeps the API numbers', () => {
    const [primary, guardrail] = scorecards(result(3, 0.75, 1));
    expect(primary!.metric).toBe('purchase');
    expect(primary!.rows.map((r) => [r.variant, r.control])).toEqual([
      ['control', true],
      ['treatment', false],
    ]);
    const t = primary!.rows[1]!;
    expect(t.n).toBe(1020);
    expect(t.mean).toBe(0.12);
    expect(t.comparison!.rel_diff).toBe(0.2 * 0.75);
    expect(t.comparison!.interval!.rel).toEqual([-0.15, 0.55]);
    expect(t.decision).toMatchObject({ state: 'crossed', crossedAtLook: 3 });
    expect(primary!.rows[0]!.decision).toBeNull();
    expect(primary!.intervalKind).toBe('repeated');
    expect(primary!.level).toBe(0.95);
    expect(guardrail!.role).toBe('guardrail');
    expect(guardrail!.rows[1]!.decision!.state).toBe('not_crossed');
  });

  it('gives conversion rates a Wilson interval and other means none', () => {
    const [primary, guardrail] = scorecards(result(1, 0.25, 1));
    const [lo, hi] = primary!.rows[0]!.meanInterval!;
    expect(lo).toBeLessThan(0.1);
    expect(hi).toBeGreaterThan(0.1);
    expect(guardrail!.rows[0]!.meanInterval).toBeNull();
  });

  it('orders primaries before guardrails', () => {
    const r = result(1, 0.25, 1);
    r.metrics.reverse();
    expect(scorecards(r).map((c) => c.role)).toEqual(['primary', 'guardrail']);
  });

  it('reads a harmful guardrail and a pending fixed-horizon test', () => {
    const r = result(0, 0.4, 1, { analysis: 'fixed_horizon' });
    r.metrics[1]!.comparisons[0]!.harmful = true;
    const [primary, guardrail] = scorecards(r);
    expect(primary!.rows[1]!.decision!.state).toBe('fixed_horizon_pending');
    expect(guardrail!.rows[1]!.decision!.state).toBe('harmful');
  });

  it('finds the control as the variant without a comparison', () => {
    const m = result(1, 0.25, 1).metrics[0]!;
    m.variants.reverse();
    expect(controlOf(m)).toBe('control');
  });
});

describe('series', () => {
  it('draws every look, then the latest when it is newer', () => {
    const r = results();
    expect(timeline(r).map((t) => t.source)).toEqual(['look', 'look', 'look', 'latest']);
    expect(timeline({ looks: r.looks, latest: r.looks[2]! }).map((t) => t.source)).toEqual(['look', 'look', 'look']);
    expect(timeline({ looks: [], latest: null })).toEqual([]);
  });

  it('takes the lift, its interval and the boundary from each look', () => {
    const s = liftSeries(results(), 'purchase', 'treatment');
    expect(s).toHaveLength(4);
    expect(s[0]).toEqual({
      source: 'look',
      look: 1,
      information_fraction: 0.25,
      computed_at_ms: 1000,
      rel_diff: 0.05,
      lo: -0.15,
      hi: 0.55,
      kind: 'repeated',
      critical_value: 2.5,
      boundary_lift: 2.5 * 0.14,
    });
    expect(s[3]!.source).toBe('latest');
    expect(s[3]!.information_fraction).toBe(0.8);
  });

  it('draws no boundary for intervals that are not repeated, and skips missing comparisons', () => {
    expect(liftSeries(results(), 'latency', 'treatment').every((p) => p.boundary_lift === null)).toBe(true);
    expect(liftSeries(results(), 'purchase', 'nope')).toEqual([]);
    const before = liftSeries({ looks: [], latest: result(0, 0.1, 1) }, 'purchase', 'treatment');
    expect(before[0]).toMatchObject({ lo: null, hi: null, boundary_lift: null, kind: null });
  });

  it('lists units per variant per look', () => {
    const s = unitsSeries(results());
    expect(s).toHaveLength(8);
    expect(s[0]).toEqual({ source: 'look', look: 1, information_fraction: 0.25, variant: 'control', units: 250 });
  });

  it('lists each segment value with its lift and interval', () => {
    const s = segmentSeries(result(1, 0.25, 1), 'purchase', 'treatment');
    expect(s.map((p) => p.label)).toEqual(['country = NZ', 'country = AU']);
    expect(s[1]).toMatchObject({ units: 401, rel_diff: 0.2, kind: 'fixed_horizon' });
    expect(s[1]!.lo).toBeCloseTo(-0.39, 12);
    expect(segmentSeries(result(1, 0.25, 1), 'latency', 'treatment')).toEqual([]);
  });

  it('pairs every metric with every treatment, and lists guardrails', () => {
    expect(comparisonPairs(result(1, 0.25, 1))).toEqual([
      { metric: 'purchase', variant: 'treatment', role: 'primary' },
      { metric: 'latency', variant: 'treatment', role: 'guardrail' },
    ]);
    expect(guardrails(result(1, 0.25, 1))).toEqual([
      { metric: 'latency', threshold: 0.05, method: 'confidence sequence', harmDetected: false, harmfulVariants: [] },
    ]);
  });
});
