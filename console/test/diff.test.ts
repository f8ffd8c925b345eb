import { describe, expect, it } from 'vitest';
import { diff, showValue } from '../src/shape/diff';

describe('diff', () => {
  it('names changed fields by API paths', () => {
    const before = { key: 'x', status: 'running', variants: [{ key: 'a', weight_bp: 5000 }, { key: 'b', weight_bp: 5000 }] };
    const after = { key: 'x', status: 'paused', variants: [{ key: 'a', weight_bp: 4000 }, { key: 'b', weight_bp: 6000 }] };
    expect(diff(before, after)).toEqual([
      { path: 'status', op: 'changed', before: 'running', after: 'paused' },
      { path: 'variants[0].weight_bp', op: 'changed', before: 5000, after: 4000 },
      { path: 'variants[1].weight_bp', op: 'changed', before: 5000, after: 6000 },
    ]);
  });

  it('reports added and removed fields and list items', () => {
    expect(diff({ a: 1, list: [1, 2] }, { b: 2, list: [1] })).toEqual([
      { path: 'a', op: 'removed', before: 1 },
      { path: 'list[1]', op: 'removed', before: 2 },
      { path: 'b', op: 'added', after: 2 },
    ]);
  });

  it('gives a create or a delete as the whole definition', () => {
    expect(diff(null, { key: 'x' })).toEqual([{ path: '', op: 'added', after: { key: 'x' } }]);
    expect(diff({ key: 'x' }, null)).toEqual([{ path: '', op: 'removed', before: { key: 'x' } }]);
    expect(diff({ key: 'x' }, { key: 'x' })).toEqual([]);
  });

  it('quotes keys that are not plain names, and treats a type change as a change', () => {
    expect(diff({ metadata: { 'team.name': 'a' } }, { metadata: { 'team.name': 'b' } })[0]!.path).toBe('metadata["team.name"]');
    expect(diff({ v: [1] }, { v: { a: 1 } })).toEqual([{ path: 'v', op: 'changed', before: [1], after: { a: 1 } }]);
  });

  it('shows values as JSON', () => {
    expect(showValue('on')).toBe('"on"');
    expect(showValue({ a: [1] })).toBe('{"a":[1]}');
    expect(showValue(undefined)).toBe('');
  });
});
