// The audit log: who changed what and when, with a reason and a before/after diff of each change.

import type { Ctx } from '../context';
import { field, h, replace, type Child } from '../dom';
import { auditFilter, auditQuery, DEFAULT_LIMIT, filterAudit, type AuditFilter } from '../shape/audit';
import { toText } from '../shape/definition';
import { diff, showValue } from '../shape/diff';
import { dateTime } from '../shape/format';
import { href } from '../router';
import { KINDS, type AuditEntry, type Kind } from '../types';

const ACTIONS = ['create', 'update', 'delete', 'start', 'pause', 'resume', 'complete'];

export async function auditPage(ctx: Ctx, _route: unknown, into: HTMLElement): Promise<void> {
  const f = auditFilter(ctx.query);
  const { entries } = await ctx.api.audit(ctx.env.key, { kind: f.kind, key: f.key, limit: f.limit }, ctx.signal);
  const shown = filterAudit(entries, f);
  replace(
    into,
    h('div', { class: 'page-head' }, h('h1', null, 'Audit log')),
    filterForm(ctx, f),
    h(
      'p',
      { class: 'count', role: 'status' },
      `${shown.length} of the newest ${entries.length} changes`,
      entries.length >= f.limit ? ` (at most ${f.limit} are fetched; narrow by kind and key to reach older ones)` : '',
      '.',
    ),
    h('ol', { class: 'audit' }, shown.map(entry)),
  );
}

/** A datetime-local value (local time) as Unix ms, and back. */
function localToMs(v: string): number | null {
  if (!v) return null;
  const ms = new Date(v).getTime();
  return Number.isFinite(ms) ? ms : null;
}

function msToLocal(ms: number | null): string {
  if (ms === null) return '';
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

function filterForm(ctx: Ctx, f: AuditFilter): HTMLElement {
  const kind = h(
    'select',
    { name: 'kind' },
    h('option', { value: '' }, 'Any'),
    KINDS.map((k) => h('option', { value: k, selected: f.kind === k }, k)),
  );
  const key = h('input', { name: 'key', value: f.key, autocomplete: 'off' });
  const who = h('input', { name: 'who', value: f.who, autocomplete: 'off' });
  const action = h(
    'select',
    { name: 'action' },
    h('option', { value: '' }, 'Any'),
    ACTIONS.map((a) => h('option', { value: a, selected: f.action === a }, a)),
  );
  const from = h('input', { type: 'datetime-local', name: 'from', value: msToLocal(f.from) });
  const to = h('input', { type: 'datetime-local', name: 'to', value: msToLocal(f.to) });
  const limit = h(
    'select',
    { name: 'limit' },
    [50, DEFAULT_LIMIT, 1000].map((n) => h('option', { value: String(n), selected: f.limit === n }, String(n))),
  );
  return h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': 'Filter the audit log',
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        const next: AuditFilter = {
          kind: kind.value,
          key: key.value.trim(),
          who: who.value.trim(),
          action: action.value,
          from: localToMs(from.value),
          // The minute chosen is included whole.
          to: to.value ? (localToMs(to.value) ?? 0) + 59_999 : null,
          limit: Number(limit.value),
        };
        ctx.go(href({ name: 'audit' }, auditQuery(next)));
      },
    },
    field('Kind', kind),
    field('Key', key),
    field('Who', who, 'Key name or id'),
    field('Action', action),
    field('From', from),
    field('To', to),
    field('Newest', limit),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply'), h('a', { class: 'button secondary', href: '#/audit' }, 'Clear')),
  );
}

function entry(e: AuditEntry): HTMLElement {
  const changes = diff(e.before, e.after);
  const whole = changes.length === 1 && changes[0]!.path === '';
  return h(
    'li',
    { class: 'audit-entry', dataset: { id: String(e.id), action: e.action, kind: e.kind, key: e.key, version: e.version } },
    h(
      'div',
      { class: 'audit-head' },
      h('time', { datetime: new Date(e.at_ms).toISOString() }, dateTime(e.at_ms)),
      ' ',
      h('strong', { class: 'action' }, e.action),
      ' ',
      h('a', { href: href({ name: 'entity', kind: e.kind as Kind, key: e.key }) }, `${e.kind} ${e.key}`),
      ` by ${e.actor_name || 'unnamed key'}`,
      h('span', { class: 'sub' }, ` (key ${e.actor_key_id}) · config version ${e.version}`),
    ),
    e.reason ? h('p', { class: 'reason', dataset: { reason: e.reason } }, 'Reason: ', e.reason) : null,
    whole ? wholeDefinition(changes[0]!.op, e.after ?? e.before) : diffTable(changes),
  );
}

function wholeDefinition(op: string, definition: unknown): Child {
  return h(
    'details',
    { class: 'diff whole', dataset: { op } },
    h('summary', null, op === 'added' ? 'Created with this definition' : 'Deleted; its last definition'),
    h('pre', { class: `definition ${op}` }, toText(definition as Record<string, unknown>, 'yaml')),
  );
}

function diffTable(changes: ReturnType<typeof diff>): Child {
  if (changes.length === 0) return h('p', { class: 'sub' }, 'No change to the definition.');
  return h(
    'table',
    { class: 'diff' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))),
    h(
      'tbody',
      null,
      changes.map((c) =>
        h(
          'tr',
          { dataset: { path: c.path, op: c.op } },
          h('th', { scope: 'row' }, h('code', null, c.path)),
          h('td', { class: 'before', dataset: { value: showValue(c.before) } }, c.op === 'added' ? h('span', { class: 'muted' }, '(none)') : h('code', null, showValue(c.before))),
          h('td', { class: 'after', dataset: { value: showValue(c.after) } }, c.op === 'removed' ? h('span', { class: 'muted' }, '(none)') : h('code', null, showValue(c.after))),
        ),
      ),
    ),
  );
}
