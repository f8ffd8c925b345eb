import { describe, expect, it } from 'vitest';
import {
  applyExperimentForm,
  applyFlagForm,
  experimentForm,
  flagForm,
  newBooleanFlag,
  newExperiment,
  splitList,
  weightTotal,
} from '../src/shape/forms';

describe('flag form', () => {
  it('makes a boolean flag with on/off variations', () => {
    expect(newBooleanFlag({ key: ' dark-mode ', description: 'Dark theme', enabled: false })).toEqual({
      key: 'dark-mode',
      type: 'boolean',
      variations: [
        { key: 'on', value: true },
        { key: 'off', value: false },
      ],
      off_variation: 'off',
      default: { variation: 'on' },
      enabled: false,
      description: 'Dark theme',
    });
  });

  it('reads a flag and writes back only its fields', () => {
    const def = { key: 'f', type: 'string', variations: [{ key: 'a', value: 'x' }], rules: [{ condition: {}, serve: {} }] };
    expect(flagForm(def)).toEqual({ key: 'f', description: '', enabled: true });
    const out = applyFlagForm({ ...def, description: 'old' }, { key: 'f', description: '', enabled: false });
    expect(out).toEqual({ ...def, enabled: false });
  });
});

describe('experiment form', () => {
  const def = {
    id: 'id-1',
    key: 'checkout',
    status: 'running',
    variants: [
      { key: 'control', weight_bp: 3400, control: true, payload: { c: 1 } },
      { key: 'a', weight_bp: 3300, payload: { c: 2 } },
      { key: 'b', weight_bp: 3300, payload: { c: 3 } },
    ],
    primary_metrics: ['purchase'],
    targeting: { op: 'exists', attribute: 'country' },
  };

  it('reads variants, weights and metrics', () => {
    expect(experimentForm(def)).toEqual({
      key: 'checkout',
      description: '',
      variants: [
        { key: 'control', weight_bp: 3400, control: true },
        { key: 'a', weight_bp: 3300, control: false },
        { key: 'b', weight_bp: 3300, control: false },
      ],
      primary_metrics: ['purchase'],
      guardrail_metrics: [],
    });
  });

  it('keeps what the form does not show, matching variants by key', () => {
    const f = experimentForm(def);
    f.variants.splice(1, 1);
    f.variants[1]!.weight_bp = 6600;
    f.guardrail_metrics = ['latency'];
    const out = applyExperimentForm(def, f);
    expect(out.id).toBe('id-1');
    expect(out.status).toBe('running');
    expect(out.targeting).toEqual(def.targeting);
    expect(out.variants).toEqual([
      { key: 'control', weight_bp: 3400, control: true, payload: { c: 1 } },
      { key: 'b', weight_bp: 6600, payload: { c: 3 } },
    ]);
    expect(out.guardrail_metrics).toEqual(['latency']);
  });

  it('keeps a renamed variant’s payload and moves the control mark', () => {
    const f = experimentForm(def);
    f.variants[1]!.key = 'green';
    f.variants[0]!.control = false;
    f.variants[1]!.control = true;
    f.primary_metrics = [];
    const out = applyExperimentForm(def, f);
    expect(out.variants).toEqual([
      { key: 'control', weight_bp: 3400, control: false, payload: { c: 1 } },
      { key: 'green', weight_bp: 3300, control: true, payload: { c: 2 } },
      { key: 'b', weight_bp: 3300, payload: { c: 3 } },
    ]);
    expect('primary_metrics' in out).toBe(false);
  });

  it('leaves the variants of a stored definition equal when only the description changes', () => {
    const stored = {
      ...def,
      variants: [
        { key: 'control', weight_bp: 5000, control: true },
        { key: 'treatment', weight_bp: 5000, control: false },
      ],
    };
    const f = experimentForm(stored);
    f.description = 'new words';
    const out = applyExperimentForm(stored, f);
    expect(out.variants).toEqual(stored.variants);
    expect(out.description).toBe('new words');
  });

  it('starts from a 50/50 split and adds up weights', () => {
    const f = experimentForm(newExperiment());
    expect(weightTotal(f.variants)).toBe(10000);
    expect(weightTotal([{ key: 'a', weight_bp: Number.NaN, control: false }])).toBe(0);
    expect(splitList(' purchase, revenue  latency,,')).toEqual(['purchase', 'revenue', 'latency']);
  });
});
