// @vitest-environment happy-dom
import { beforeEach, describe, expect, it } from 'vitest';
import { editorPage } from '../src/views/editor';
import { resultsPage } from '../src/views/results';
import { syntheticExperiment, syntheticResults } from '../e2e/synthetic.mjs';
import { results as fixtureResults } from './fixtures';
import { fakeApi, fakeCtx, settle } from './fake-api';
import type { Entity } from '../src/types';

beforeEach(() => {
  document.body.replaceChildren();
});

const ok = (body: unknown) => ({ status: 200, body });

describe('results page', () => {
  it('publishes the API numbers in the scorecard and the charts', async () => {
    const data = fixtureResults();
    const { api } = fakeApi((_m, path) => {
      if (path.startsWith('/environments/dev/results/checkout')) return ok(data);
      if (path.startsWith('/environments/dev/audit')) return ok({ entries: [] });
      return undefined;
    });
    const into = document.createElement('div');
    document.body.append(into);
    await resultsPage(fakeCtx(api), { kind: 'experiment', key: 'checkout' }, into);

    const value = (sel: string) => Number(into.querySelector<HTMLElement>(sel)!.dataset.value);
    expect(value('[data-field=units][data-variant=treatment]')).toBe(data.latest!.units.treatment);
    expect(value('[data-metric=purchase][data-variant=treatment][data-field=n]')).toBe(1020);
    expect(value('[data-metric=purchase][data-variant=treatment][data-field=mean]')).toBe(0.12);
    expect(value('[data-metric=purchase][data-variant=treatment][data-field=rel_diff]')).toBe(data.latest!.metrics[0]!.comparisons[0]!.rel_diff);
    expect(value('[data-metric=purchase][data-variant=treatment][data-field=rel_lo]')).toBe(-0.15);
    expect(value('[data-metric=purchase][data-variant=treatment][data-field=rel_hi]')).toBe(0.55);
    expect(value('[data-metric=purchase][data-variant=treatment][data-field=decision]')).toBe(3);
    expect(value('[data-field=lag_ms]')).toBe(1200);
    expect(value('[data-field=information_fraction]')).toBe(0.8);
    // The control has no comparison, and the entity's absence (404) leaves no lifecycle buttons.
    expect(into.querySelector('[data-metric=purchase][data-variant=control][data-field=rel_diff]')).toBeNull();
    expect(into.querySelector('[data-action]')).toBeNull();

    const lift = JSON.parse(into.querySelector<HTMLElement>('figure[data-chart=lift][data-metric=purchase]')!.dataset.series!);
    const lifts = [...data.looks, data.latest!].map((r) => r.metrics[0]!.comparisons[0]!.rel_diff);
    expect(lift.map((p: { rel_diff: number }) => p.rel_diff)).toEqual(lifts);
    expect(into.querySelector('figure[data-chart=lift] svg')).not.toBeNull();
    const units = JSON.parse(into.querySelector<HTMLElement>('figure[data-chart=units]')!.dataset.series!);
    expect(units).toHaveLength(8);
    const segments = JSON.parse(into.querySelector<HTMLElement>('figure[data-chart=segments]')!.dataset.series!);
    expect(segments.map((p: { label: string }) => p.label)).toEqual(['country = NZ', 'country = AU']);
    expect(into.querySelector('.trail .empty')!.textContent).toBe('No change recorded.');
  });

  it('shows a guardrail pause and a sample ratio mismatch', async () => {
    const data = fixtureResults();
    data.latest = { ...data.latest!, paused_by_guardrail: 'latency worse by 7 %', srm: { chi_square: 30, p_value: 0.00001, detected: true } };
    const { api } = fakeApi((_m, path) => (path.includes('/results/') ? ok(data) : path.includes('/audit') ? ok({ entries: [] }) : undefined));
    const into = document.createElement('div');
    await resultsPage(fakeCtx(api), { kind: 'experiment', key: 'checkout' }, into);
    expect(into.querySelector('[data-paused-by-guardrail]')!.textContent).toContain('latency worse by 7 %');
    expect(into.querySelector('[data-srm=detected]')).not.toBeNull();
  });

  it('says so when there is no result yet', async () => {
    const { api } = fakeApi((_m, path) => (path.includes('/results/') ? ok({ latest: null, looks: [] }) : path.includes('/audit') ? ok({ entries: [] }) : undefined));
    const into = document.createElement('div');
    await resultsPage(fakeCtx(api), { kind: 'experiment', key: 'checkout' }, into);
    expect(into.querySelector('[data-empty=results]')).not.toBeNull();
  });

  it('draws 5 metrics, 20 segment values and 50 looks', async () => {
    const data = syntheticResults();
    const entity = syntheticExperiment();
    const { api } = fakeApi((_m, path) => {
      if (path.includes('/results/')) return ok(data);
      if (path.includes('/entities/experiment/')) return ok(entity);
      if (path.includes('/audit')) return ok({ entries: [] });
      return undefined;
    });
    const into = document.createElement('div');
    await resultsPage(fakeCtx(api), { kind: 'experiment', key: 'perf-synthetic' }, into);
    const charts = [...into.querySelectorAll<HTMLElement>('figure[data-chart]')];
    expect(charts.filter((c) => c.dataset.chart === 'lift')).toHaveLength(5);
    expect(charts.filter((c) => c.dataset.chart === 'segments')).toHaveLength(5);
    const first = JSON.parse(charts[0]!.dataset.series!);
    expect(first.filter((p: { source: string }) => p.source === 'look')).toHaveLength(50);
    expect(into.querySelectorAll('section.scorecard')).toHaveLength(5);
    expect(into.querySelector('[data-action=pause]')).not.toBeNull();
  });
});

describe('editor', () => {
  const stored: Entity = {
    kind: 'experiment',
    key: 'checkout',
    revision: 3,
    created_at_ms: 0,
    updated_at_ms: 0,
    definition: {
      id: 'x',
      key: 'checkout',
      status: 'running',
      variants: [
        { key: 'control', weight_bp: 5000, control: true },
        { key: 'treatment', weight_bp: 5000, control: false },
      ],
      primary_metrics: ['purchase'],
    },
  };

  it('refuses a stale edit, says nothing was overwritten, and stays in the editor', async () => {
    const { api, calls } = fakeApi((m, path) => {
      if (m === 'GET' && path === '/environments/dev/entities/experiment/checkout') return ok(stored);
      if (m === 'GET' && path.startsWith('/environments/dev/entities?kind=metric')) return ok({ entities: [] });
      if (m === 'PUT')
        return {
          status: 409,
          body: {
            error: {
              code: 'FAILED_PRECONDITION',
              message: 'experiment "checkout" is at revision 4, not 3: it changed since it was read',
              violations: [{ field: 'expected_revision', description: 'stale; current revision is 4' }],
            },
          },
        };
      return undefined;
    });
    const ctx = fakeCtx(api);
    const into = document.createElement('div');
    document.body.append(into);
    await editorPage(ctx, { name: 'edit', kind: 'experiment', key: 'checkout' }, into);
    into.querySelector<HTMLTextAreaElement>('textarea[name=description]')!.value = 'mine';
    into.querySelector<HTMLFormElement>('form.editor')!.requestSubmit();
    await settle();

    const put = calls.find((c) => c.method === 'PUT')!;
    expect(put.body).toEqual({ definition: { ...stored.definition, description: 'mine' }, expected_revision: 3 });
    const error = into.querySelector<HTMLElement>('.error')!;
    expect(error.dataset.stale).toBe('true');
    expect(error.dataset.currentRevision).toBe('4');
    expect(error.textContent).toContain('Nothing was overwritten');
    expect(ctx.went).toEqual([]);
  });

  it('shows the API violations at their lines in YAML, and at their fields in the form', async () => {
    const violation = { field: 'definition.variants[1].weight_bp', description: 'weights sum to 9000, expected 10000' };
    const { api } = fakeApi((m, path) => {
      if (m === 'GET' && path.startsWith('/environments/dev/entities?kind=metric')) return ok({ entities: [{ kind: 'metric', key: 'purchase' }] });
      if (m === 'POST') return { status: 400, body: { error: { code: 'INVALID_ARGUMENT', message: 'invalid definition', violations: [violation] } } };
      return undefined;
    });
    const ctx = fakeCtx(api, 'mode=yaml');
    const into = document.createElement('div');
    document.body.append(into);
    await editorPage(ctx, { name: 'new', kind: 'experiment' }, into);
    const text = into.querySelector<HTMLTextAreaElement>('textarea[data-editor=text]')!;
    text.value = 'key: x\nvariants:\n  - {key: a, weight_bp: 5000}\n  - {key: b, weight_bp: 4000}\n';
    into.querySelector<HTMLFormElement>('form.editor')!.requestSubmit();
    await settle();
    const li = into.querySelector<HTMLElement>('.violations li')!;
    expect(li.dataset.field).toBe(violation.field);
    expect(li.dataset.line).toBe('4');

    // The same refusal in the form marks the weight's input.
    into.querySelector<HTMLButtonElement>('button[data-mode=form]')!.click();
    expect(into.querySelector<HTMLInputElement>('input[name=key]')!.value).toBe('x');
    into.querySelector<HTMLFormElement>('form.editor')!.requestSubmit();
    await settle();
    const weight = into.querySelector<HTMLInputElement>('[data-path="definition.variants[1].weight_bp"]')!;
    expect(weight.getAttribute('aria-invalid')).toBe('true');
    expect(weight.nextElementSibling!.textContent).toBe(violation.description);
  });

  it('keeps the text when it does not parse, and creates with JSON', async () => {
    const { api, calls } = fakeApi((m, _path, body) => {
      if (m === 'POST') return ok({ entity: { kind: 'flag', key: 'dark', revision: 1, definition: (body as { definition: unknown }).definition }, version: 12 });
      return undefined;
    });
    const ctx = fakeCtx(api, 'mode=json');
    const into = document.createElement('div');
    document.body.append(into);
    await editorPage(ctx, { name: 'new', kind: 'flag' }, into);
    const text = into.querySelector<HTMLTextAreaElement>('textarea[data-editor=text]')!;
    text.value = '{"key": dark}';
    into.querySelector<HTMLButtonElement>('button[data-mode=yaml]')!.click();
    expect(into.querySelector('.error[data-error-code=PARSE]')).not.toBeNull();
    expect(text.value).toBe('{"key": dark}');

    text.value = '{"key": "dark", "type": "boolean", "variations": [{"key": "on", "value": true}]}';
    into.querySelector<HTMLFormElement>('form.editor')!.requestSubmit();
    await settle();
    expect(calls.find((c) => c.method === 'POST')!.body).toEqual({
      definition: { key: 'dark', type: 'boolean', variations: [{ key: 'on', value: true }] },
    });
    expect(ctx.went).toEqual(['#/flags/dark']);
  });
});
