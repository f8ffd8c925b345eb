// Create and edit: a form (boolean flags, experiments) and a YAML/JSON editor over one
// definition. Switching between them carries the definition across; saving sends JSON with
// the revision that was opened, so a stale edit is refused and nothing is overwritten.

import { ApiError } from '../api';
import type { Ctx } from '../context';
import { field, h, replace, uid } from '../dom';
import { setFlash } from '../flash';
import {
  locateViolations,
  parseText,
  pathAndAncestors,
  toText,
  type Format,
  type LocatedViolation,
  type TextProblem,
} from '../shape/definition';
import {
  applyExperimentForm,
  applyFlagForm,
  experimentForm,
  flagForm,
  newBooleanFlag,
  newExperiment,
  splitList,
  weightTotal,
  type VariantRow,
} from '../shape/forms';
import { href } from '../router';
import type { Definition, Kind } from '../types';
import { errorBlock } from './common';

type Mode = 'form' | Format;

const TEMPLATES: Record<Kind, () => Definition> = {
  flag: () => newBooleanFlag({ key: '', description: '', enabled: true }),
  experiment: newExperiment,
  segment: () => ({ key: '', condition: { op: 'equals', attribute: 'country', value: 'NZ' } }),
  metric: () => ({ key: '', event: '', aggregation: 'conversion' }),
  layer: () => ({ key: '', salt: '', experiments: [] }),
  holdout: () => ({ key: '', share_bp: 500, metrics: [] }),
};

interface FormView {
  node: HTMLElement;
  /** The definition with the form's values written into it. */
  read(): Definition;
}

export async function editorPage(
  ctx: Ctx,
  route: { name: 'edit' | 'new'; kind: Kind; key?: string },
  into: HTMLElement,
): Promise<void> {
  const { kind } = route;
  const [base, metricKeys] = await Promise.all([
    route.name === 'edit' ? ctx.api.entity(ctx.env.key, kind, route.key!, ctx.signal) : null,
    // The experiment form offers the environment's metrics; without the list it takes typed keys.
    kind === 'experiment'
      ? ctx.api
          .entities(ctx.env.key, 'metric', ctx.signal)
          .then((r) => r.entities.map((e) => e.key).sort())
          .catch(() => null)
      : null,
  ]);
  const title = base ? `Edit ${kind} ${base.key}` : `New ${kind}`;

  const hasForm = kind === 'flag' || kind === 'experiment';
  const asked = ctx.query.get('mode');
  let mode: Mode = asked === 'yaml' || asked === 'json' || (asked === 'form' && hasForm) ? asked : hasForm ? 'form' : 'yaml';
  let definition: Definition = base ? structuredClone(base.definition) : TEMPLATES[kind]();
  let form: FormView | null = null;

  const textarea = h('textarea', {
    id: uid('definition'),
    class: 'code',
    rows: 26,
    spellcheck: 'false',
    autocomplete: 'off',
    autocapitalize: 'off',
    dataset: { editor: 'text' },
  });
  const body = h('div', { class: 'editor-body' });
  const problems = h('div', { class: 'problems', 'aria-live': 'polite' });
  const modeButtons = new Map<Mode, HTMLButtonElement>();

  const showTextProblems = (list: TextProblem[]) =>
    replace(
      problems,
      h(
        'div',
        { class: 'error', role: 'alert', dataset: { errorCode: 'PARSE' } },
        h('strong', null, `The ${mode === 'json' ? 'JSON' : 'YAML'} does not parse`),
        h(
          'ul',
          { class: 'violations' },
          list.map((p) =>
            h(
              'li',
              { dataset: { line: p.line ?? undefined } },
              p.line ? h('button', { type: 'button', class: 'link', onclick: () => selectLine(textarea, p.line!) }, `line ${p.line}`) : null,
              p.line ? ': ' : '',
              p.message,
            ),
          ),
        ),
      ),
    );

  /** The definition as the page holds it now; null (and the problems shown) when the text does not parse. */
  const current = (): Definition | null => {
    if (mode === 'form') return form!.read();
    const parsed = parseText(textarea.value, mode);
    if (!parsed.ok) {
      showTextProblems(parsed.problems);
      return null;
    }
    return parsed.value;
  };

  const setMode = (next: Mode) => {
    if (next === mode && body.firstChild) return;
    if (body.firstChild) {
      const d = current();
      if (!d) return;
      definition = d;
    }
    mode = next;
    replace(problems);
    for (const [m, b] of modeButtons) b.setAttribute('aria-pressed', String(m === mode));
    if (mode === 'form') {
      form = kind === 'flag' ? flagFormView(definition, base !== null) : experimentFormView(definition, base !== null, metricKeys);
      replace(body, form.node);
    } else {
      form = null;
      textarea.value = toText(definition, mode);
      textarea.setAttribute('aria-label', `Definition (${mode === 'json' ? 'JSON' : 'YAML'})`);
      replace(body, textarea);
    }
  };

  const modes: [Mode, string][] = [
    ...(hasForm ? ([['form', 'Form']] as [Mode, string][]) : []),
    ['yaml', 'YAML'],
    ['json', 'JSON'],
  ];
  const switcher = h(
    'div',
    { class: 'modes', role: 'group', 'aria-label': 'Edit as' },
    modes.map(([m, label]) => {
      const b = h('button', { type: 'button', class: 'toggle', dataset: { mode: m }, onclick: () => setMode(m) }, label);
      modeButtons.set(m, b);
      return b;
    }),
  );

  const save = h('button', { type: 'submit', class: 'primary', dataset: { save: '' } }, base ? 'Save' : 'Create');
  const onSubmit = async (ev: Event) => {
    ev.preventDefault();
    const d = current();
    if (!d) return;
    definition = d;
    const sentText = mode === 'form' ? null : textarea.value;
    const sentMode = mode;
    save.disabled = true;
    replace(problems, h('p', { class: 'loading' }, 'Saving…'));
    try {
      const w = base
        ? await ctx.api.update(ctx.env.key, kind, base.key, d, base.revision)
        : await ctx.api.create(ctx.env.key, kind, d);
      const saved = w.entity!;
      setFlash(`Saved ${kind} ${saved.key}: revision ${saved.revision}, config version ${w.version}.`, {
        version: w.version,
        revision: saved.revision,
      });
      ctx.go(href({ name: 'entity', kind, key: saved.key }));
    } catch (e) {
      if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') return ctx.signedOut(e.message);
      const thing = `${kind} ${base?.key ?? ''}`.trim();
      const stale = e instanceof ApiError && e.violations.some((v) => v.field === 'expected_revision');
      replace(
        problems,
        errorBlock(e, {
          thing,
          extra: stale
            ? h(
                'p',
                null,
                h('a', { href: `#/audit?kind=${kind}&key=${encodeURIComponent(base?.key ?? '')}` }, 'See who changed it'),
                ' · ',
                h('button', { type: 'button', class: 'link', onclick: () => ctx.refresh() }, 'Open the current version (your edit is dropped)'),
              )
            : null,
          locate:
            sentText !== null && sentMode !== 'form'
              ? (vs) => locateViolations(sentText, sentMode, vs)
              : undefined,
          onPick: (v: LocatedViolation) => v.line && selectLine(textarea, v.line),
        }),
      );
      if (mode === 'form' && e instanceof ApiError) markFields(body, e.violations);
    } finally {
      save.disabled = false;
    }
  };

  replace(
    into,
    h('div', { class: 'page-head' }, h('h1', null, title)),
    base ? h('p', { class: 'lead' }, `Editing revision ${base.revision}. Saving is refused if someone else saves first.`) : null,
    h(
      'form',
      { class: 'editor', onsubmit: onSubmit, dataset: { revision: base?.revision } },
      switcher,
      body,
      problems,
      h(
        'div',
        { class: 'actions' },
        save,
        h('a', { class: 'button secondary', href: base ? href({ name: 'entity', kind, key: base.key }) : href({ name: 'list', kind }) }, 'Cancel'),
      ),
    ),
  );
  setMode(mode);
}

/** Selects a line of the text editor and scrolls to it. */
function selectLine(textarea: HTMLTextAreaElement, line: number): void {
  const lines = textarea.value.split('\n');
  const start = lines.slice(0, line - 1).reduce((s, l) => s + l.length + 1, 0);
  const end = start + (lines[line - 1]?.length ?? 0);
  textarea.focus();
  textarea.setSelectionRange(start, end);
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
}

/** Marks the form controls the violations name (or their nearest named ancestor). */
function markFields(root: HTMLElement, violations: { field: string; description: string }[]): void {
  root.querySelectorAll('.field-problem').forEach((n) => n.remove());
  root.querySelectorAll('[aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
  for (const v of violations) {
    const target = pathAndAncestors(v.field)
      .map((p) => root.querySelector<HTMLElement>(`[data-path="${CSS.escape(p)}"]`))
      .find((el) => el !== null);
    if (!target) continue;
    target.setAttribute('aria-invalid', 'true');
    const note = h('p', { class: 'field-problem', id: uid('problem') }, v.description);
    target.setAttribute('aria-describedby', `${target.getAttribute('aria-describedby') ?? ''} ${note.id}`.trim());
    target.insertAdjacentElement('afterend', note);
  }
}

function flagFormView(def: Definition, editing: boolean): FormView {
  const f = flagForm(def);
  const key = h('input', { name: 'key', value: f.key, required: true, disabled: editing, dataset: { path: 'definition.key' } });
  const description = h('textarea', { name: 'description', rows: 2, value: f.description, dataset: { path: 'definition.description' } });
  const enabled = h('input', { type: 'checkbox', id: uid('enabled'), name: 'enabled', checked: f.enabled, dataset: { path: 'definition.enabled' } });
  const boolean = def.type === 'boolean';
  return {
    node: h(
      'div',
      { class: 'form', dataset: { form: 'flag' } },
      field('Key', key, editing ? 'A key never changes.' : 'Lowercase letters, digits and dashes; SDKs evaluate the flag by it.'),
      field('Description', description),
      h(
        'div',
        { class: 'field checkbox' },
        enabled,
        h('label', { for: enabled.id }, 'On'),
        h('span', { class: 'hint' }, ' Off is the kill switch: everyone gets the off variation.'),
      ),
      editing && !boolean
        ? h('p', { class: 'hint' }, 'Variations, rules and targeting of this flag are edited as YAML or JSON.')
        : h('p', { class: 'hint' }, 'A boolean flag: variations on (true) and off (false); on by default, off when switched off.'),
    ),
    read: () => applyFlagForm(def, { key: key.value, description: description.value, enabled: enabled.checked }),
  };
}

function experimentFormView(def: Definition, editing: boolean, metricKeys: string[] | null): FormView {
  const f = experimentForm(def);
  const key = h('input', { name: 'key', value: f.key, required: true, disabled: editing, dataset: { path: 'definition.key' } });
  const description = h('textarea', { name: 'description', rows: 2, value: f.description, dataset: { path: 'definition.description' } });
  let rows: VariantRow[] = f.variants;
  const tbody = h('tbody');
  const total = h('p', { class: 'hint', 'aria-live': 'polite' });
  const controlGroup = uid('control');

  const readRows = (): VariantRow[] =>
    [...tbody.querySelectorAll('tr')].map((tr) => ({
      key: tr.querySelector<HTMLInputElement>('input[name=variant-key]')!.value,
      weight_bp: Number(tr.querySelector<HTMLInputElement>('input[name=variant-weight]')!.value),
      control: tr.querySelector<HTMLInputElement>('input[type=radio]')!.checked,
    }));
  const showTotal = () => {
    const t = weightTotal(readRows());
    total.textContent = `Weights add up to ${t} bp (${(t / 100).toFixed(2)} %)${t === 10000 ? '' : '; they must add up to 10000'}.`;
  };
  const drawRows = () => {
    replace(
      tbody,
      rows.map((v, i) => {
        const path = `definition.variants[${i}]`;
        const label = `variant ${i + 1}`;
        return h(
          'tr',
          { dataset: { path } },
          h('td', null, h('input', { name: 'variant-key', value: v.key, required: true, 'aria-label': `Key of ${label}`, dataset: { path: `${path}.key` } })),
          h(
            'td',
            null,
            h('input', {
              name: 'variant-weight',
              type: 'number',
              min: 0,
              max: 10000,
              step: 1,
              value: String(v.weight_bp),
              'aria-label': `Weight of ${label} in basis points`,
              dataset: { path: `${path}.weight_bp` },
              oninput: showTotal,
            }),
          ),
          h('td', null, h('input', { type: 'radio', name: controlGroup, checked: v.control, 'aria-label': `${label} is the control`, dataset: { path: `${path}.control` } })),
          h(
            'td',
            null,
            h('button', { type: 'button', class: 'secondary', disabled: rows.length <= 2, onclick: () => { rows = readRows(); rows.splice(i, 1); drawRows(); } }, 'Remove'),
          ),
        );
      }),
    );
    showTotal();
  };
  drawRows();

  const metricPicker = (label: string, path: string, chosen: string[]) => {
    if (metricKeys === null) {
      const input = h('input', { name: path, value: chosen.join(', '), dataset: { path } });
      return { node: field(label, input, 'Metric keys, separated by commas.'), read: () => splitList(input.value) };
    }
    const all = [...new Set([...metricKeys, ...chosen])];
    const boxes = all.map((m) => h('input', { type: 'checkbox', value: m, checked: chosen.includes(m), id: uid('metric') }));
    return {
      node: h(
        'fieldset',
        { class: 'metrics', dataset: { path } },
        h('legend', null, label),
        all.length === 0 ? h('p', { class: 'hint' }, 'No metric exists yet in this environment.') : null,
        boxes.map((b) => h('label', { class: 'check', for: b.id }, b, ` ${b.value}`)),
      ),
      read: () => boxes.filter((b) => b.checked).map((b) => b.value),
    };
  };
  const primary = metricPicker('Primary metrics', 'definition.primary_metrics', f.primary_metrics);
  const guardrail = metricPicker('Guardrail metrics', 'definition.guardrail_metrics', f.guardrail_metrics);

  const node = h(
    'div',
    { class: 'form', dataset: { form: 'experiment' } },
    field('Key', key, editing ? 'A key never changes.' : 'SDKs and results find the experiment by it.'),
    field('Description', description),
    h(
      'fieldset',
      { class: 'variants', dataset: { path: 'definition.variants' } },
      h('legend', null, 'Variants'),
      h(
        'table',
        null,
        h(
          'thead',
          null,
          h('tr', null, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Weight (bp)'), h('th', { scope: 'col' }, 'Control'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Remove'))),
        ),
        tbody,
      ),
      total,
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            rows = [...readRows(), { key: '', weight_bp: 0, control: false }];
            drawRows();
            tbody.querySelector<HTMLInputElement>('tr:last-child input')?.focus();
          },
        },
        'Add variant',
      ),
    ),
    primary.node,
    guardrail.node,
  );
  return {
    node,
    read: () =>
      applyExperimentForm(def, {
        key: key.value,
        description: description.value,
        variants: readRows(),
        primary_metrics: primary.read(),
        guardrail_metrics: guardrail.read(),
      }),
  };
}
