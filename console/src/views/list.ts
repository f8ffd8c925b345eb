// One kind's entities: search and status filter (kept in the URL without reloading the page).

import type { Ctx } from '../context';
import { field, h, replace } from '../dom';
import { takeFlash } from '../flash';
import { dateTime } from '../shape/format';
import { describe, entityStatus, filterEntities, hasResults, statusOptions } from '../shape/lists';
import { ANALYSED, href, plural, SECTION_TITLES } from '../router';
import type { Entity, Kind } from '../types';
import { badge } from './common';

export async function listPage(ctx: Ctx, route: { kind: Kind }, into: HTMLElement): Promise<void> {
  const { kind } = route;
  const { entities } = await ctx.api.entities(ctx.env.key, kind, ctx.signal);
  const flash = takeFlash();

  const search = h('input', { type: 'search', name: 'q', value: ctx.query.get('q') ?? '', autocomplete: 'off' });
  const statuses = statusOptions(kind);
  const status = h(
    'select',
    { name: 'status' },
    h('option', { value: '' }, 'Any'),
    statuses.map((s) => h('option', { value: s, selected: ctx.query.get('status') === s }, s)),
  );
  const tbody = h('tbody');
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const analysed = ANALYSED.includes(kind);

  const row = (e: Entity) =>
    h(
      'tr',
      { dataset: { key: e.key, status: entityStatus(e) ?? undefined } },
      h('td', null, h('a', { href: href({ name: 'entity', kind, key: e.key }) }, e.key)),
      statuses.length > 0 ? h('td', null, badge(entityStatus(e))) : null,
      h('td', { class: 'desc' }, describe(e)),
      h('td', { class: 'num' }, e.revision),
      h('td', null, dateTime(e.updated_at_ms)),
      analysed ? h('td', null, hasResults(e) ? h('a', { href: href({ name: 'results', kind, key: e.key }) }, 'Results') : null) : null,
    );

  const apply = () => {
    const shown = filterEntities(entities, { q: search.value, status: status.value });
    replace(tbody, shown.map(row));
    count.textContent = `${shown.length} of ${entities.length} ${SECTION_TITLES[kind].toLowerCase()}`;
  };
  // Keeps the filter in the address for back and for sharing, without re-rendering.
  const remember = () => {
    if (ctx.signal.aborted) return;
    const params = new URLSearchParams();
    if (search.value) params.set('q', search.value);
    if (status.value) params.set('status', status.value);
    history.replaceState(null, '', href({ name: 'list', kind }, params));
  };
  for (const [el, event] of [[search, 'input'], [status, 'change']] as const) {
    el.addEventListener(event, () => {
      apply();
      remember();
    });
  }
  apply();

  replace(
    into,
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, SECTION_TITLES[kind]),
      h('a', { class: 'button primary', href: `#/new/${kind}` }, `New ${kind}`),
    ),
    flash ? h('p', { class: 'notice', role: 'status', dataset: flash.data }, flash.text) : null,
    h(
      'div',
      { class: 'filters', role: 'search' },
      field('Search', search, 'Key or description'),
      statuses.length > 0 ? field('Status', status) : null,
    ),
    count,
    h(
      'table',
      { class: 'list', dataset: { kind: plural(kind) } },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', { scope: 'col' }, 'Key'),
          statuses.length > 0 ? h('th', { scope: 'col' }, 'Status') : null,
          h('th', { scope: 'col' }, 'Description'),
          h('th', { scope: 'col', class: 'num' }, 'Revision'),
          h('th', { scope: 'col' }, 'Updated'),
          analysed ? h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Results')) : null,
        ),
      ),
      tbody,
    ),
  );
}
