// An experiment's results: the header (status, units, SRM, information fraction, look,
// freshness), a scorecard per metric, guardrails, plots over looks and by segment, and the
// experiment's audit trail. Every number shown carries the API's exact number in data-value.

import { ApiError } from '../api';
import type { Ctx } from '../context';
import { h, num, replace, type Child } from '../dom';
import { ago, dateTime, duration, fixed, int, pct, pValue, signed, signedPct, signedPoints, value } from '../shape/format';
import {
  comparisonPairs,
  guardrails,
  header,
  liftSeries,
  scorecards,
  segmentSeries,
  unitsSeries,
  type Scorecard,
  type ScoreRow,
} from '../shape/results';
import { entityStatus } from '../shape/lists';
import { ANALYSED, href } from '../router';
import type { AuditEntry, Entity, Kind, Results } from '../types';
import { badge, errorBlock, lifecycleActions } from './common';
import { liftChart, segmentChart, unitsChart } from './charts';
import { TRAIL_LIMIT } from './results-reads';

export async function resultsPage(ctx: Ctx, route: { kind: Kind; key: string }, into: HTMLElement): Promise<void> {
  const { kind, key } = route;
  const [results, entity, audit] = await Promise.all([
    ctx.api.results(ctx.env.key, key, ctx.signal),
    ctx.api.entity(ctx.env.key, kind, key, ctx.signal).catch((e: unknown) => {
      if (e instanceof ApiError && e.code === 'NOT_FOUND') return null;
      throw e;
    }),
    ctx.api
      .audit(ctx.env.key, { kind, key, limit: TRAIL_LIMIT }, ctx.signal)
      .then((r) => r.entries)
      .catch((e: unknown) => {
        if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') throw e;
        return e;
      }),
  ]);
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  const now = Date.now();
  replace(
    into,
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, h('span', { class: 'kind' }, 'Results'), ' ', key),
      entity ? badge(entityStatus(entity)) : null,
      h(
        'div',
        { class: 'actions' },
        entity && kind === 'experiment'
          ? lifecycleActions(ctx, entity, status, () => ctx.refresh())
          : null,
        h('a', { class: 'button', href: href({ name: 'entity', kind, key }) }, 'Definition'),
        h('button', { type: 'button', class: 'secondary', onclick: () => ctx.refresh() }, 'Refresh'),
      ),
    ),
    status,
    results.latest ? body(results, entity, now) : h('p', { class: 'empty', dataset: { empty: 'results' } }, noResult(kind)),
    auditTrail(kind, key, audit),
  );
}

function noResult(kind: Kind): string {
  return ANALYSED.includes(kind)
    ? 'No result yet: the analysis publishes one once units have been exposed and a cycle has run.'
    : 'This kind has no results.';
}

function body(results: Results, entity: Entity | null, now: number): Child {
  const latest = results.latest!;
  const head = header(latest, entity?.definition ?? null);
  const cards = scorecards(latest);
  const pairs = comparisonPairs(latest);
  const rails = guardrails(latest);
  const segmentCharts = pairs
    .map((p) => ({ p, series: segmentSeries(latest, p.metric, p.variant) }))
    .filter((x) => x.series.length > 0)
    .map((x) => segmentChart(x.p.metric, x.p.variant, x.series));
  const fact = (label: string, shown: Child, field?: string, v?: number | null) =>
    h('div', { class: 'fact' }, h('dt', null, label), field ? num('dd', String(shown), v, { field }) : h('dd', null, shown));

  return [
    head.pausedByGuardrail
      ? h('div', { class: 'alert', role: 'alert', dataset: { pausedByGuardrail: '' } }, h('strong', null, 'Paused by a guardrail. '), head.pausedByGuardrail)
      : null,
    head.srm.detected
      ? h(
          'div',
          { class: 'alert', role: 'alert', dataset: { srm: 'detected' } },
          h('strong', null, 'Sample ratio mismatch. '),
          'Units are not split as the weights ask: assignment or logging is broken somewhere, and the comparisons below cannot be trusted until it is found.',
        )
      : null,
    h(
      'section',
      { class: 'summary', 'aria-label': 'Summary' },
      h(
        'dl',
        { class: 'facts' },
        fact('Analysis', head.holdout ? 'holdout (general vs held out)' : head.analysis.replace('_', ' ')),
        fact('Look', int(head.look), 'look', head.look),
        fact('Information fraction', pct(head.informationFraction, 1), 'information_fraction', head.informationFraction),
        fact('Boundary (z)', fixed(head.boundary, 3), 'boundary', head.boundary),
        fact('Planned units per variant', int(head.plannedUnitsPerVariant), 'planned_units_per_variant', head.plannedUnitsPerVariant),
        fact(
          'Decision',
          head.decidedAtLook !== null ? `Decided at look ${head.decidedAtLook}` : 'Undecided',
          'decided_at_look',
          head.decidedAtLook,
        ),
        fact(
          'SRM check',
          h(
            'span',
            { dataset: { field: 'srm_detected', value: String(head.srm.detected) } },
            head.srm.detected ? 'Mismatch' : 'OK',
            ' · p = ',
            num('span', pValue(head.srm.p_value), head.srm.p_value, { field: 'srm_p_value' }),
            ' · χ² = ',
            num('span', fixed(head.srm.chi_square, 2), head.srm.chi_square, { field: 'srm_chi_square' }),
          ),
        ),
        fact(
          'Computed',
          h('span', null, num('span', dateTime(head.computedAtMs), head.computedAtMs, { field: 'computed_at_ms' }), ` (${ago(head.computedAtMs, now)})`),
        ),
        fact(
          'Data lag',
          h(
            'span',
            null,
            num('span', duration(head.lagMs), head.lagMs, { field: 'lag_ms' }),
            head.asOfMs !== null ? ` when computed · data as of ${ago(head.asOfMs, now)}` : '',
          ),
        ),
        fact('Excluded units', int(head.excludedUnits), 'excluded_units', head.excludedUnits),
      ),
      h(
        'table',
        { class: 'units' },
        h('caption', null, 'Units per variant'),
        h(
          'thead',
          null,
          h('tr', null, h('th', { scope: 'col' }, 'Variant'), h('th', { scope: 'col', class: 'num' }, 'Units'), h('th', { scope: 'col', class: 'num' }, 'Share'), h('th', { scope: 'col', class: 'num' }, 'Expected')),
        ),
        h(
          'tbody',
          null,
          head.units.map((u) =>
            h(
              'tr',
              null,
              h('th', { scope: 'row' }, u.variant),
              num('td', int(u.units), u.units, { field: 'units', variant: u.variant }),
              num('td', pct(u.share, 1), u.share, { field: 'share', variant: u.variant }),
              num('td', pct(u.expected, 1), u.expected, { field: 'expected_share', variant: u.variant }),
            ),
          ),
          h('tr', { class: 'total' }, h('th', { scope: 'row' }, 'Total'), num('td', int(head.totalUnits), head.totalUnits, { field: 'total_units' }), h('td'), h('td')),
        ),
      ),
      head.warnings.length > 0
        ? h('ul', { class: 'warnings', 'aria-label': 'Warnings' }, head.warnings.map((w) => h('li', null, w)))
        : null,
    ),
    h('h2', null, 'Scorecard'),
    cards.map(scorecardTable),
    rails.length > 0
      ? [
          h('h2', null, 'Guardrails'),
          h(
            'table',
            { class: 'guardrails' },
            h(
              'thead',
              null,
              h('tr', null, h('th', { scope: 'col' }, 'Metric'), h('th', { scope: 'col' }, 'Tolerated change'), h('th', { scope: 'col' }, 'Checked'), h('th', { scope: 'col' }, 'Status')),
            ),
            h(
              'tbody',
              null,
              rails.map((g) =>
                h(
                  'tr',
                  { dataset: { metric: g.metric, harm: String(g.harmDetected) } },
                  h('th', { scope: 'row' }, g.metric),
                  num('td', pct(g.threshold, 1), g.threshold, { metric: g.metric, field: 'threshold' }),
                  h('td', null, g.method),
                  h('td', { class: g.harmDetected ? 'bad' : 'good' }, g.harmDetected ? `Harmful: ${g.harmfulVariants.join(', ')}` : 'OK'),
                ),
              ),
            ),
          ),
        ]
      : null,
    h('h2', null, 'Over looks'),
    h('div', { class: 'charts' }, pairs.map((p) => liftChart(p.metric, p.variant, liftSeries(results, p.metric, p.variant))), unitsChart(unitsSeries(results))),
    segmentCharts.length > 0
      ? [
          h('h2', null, 'By segment'),
          h(
            'p',
            { class: 'hint' },
            `${int(head.segmentComparisons)} segment comparisons were made: read any one that looks significant with that many in mind.`,
          ),
          h('div', { class: 'charts' }, segmentCharts),
        ]
      : null,
  ];
}

const INTERVAL_NAMES = {
  repeated: 'repeated (valid at every look)',
  fixed_horizon: 'fixed-horizon (valid once, at the planned sample)',
  always_valid: 'always valid (a confidence sequence)',
};

function scorecardTable(card: Scorecard): HTMLElement {
  const rate = card.aggregation === 'conversion';
  const d = (r: ScoreRow, field: string) => ({ metric: card.metric, variant: r.variant, field });
  const abs = (x: number | null) => (rate ? signedPoints(x) : signed(x));
  return h(
    'section',
    { class: 'scorecard', dataset: { metric: card.metric, role: card.role } },
    h(
      'h3',
      null,
      card.metric,
      ' ',
      h('span', { class: 'tag' }, card.role),
      h('span', { class: 'sub' }, ` ${card.aggregation} of ${card.event}`),
    ),
    h(
      'table',
      null,
      h(
        'caption',
        null,
        card.level !== null && card.intervalKind
          ? `Intervals: ${pct(card.level, 0)} ${INTERVAL_NAMES[card.intervalKind]}. `
          : '',
        rate ? 'Rate intervals: Wilson score, computed by the console. ' : '',
        card.family ? `Holm-adjusted over ${card.family}.` : '',
      ),
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'Variant'),
          h('th', { scope: 'col', class: 'num' }, 'Units'),
          h('th', { scope: 'col', class: 'num' }, rate ? 'Rate' : 'Mean'),
          h('th', { scope: 'col', class: 'num' }, 'Difference'),
          h('th', { scope: 'col', class: 'num' }, 'Relative lift'),
          h('th', { scope: 'col', class: 'num' }, 'p (Holm)'),
          h('th', { scope: 'col' }, 'Decision'),
        ),
      ),
      h(
        'tbody',
        null,
        card.rows.map((r) => {
          const c = r.comparison;
          const iv = c?.interval ?? null;
          return h(
            'tr',
            { dataset: { metric: card.metric, variant: r.variant, decision: r.decision?.state } },
            h('th', { scope: 'row' }, r.variant, r.control ? h('span', { class: 'tag' }, 'control') : null),
            num('td', int(r.n), r.n, d(r, 'n')),
            h(
              'td',
              { class: 'num' },
              num('span', value(r.mean, rate), r.mean, d(r, 'mean')),
              r.meanInterval
                ? h(
                    'span',
                    { class: 'iv' },
                    ' [',
                    num('span', value(r.meanInterval[0], rate), r.meanInterval[0], d(r, 'mean_lo')),
                    ', ',
                    num('span', value(r.meanInterval[1], rate), r.meanInterval[1], d(r, 'mean_hi')),
                    ']',
                  )
                : null,
            ),
            c
              ? h(
                  'td',
                  { class: 'num' },
                  num('span', abs(c.abs_diff), c.abs_diff, d(r, 'abs_diff')),
                  iv?.abs
                    ? h('span', { class: 'iv' }, ' [', num('span', abs(iv.abs[0]), iv.abs[0], d(r, 'abs_lo')), ', ', num('span', abs(iv.abs[1]), iv.abs[1], d(r, 'abs_hi')), ']')
                    : null,
                )
              : h('td', { class: 'num muted' }, 'baseline'),
            c
              ? h(
                  'td',
                  { class: 'num' },
                  num('span', signedPct(c.rel_diff), c.rel_diff, d(r, 'rel_diff')),
                  iv?.rel
                    ? h('span', { class: 'iv' }, ' [', num('span', signedPct(iv.rel[0]), iv.rel[0], d(r, 'rel_lo')), ', ', num('span', signedPct(iv.rel[1]), iv.rel[1], d(r, 'rel_hi')), ']')
                    : h('span', { class: 'iv' }, ' (no interval yet)'),
                )
              : h('td'),
            c
              ? h(
                  'td',
                  { class: 'num' },
                  num('span', pValue(c.p_value), c.p_value, d(r, 'p_value')),
                  ' (',
                  num('span', pValue(c.p_value_holm), c.p_value_holm, d(r, 'p_value_holm')),
                  ')',
                )
              : h('td'),
            r.decision
              ? h(
                  'td',
                  { class: `decision ${r.decision.state}`, dataset: { ...d(r, 'decision'), value: r.decision.crossedAtLook ?? undefined, state: r.decision.state } },
                  r.decision.text,
                  c?.cuped?.variance_reduction != null ? h('span', { class: 'sub' }, ` · CUPED −${pct(c.cuped.variance_reduction, 0)} variance`) : null,
                )
              : h('td'),
          );
        }),
      ),
    ),
  );
}

function auditTrail(kind: Kind, key: string, audit: AuditEntry[] | unknown): HTMLElement {
  const all = `#/audit?kind=${kind}&key=${encodeURIComponent(key)}`;
  return h(
    'section',
    { class: 'trail', 'aria-label': 'Audit trail' },
    h('h2', null, 'Audit trail'),
    Array.isArray(audit)
      ? audit.length === 0
        ? h('p', { class: 'empty' }, 'No change recorded.')
        : h(
            'ol',
            { class: 'trail-list' },
            (audit as AuditEntry[]).map((e) =>
              h(
                'li',
                { dataset: { action: e.action, version: e.version } },
                h('time', { datetime: new Date(e.at_ms).toISOString() }, dateTime(e.at_ms)),
                ' ',
                h('strong', null, e.action),
                ` by ${e.actor_name || e.actor_key_id}`,
                e.reason ? h('span', { class: 'reason' }, ` — “${e.reason}”`) : null,
                ` (config version ${e.version})`,
              ),
            ),
          )
      : errorBlock(audit),
    h('p', null, h('a', { href: all }, 'All changes with their diffs')),
  );
}
