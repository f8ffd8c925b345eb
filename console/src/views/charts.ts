// The results page's charts, drawn with Observable Plot as SVG. Each chart's <figure> carries
// the points it drew in `data-series` (the API's numbers, unrounded), so a test can compare
// them with the API's answer and a reader can copy them.

import * as Plot from '@observablehq/plot';
import { h, type Child } from '../dom';
import { pct, signedPct } from '../shape/format';
import type { LiftPoint, SegmentPoint, UnitsPoint } from '../shape/results';

const WIDTH = 560;
const INK = '#1d4ed8';
const BOUNDARY = '#b45309';

function figure(
  chart: string,
  title: string,
  caption: Child,
  series: unknown[],
  data: Record<string, string>,
  plot: Element | null,
  empty: string,
): HTMLElement {
  return h(
    'figure',
    { class: 'chart', dataset: { chart, series: JSON.stringify(series), ...data } },
    h('h4', null, title),
    plot ?? h('p', { class: 'empty' }, empty),
    h('figcaption', null, caption),
  );
}

const liftTitle = (p: LiftPoint) =>
  `${p.source === 'latest' ? 'latest' : `look ${p.look}`} · information ${pct(p.information_fraction, 1)}\n` +
  `lift ${signedPct(p.rel_diff)} [${signedPct(p.lo)}, ${signedPct(p.hi)}]` +
  (p.boundary_lift !== null ? `\nboundary ±${pct(p.boundary_lift)}` : '');

/** Cumulative relative lift over looks, its interval band and the sequential boundary. */
export function liftChart(metric: string, variant: string, series: LiftPoint[]): HTMLElement {
  const pts = series.filter((p) => p.rel_diff !== null);
  const band = pts.filter((p) => p.lo !== null && p.hi !== null);
  const bound = pts.filter((p) => p.boundary_lift !== null);
  const maxX = Math.max(1, ...pts.map((p) => p.information_fraction));
  const plot =
    pts.length === 0
      ? null
      : Plot.plot({
          width: WIDTH,
          height: 270,
          marginLeft: 56,
          marginBottom: 40,
          ariaLabel: `Relative lift of ${variant} on ${metric} over looks`,
          x: { label: 'Information fraction →', labelAnchor: 'center', domain: [0, maxX], tickFormat: '.0%' },
          y: { label: '↑ Relative lift', tickFormat: '+.1%', grid: true },
          marks: [
            Plot.ruleY([0], { stroke: '#6b7280' }),
            Plot.areaY(band, { x: 'information_fraction', y1: 'lo', y2: 'hi', fill: INK, fillOpacity: 0.16 }),
            Plot.line(bound, { x: 'information_fraction', y: 'boundary_lift', stroke: BOUNDARY, strokeDasharray: '5,3' }),
            Plot.line(bound, {
              x: 'information_fraction',
              y: (p: LiftPoint) => -(p.boundary_lift ?? 0),
              stroke: BOUNDARY,
              strokeDasharray: '5,3',
            }),
            Plot.line(pts, { x: 'information_fraction', y: 'rel_diff', stroke: INK, strokeWidth: 2 }),
            Plot.dot(pts, {
              x: 'information_fraction',
              y: 'rel_diff',
              r: 3.5,
              stroke: INK,
              fill: (p: LiftPoint) => (p.source === 'latest' ? 'white' : INK),
              title: liftTitle,
            }),
          ],
        });
  return figure(
    'lift',
    `${metric}: ${variant} vs control`,
    h(
      'span',
      null,
      'Line: relative lift at each look (hollow dot: the latest result). Band: the interval the analysis publishes. ',
      bound.length > 0 ? 'Dashed: ±c·SE, the lift the interval must pass to exclude 0 at that look.' : '',
    ),
    series,
    { metric, variant },
    plot,
    'No look yet: the first formal look comes as information accrues.',
  );
}

/** Units per variant over looks. */
export function unitsChart(series: UnitsPoint[]): HTMLElement {
  const maxX = Math.max(1, ...series.map((p) => p.information_fraction));
  const plot =
    series.length === 0
      ? null
      : Plot.plot({
          width: WIDTH,
          height: 250,
          marginLeft: 64,
          marginBottom: 40,
          ariaLabel: 'Units per variant over looks',
          color: { legend: true },
          x: { label: 'Information fraction →', labelAnchor: 'center', domain: [0, maxX], tickFormat: '.0%' },
          y: { label: '↑ Units', grid: true, zero: true },
          marks: [
            Plot.line(series, { x: 'information_fraction', y: 'units', stroke: 'variant' }),
            Plot.dot(series, {
              x: 'information_fraction',
              y: 'units',
              fill: 'variant',
              r: 3,
              title: (p: UnitsPoint) => `${p.variant}: ${p.units} units (${p.source === 'latest' ? 'latest' : `look ${p.look}`})`,
            }),
          ],
        });
  return figure(
    'units',
    'Units per variant',
    'Enrolled units of each variant at each look, then the latest result.',
    series,
    {},
    plot,
    'No look yet.',
  );
}

/** Each segment value's relative lift with its (exploratory, fixed-horizon) interval. */
export function segmentChart(metric: string, variant: string, series: SegmentPoint[]): HTMLElement {
  const pts = series.filter((p) => p.rel_diff !== null);
  const labels = pts.map((p) => p.label);
  const longest = Math.max(0, ...labels.map((l) => l.length));
  const plot =
    pts.length === 0
      ? null
      : Plot.plot({
          width: WIDTH,
          height: 56 + 22 * pts.length,
          marginBottom: 40,
          marginLeft: Math.min(260, 16 + longest * 6.5),
          ariaLabel: `Relative lift of ${variant} on ${metric} per segment`,
          x: { label: 'Relative lift →', labelAnchor: 'center', tickFormat: '+.0%', grid: true },
          y: { label: null, domain: labels },
          marks: [
            Plot.ruleX([0], { stroke: '#6b7280' }),
            Plot.ruleY(
              pts.filter((p) => p.lo !== null && p.hi !== null),
              { y: 'label', x1: 'lo', x2: 'hi', stroke: INK, strokeOpacity: 0.6, strokeWidth: 2 },
            ),
            Plot.dot(pts, {
              x: 'rel_diff',
              y: 'label',
              fill: INK,
              r: 3.5,
              title: (p: SegmentPoint) =>
                `${p.label} (${p.units} units)\nlift ${signedPct(p.rel_diff)} [${signedPct(p.lo)}, ${signedPct(p.hi)}]`,
            }),
          ],
        });
  return figure(
    'segments',
    `${metric}: ${variant} vs control by segment`,
    'Exploratory: fixed-horizon intervals, never a decision.',
    series,
    { metric, variant },
    plot,
    'No segment has results for this comparison.',
  );
}
