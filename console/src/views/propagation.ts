// Propagation: for each config version, the connected SDKs, how many acknowledged it and how
// long commit → applied took. Refreshes every 2 s while the page is open.

import { ApiError } from '../api';
import type { Ctx } from '../context';
import { h, num, replace } from '../dom';
import { duration, int, pct } from '../shape/format';
import { propagationRows } from '../shape/propagation';
import type { Propagation } from '../types';
import { errorBlock } from './common';

const EVERY_MS = 2000;
const LAST = 10;

export async function propagationPage(ctx: Ctx, _route: unknown, into: HTMLElement): Promise<void> {
  const tbody = h('tbody');
  const updated = h('p', { class: 'sub', role: 'status' });
  const problem = h('div', { 'aria-live': 'polite' });

  const draw = (versions: Propagation[]) => {
    replace(
      tbody,
      propagationRows(versions).map((r) =>
        h(
          'tr',
          {
            class: r.current ? 'current' : '',
            dataset: { version: r.version, connected: r.connected, acknowledged: r.acknowledged, complete: String(r.complete) },
          },
          h('th', { scope: 'row' }, String(r.version), r.current ? h('span', { class: 'tag' }, 'current') : null),
          num('td', int(r.connected), r.connected, { field: 'connected' }),
          h(
            'td',
            { class: 'num' },
            num('span', int(r.acknowledged), r.acknowledged, { field: 'acknowledged' }),
            r.share !== null
              ? h('span', { class: 'bar', role: 'img', 'aria-label': `${pct(r.share, 0)} acknowledged` }, h('span', { style: `width:${(r.share * 100).toFixed(1)}%` }))
              : null,
          ),
          num('td', duration(r.p50_ms), r.p50_ms, { field: 'p50_ms' }),
          num('td', duration(r.p99_ms), r.p99_ms, { field: 'p99_ms' }),
          num('td', duration(r.max_ms), r.max_ms, { field: 'max_ms' }),
        ),
      ),
    );
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every 2 s.`;
  };

  const fetchOnce = () => ctx.api.propagation(ctx.env.key, LAST, ctx.signal).then((r) => r.versions);
  draw(await fetchOnce());

  const tick = async () => {
    if (ctx.signal.aborted) return;
    try {
      draw(await fetchOnce());
      replace(problem);
    } catch (e) {
      if (ctx.signal.aborted) return;
      if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') return ctx.signedOut(e.message);
      replace(problem, errorBlock(e));
    }
    schedule();
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  ctx.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  const schedule = () => {
    timer = setTimeout(() => void tick(), EVERY_MS);
  };
  schedule();

  replace(
    into,
    h('div', { class: 'page-head' }, h('h1', null, 'Propagation')),
    h(
      'p',
      { class: 'lead' },
      `How each of the environment's newest ${LAST} config versions reached the connected SDKs: acknowledged by how many, and the time from commit to applied.`,
    ),
    updated,
    problem,
    h(
      'table',
      { class: 'propagation' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'Version'),
          h('th', { scope: 'col', class: 'num' }, 'Connected SDKs'),
          h('th', { scope: 'col', class: 'num' }, 'Acknowledged'),
          h('th', { scope: 'col', class: 'num' }, 'p50 commit → applied'),
          h('th', { scope: 'col', class: 'num' }, 'p99'),
          h('th', { scope: 'col', class: 'num' }, 'max'),
        ),
      ),
      tbody,
    ),
  );
}
