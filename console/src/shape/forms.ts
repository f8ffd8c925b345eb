// The two forms (a boolean flag; an experiment's key, variants, weights and metrics) read from
// and write to a definition. Writing keeps every field the form does not show, so a form edit of
// a definition written in YAML loses nothing.

import type { Definition } from '../types';

export interface FlagForm {
  key: string;
  description: string;
  enabled: boolean;
}

export function flagForm(def: Definition): FlagForm {
  return {
    key: str(def.key),
    description: str(def.description),
    enabled: def.enabled !== false,
  };
}

/** A boolean flag with variations `on`/`off`: off when switched off, on otherwise. */
export function newBooleanFlag(form: FlagForm): Definition {
  return applyFlagForm(
    {
      key: '',
      type: 'boolean',
      variations: [
        { key: 'on', value: true },
        { key: 'off', value: false },
      ],
      off_variation: 'off',
      default: { variation: 'on' },
    },
    form,
  );
}

export function applyFlagForm(def: Definition, form: FlagForm): Definition {
  const out: Definition = { ...def, key: form.key.trim(), enabled: form.enabled };
  setOptionalText(out, 'description', form.description);
  return out;
}

export interface VariantRow {
  key: string;
  weight_bp: number;
  control: boolean;
}

export interface ExperimentForm {
  key: string;
  description: string;
  variants: VariantRow[];
  primary_metrics: string[];
  guardrail_metrics: string[];
}

export function experimentForm(def: Definition): ExperimentForm {
  const variants = Array.isArray(def.variants) ? (def.variants as Record<string, unknown>[]) : [];
  return {
    key: str(def.key),
    description: str(def.description),
    variants: variants.map((v) => ({
      key: str(v?.key),
      weight_bp: typeof v?.weight_bp === 'number' ? v.weight_bp : 0,
      control: v?.control === true,
    })),
    primary_metrics: strings(def.primary_metrics),
    guardrail_metrics: strings(def.guardrail_metrics),
  };
}

export function newExperiment(): Definition {
  return {
    key: '',
    variants: [
      { key: 'control', weight_bp: 5000, control: true },
      { key: 'treatment', weight_bp: 5000 },
    ],
    primary_metrics: [],
  };
}

export function applyExperimentForm(def: Definition, form: ExperimentForm): Definition {
  const old = Array.isArray(def.variants) ? (def.variants as Record<string, unknown>[]) : [];
  const out: Definition = { ...def, key: form.key.trim() };
  setOptionalText(out, 'description', form.description);
  const byKey = new Map(old.map((v) => [str(v?.key), v]));
  const keys = new Set(form.variants.map((v) => v.key.trim()));
  out.variants = form.variants.map((v, i) => {
    // Keep what the form does not show (a payload): the same variant's by key, or, for a
    // renamed one, the one it replaced at the same place.
    const key = v.key.trim();
    const renamed = old[i] && !keys.has(str(old[i]!.key)) ? old[i] : undefined;
    const kept: Record<string, unknown> = { ...(byKey.get(key) ?? renamed ?? {}), key, weight_bp: v.weight_bp };
    // The stored form writes `control: false` out; leaving it as it was keeps an unchanged
    // variant byte-for-byte equal (a running experiment's variants must not change).
    if (v.control) kept.control = true;
    else if ('control' in kept) kept.control = false;
    return kept;
  });
  setOptionalList(out, 'primary_metrics', form.primary_metrics);
  setOptionalList(out, 'guardrail_metrics', form.guardrail_metrics);
  return out;
}

/** Weights in basis points add up to 10000 (100 %) when the split is whole. */
export function weightTotal(variants: VariantRow[]): number {
  return variants.reduce((s, v) => s + (Number.isFinite(v.weight_bp) ? v.weight_bp : 0), 0);
}

/** "a, b ,c" → ['a', 'b', 'c']: metric keys typed as one list. */
export function splitList(text: string): string[] {
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function str(x: unknown): string {
  return typeof x === 'string' ? x : '';
}

function strings(x: unknown): string[] {
  return Array.isArray(x) ? x.filter((s): s is string => typeof s === 'string') : [];
}

function setOptionalText(def: Definition, field: string, text: string): void {
  if (text.trim() === '') delete def[field];
  else def[field] = text;
}

function setOptionalList(def: Definition, field: string, list: string[]): void {
  if (list.length === 0) delete def[field];
  else def[field] = list;
}
