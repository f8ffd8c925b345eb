// One entity: its definition, and what may be done to it from here (an experiment's lifecycle,
// a flag's kill switch, edit, delete). After an action the page redraws from the write's answer.

import type { Ctx } from '../context';
import { h, replace } from '../dom';
import { setFlash, takeFlash } from '../flash';
import { toText } from '../shape/definition';
import { dateTime } from '../shape/format';
import { describe, entityStatus, hasResults } from '../shape/lists';
import { href } from '../router';
import type { Entity, Kind, Write } from '../types';
import { badge, confirmDialog, lifecycleActions, showFailure } from './common';

export async function entityPage(ctx: Ctx, route: { kind: Kind; key: string }, into: HTMLElement): Promise<void> {
  const entity = await ctx.api.entity(ctx.env.key, route.kind, route.key, ctx.signal);
  draw(ctx, entity, into, takeFlash());
}

function draw(ctx: Ctx, entity: Entity, into: HTMLElement, flash: ReturnType<typeof takeFlash>): void {
  const { kind, key } = entity;
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  if (flash) replace(status, h('p', { class: 'notice', role: 'status', dataset: flash.data }, flash.text));
  const written = (what: string) => (w: Write) => {
    if (!w.entity) return ctx.go(href({ name: 'list', kind }));
    draw(ctx, w.entity, into, { text: `${what}: revision ${w.entity.revision}, config version ${w.version}.`, data: { version: w.version, revision: w.entity.revision } });
  };

  const actions = h(
    'div',
    { class: 'actions' },
    kind === 'experiment' ? lifecycleActions(ctx, entity, status, written('Done')) : null,
    kind === 'flag' ? killSwitch(ctx, entity, status, written('Saved')) : null,
    hasResults(entity) ? h('a', { class: 'button', href: href({ name: 'results', kind, key }) }, 'Results') : null,
    h('a', { class: 'button', href: href({ name: 'edit', kind, key }) }, 'Edit'),
    h('a', { class: 'button', href: `#/audit?kind=${kind}&key=${encodeURIComponent(key)}` }, 'Audit trail'),
    h(
      'button',
      {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          const ok = await confirmDialog({
            title: `Delete ${kind} ${key}?`,
            body: h('p', null, 'It is removed from the environment at the next config version. The audit log keeps its history.'),
            confirm: 'Delete',
            reason: false,
            danger: true,
          });
          if (ok === null) return;
          try {
            const w = await ctx.api.remove(ctx.env.key, kind, key, entity.revision);
            setFlash(`Deleted ${kind} ${key} (config version ${w.version}).`, { version: w.version });
            ctx.go(href({ name: 'list', kind }));
          } catch (e) {
            showFailure(ctx, e, status, `${kind} ${key}`);
          }
        },
      },
      'Delete',
    ),
  );

  replace(
    into,
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, h('span', { class: 'kind' }, kind), ' ', key),
      badge(entityStatus(entity)),
    ),
    describe(entity) ? h('p', { class: 'lead' }, describe(entity)) : null,
    h(
      'dl',
      { class: 'meta' },
      h('dt', null, 'Revision'),
      h('dd', { dataset: { field: 'revision', value: entity.revision } }, entity.revision),
      h('dt', null, 'Created'),
      h('dd', null, dateTime(entity.created_at_ms)),
      h('dt', null, 'Updated'),
      h('dd', null, dateTime(entity.updated_at_ms)),
    ),
    actions,
    status,
    h('h2', null, 'Definition'),
    h('pre', { class: 'definition', tabindex: '0', 'aria-label': 'Definition (YAML)' }, toText(entity.definition, 'yaml')),
  );
}

/** The kill switch: `enabled` flipped by PUT at the revision shown, confirmed first. */
function killSwitch(ctx: Ctx, entity: Entity, status: HTMLElement, done: (w: Write) => void): HTMLElement {
  const enabled = entity.definition.enabled !== false;
  const off = typeof entity.definition.off_variation === 'string' ? entity.definition.off_variation : null;
  const offText = off ? `everyone gets its off variation "${off}"` : 'it serves nothing and callers use their own default';
  return h(
    'button',
    {
      type: 'button',
      role: 'switch',
      'aria-checked': String(enabled),
      'aria-label': 'Flag enabled',
      class: enabled ? 'switch on' : 'switch off',
      dataset: { killSwitch: enabled ? 'on' : 'off' },
      onclick: async () => {
        const ok = await confirmDialog({
          title: enabled ? `Turn ${entity.key} off?` : `Turn ${entity.key} back on?`,
          body: h('p', null, enabled ? `Kill switch: ${offText}.` : 'Its rules and default serve again.'),
          confirm: enabled ? 'Turn off' : 'Turn on',
          reason: false,
          danger: enabled,
        });
        if (ok === null) return;
        try {
          const w = await ctx.api.update(ctx.env.key, 'flag', entity.key, { ...entity.definition, enabled: !enabled }, entity.revision);
          done(w);
        } catch (e) {
          showFailure(ctx, e, status, `flag ${entity.key}`);
        }
      },
    },
    h('span', { class: 'knob', 'aria-hidden': 'true' }),
    enabled ? 'Enabled' : 'Disabled by the kill switch',
  );
}
