// A synthetic experiment result in the analysis service's shape (`ExperimentResult` in
// services/cohort-analysis/src/analyze.rs): any number of metrics, segment values and looks,
// deterministic, for the results page's performance budget and its tests.

/** A small deterministic generator (mulberry32), so every run draws the same result. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function metricNames(n) {
  return Array.from({ length: n }, (_, i) => `metric_${i + 1}`);
}

function metricResult(rand, name, role, family, units, look, boundary) {
  const [cn, tn] = units;
  const cp = 0.08 + 0.04 * rand();
  const tp = cp * (1 + 0.1 * (rand() - 0.3));
  const se = Math.sqrt((cp * (1 - cp)) / Math.max(cn, 1) + (tp * (1 - tp)) / Math.max(tn, 1));
  const abs = tp - cp;
  const rel = abs / cp;
  const relSe = se / cp;
  const c = role === 'primary' ? boundary : 1.96;
  const crossed = role === 'primary' && Math.abs(abs / se) >= c ? look : undefined;
  const comparison = {
    variant: 'treatment',
    abs_diff: abs,
    rel_diff: rel,
    abs_std_error: se,
    rel_std_error: relSe,
    statistic: abs / se,
    p_value: Math.min(1, Math.exp(-Math.abs(abs / se))),
    p_value_holm: Math.min(1, 2 * Math.exp(-Math.abs(abs / se))),
    interval: {
      kind: role === 'primary' ? 'repeated' : 'always_valid',
      level: 0.95,
      ...(role === 'primary' ? { look, critical_value: c } : {}),
      abs: [abs - c * se, abs + c * se],
      rel: [rel - c * relSe, rel + c * relSe],
    },
    ...(crossed !== undefined ? { crossed_at_look: crossed } : {}),
  };
  return {
    metric: name,
    event: name,
    aggregation: 'conversion',
    role,
    variants: [
      { variant: 'control', n: cn, mean: cp },
      { variant: 'treatment', n: tn, mean: tp },
    ],
    comparisons: [comparison],
    p_value_family: family,
    ...(role === 'guardrail'
      ? { guardrail: { threshold: 0.05, method: 'always-valid confidence sequence', harmful_variants: [], harm_detected: false } }
      : {}),
  };
}

/**
 * `{latest, looks}` as GET /api/v1/environments/{env}/results/{key} answers: `looks` formal
 * looks (oldest first) and a latest result newer than the last look.
 */
export function syntheticResults({ key = 'perf-synthetic', metrics = 5, segmentValues = 20, looks = 50, seed = 7, names = metricNames(metrics) } = {}) {
  const rand = random(seed);
  const primaries = Math.ceil(names.length / 2);
  const roles = names.map((_, i) => (i < primaries ? 'primary' : 'guardrail'));
  const families = roles.map((r) =>
    r === 'primary' ? `primary metrics × treatments (${primaries})` : `guardrail metrics × treatments (${names.length - primaries})`,
  );
  const start = 1_700_000_000_000;
  const planned = 20_000;
  const at = (k, fraction) => {
    const perVariant = Math.round(planned * fraction);
    const units = [perVariant + Math.round(40 * (rand() - 0.5)), perVariant + Math.round(40 * (rand() - 0.5))];
    // O'Brien-Fleming-like: high early, about 2 at the end.
    const boundary = 2.0 / Math.sqrt(Math.max(fraction, 0.01));
    const computed = start + k * 600_000 + Math.round(fraction * 1000);
    return {
      experiment_id: '0190d0c2-7a3e-7cc0-9e3a-5d1a7b9e4f00',
      experiment_key: key,
      computed_at_ms: computed,
      analysis: 'sequential',
      look: k,
      information_fraction: fraction,
      boundary,
      planned_units_per_variant: planned,
      units: { control: units[0], treatment: units[1] },
      excluded_units: Math.round(3 * rand()),
      srm: { chi_square: rand(), p_value: 0.3 + 0.6 * rand(), detected: false },
      metrics: names.map((n, i) => metricResult(rand, n, roles[i], families[i], units, k, boundary)),
      segments: Array.from({ length: segmentValues }, (_, s) => {
        const segUnits = units.map((u) => Math.max(1, Math.round(u / segmentValues)));
        return {
          attribute: s % 2 === 0 ? 'country' : 'platform',
          value: `value-${String(s + 1).padStart(2, '0')}`,
          units: segUnits[0] + segUnits[1],
          exploratory: true,
          metrics: names.map((n, i) => {
            const m = metricResult(rand, n, roles[i], '', segUnits, k, boundary);
            // Segments are exploratory: fixed-horizon intervals, never a crossing.
            for (const c of m.comparisons) {
              c.interval = { ...c.interval, kind: 'fixed_horizon' };
              delete c.interval.look;
              delete c.crossed_at_look;
            }
            delete m.guardrail;
            return m;
          }),
        };
      }),
      segment_comparisons: segmentValues * names.length,
      warnings: [],
      coverage: { as_of_ms: computed - 1500, ingest_position: 1000 + k, newest_event_received_ms: computed - 1600, lag_ms: 1500 },
    };
  };
  // As the console's API answers: each look's result without its segments (the plots use
  // the looks' metrics; the segments shown are the latest result's).
  const recorded = Array.from({ length: looks }, (_, i) => {
    const { segments: _segments, warnings: _warnings, ...look } = at(i + 1, (i + 1) / (looks + 1));
    return { ...look, segment_comparisons: 0 };
  });
  const latest = at(looks, (looks + 0.5) / (looks + 1));
  latest.computed_at_ms = recorded[recorded.length - 1].computed_at_ms + 60_000;
  return { latest, looks: recorded };
}

/** The experiment entity the synthetic result belongs to. */
export function syntheticExperiment(key = 'perf-synthetic', names = metricNames(5)) {
  const half = Math.ceil(names.length / 2);
  return {
    kind: 'experiment',
    key,
    revision: 2,
    created_at_ms: 1_700_000_000_000,
    updated_at_ms: 1_700_000_100_000,
    definition: {
      id: '0190d0c2-7a3e-7cc0-9e3a-5d1a7b9e4f00',
      key,
      status: 'running',
      variants: [
        { key: 'control', weight_bp: 5000, control: true },
        { key: 'treatment', weight_bp: 5000 },
      ],
      primary_metrics: names.slice(0, half),
      guardrail_metrics: names.slice(half),
    },
  };
}
