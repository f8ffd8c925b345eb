import { describe, expect, it } from 'vitest';
import { locate, locateViolations, parseFieldPath, parseText, pathAndAncestors, toText } from '../src/shape/definition';

const def = {
  key: 'checkout',
  status: 'draft',
  variants: [
    { key: 'control', weight_bp: 5000, control: true },
    { key: 'treatment', weight_bp: 5000, payload: { color: 'on' } },
  ],
  primary_metrics: ['purchase'],
};

describe('text round trips', () => {
  it('writes and reads YAML and JSON to the same definition', () => {
    for (const f of ['yaml', 'json'] as const) {
      const parsed = parseText(toText(def, f), f);
      expect(parsed).toEqual({ ok: true, value: def });
    }
    expect(toText(def, 'yaml')).toContain('key: checkout\n');
    expect(toText(def, 'json')).toBe(`${JSON.stringify(def, null, 2)}\n`);
  });

  it('reads YAML 1.2: on and yes stay strings', () => {
    expect(parseText('key: on\nother: yes\n', 'yaml')).toEqual({ ok: true, value: { key: 'on', other: 'yes' } });
  });

  it('refuses a key written twice, with its line', () => {
    const r = parseText('key: a\nstatus: draft\nkey: b\n', 'yaml');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]).toMatchObject({ line: 3 });
    const j = parseText('{\n  "key": "a",\n  "key": "b"\n}', 'json');
    expect(j.ok).toBe(false);
  });

  it('keeps JSON strict: a bare word is an error', () => {
    expect(parseText('{"key": checkout}', 'json').ok).toBe(false);
    expect(parseText('{"key": "checkout"}', 'json')).toEqual({ ok: true, value: { key: 'checkout' } });
  });

  it('refuses what is not one object', () => {
    for (const t of ['', '   ', '- a\n- b\n', '42']) expect(parseText(t, 'yaml').ok).toBe(false);
  });

  it('reports a syntax error with its line', () => {
    const r = parseText('{\n  "key": "a",\n  "variants": [1, 2\n}', 'json');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.line).toBeGreaterThanOrEqual(3);
  });
});

describe('field paths', () => {
  it('parses the API paths', () => {
    expect(parseFieldPath('definition.variants[1].weight_bp')).toEqual(['variants', 1, 'weight_bp']);
    expect(parseFieldPath('definition')).toEqual([]);
    expect(parseFieldPath('definition.metadata["a.b"].x')).toEqual(['metadata', 'a.b', 'x']);
    expect(parseFieldPath('expected_revision')).toBeNull();
  });

  it('lists a path and its ancestors', () => {
    expect(pathAndAncestors('definition.variants[1].weight_bp')).toEqual([
      'definition.variants[1].weight_bp',
      'definition.variants[1]',
      'definition.variants',
      'definition',
    ]);
    expect(pathAndAncestors('definition')).toEqual(['definition']);
  });

  it('locates a path in YAML and JSON, or its nearest written ancestor', () => {
    const yaml = toText(def, 'yaml');
    const lines = yaml.split('\n');
    const line = locate(yaml, 'yaml', ['variants', 1, 'weight_bp'])!;
    expect(lines[line - 1]).toContain('weight_bp: 5000');
    expect(lines[line - 2]).toContain('key: treatment');
    expect(lines[locate(yaml, 'yaml', ['variants', 1, 'missing'])! - 1]).toContain('key: treatment');
    const json = toText(def, 'json');
    const jl = locate(json, 'json', ['primary_metrics', 0])!;
    expect(json.split('\n')[jl - 1]).toContain('"purchase"');
    expect(locate('key: [', 'yaml', ['key'])).toBeNull();
  });

  it('gives each violation its line', () => {
    const yaml = toText(def, 'yaml');
    const [v, outside] = locateViolations(yaml, 'yaml', [
      { field: 'definition.variants[0].weight_bp', description: 'weights must add up to 10000' },
      { field: 'expected_revision', description: 'stale' },
    ]);
    expect(yaml.split('\n')[v!.line! - 1]).toContain('weight_bp');
    expect(v!.path).toEqual(['variants', 0, 'weight_bp']);
    expect(outside).toMatchObject({ path: null, line: null });
  });
});
