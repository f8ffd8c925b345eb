// A small result as the analysis service writes it: two variants, one primary conversion
// metric, one guardrail, two segment values.

import type { ExperimentResult, Results } from '../src/types';

export function result(look: number, fraction: number, computedAt: number, overrides: Partial<ExperimentResult> = {}): ExperimentResult {
  return {
    experiment_id: '0190d0c2-0000-7000-8000-000000000001',
    experiment_key: 'checkout',
    computed_at_ms: computedAt,
    analysis: 'sequential',
    look,
    information_fraction: fraction,
    boundary: look > 0 ? 2.5 : null,
    planned_units_per_variant: 1000,
    units: { control: 500 * fraction * 2, treatment: 510 * fraction * 2 },
    excluded_units: 2,
    srm: { chi_square: 0.1, p_value: 0.75, detected: false },
    metrics: [
      {
        metric: 'purchase',
        event: 'purchase',
        aggregation: 'conversion',
        role: 'primary',
        variants: [
          { variant: 'control', n: 1000, mean: 0.1 },
          { variant: 'treatment', n: 1020, mean: 0.12 },
        ],
        comparisons: [
          {
            variant: 'treatment',
            abs_diff: 0.02,
            rel_diff: 0.2 * fraction,
            abs_std_error: 0.0138,
            rel_std_error: 0.14,
            statistic: 1.45,
            p_value: 0.147,
            p_value_holm: 0.147,
            interval: look > 0 ? { kind: 'repeated', level: 0.95, look, critical_value: 2.5, abs: [-0.0145, 0.0545], rel: [-0.15, 0.55] } : null,
            crossed_at_look: look >= 3 ? 3 : undefined,
          },
        ],
        p_value_family: 'primary metrics × treatments (1)',
      },
      {
        metric: 'latency',
        event: 'page_load',
        aggregation: 'mean',
        role: 'guardrail',
        variants: [
          { variant: 'control', n: 990, mean: 230.5 },
          { variant: 'treatment', n: 1001, mean: 231.25 },
        ],
        comparisons: [
          {
            variant: 'treatment',
            abs_diff: 0.75,
            rel_diff: 0.00325,
            abs_std_error: 2,
            rel_std_error: 0.009,
            statistic: 0.37,
            p_value: 0.7,
            p_value_holm: 0.7,
            interval: { kind: 'always_valid', level: 0.95, abs: [-6, 7.5], rel: [-0.026, 0.033] },
          },
        ],
        p_value_family: 'guardrail metrics × treatments (1)',
        guardrail: { threshold: 0.05, method: 'confidence sequence', harmful_variants: [], harm_detected: false },
      },
    ],
    segments: ['NZ', 'AU'].map((value, i) => ({
      attribute: 'country',
      value,
      units: 400 + i,
      exploratory: true,
      metrics: [
        {
          metric: 'purchase',
          event: 'purchase',
          aggregation: 'conversion' as const,
          role: 'primary' as const,
          variants: [
            { variant: 'control', n: 200, mean: 0.1 },
            { variant: 'treatment', n: 200 + i, mean: 0.11 + i / 100 },
          ],
          comparisons: [
            {
              variant: 'treatment',
              abs_diff: 0.01 + i / 100,
              rel_diff: 0.1 + i / 10,
              abs_std_error: 0.03,
              rel_std_error: 0.3,
              statistic: 0.3,
              p_value: 0.76,
              p_value_holm: 0.76,
              interval: { kind: 'fixed_horizon' as const, level: 0.95, critical_value: 1.96, abs: [-0.05, 0.07], rel: [-0.49 + i / 10, 0.69 + i / 10] as [number, number] },
            },
          ],
          p_value_family: '',
        },
      ],
    })),
    segment_comparisons: 2,
    warnings: [],
    coverage: { as_of_ms: computedAt - 1200, ingest_position: 42, newest_event_received_ms: computedAt - 1300, lag_ms: 1200 },
    ...overrides,
  };
}

export function results(): Results {
  const looks = [result(1, 0.25, 1000), result(2, 0.5, 2000), result(3, 0.75, 3000)];
  return { looks, latest: result(3, 0.8, 3500) };
}
