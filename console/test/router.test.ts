import { describe, expect, it } from 'vitest';
import { href, parseHash, type Route } from '../src/router';

describe('router', () => {
  it('parses every page', () => {
    const cases: [string, Route][] = [
      ['#/flags', { name: 'list', kind: 'flag' }],
      ['#/experiments/checkout', { name: 'entity', kind: 'experiment', key: 'checkout' }],
      ['#/experiments/checkout/results', { name: 'results', kind: 'experiment', key: 'checkout' }],
      ['#/holdouts/h1/results', { name: 'results', kind: 'holdout', key: 'h1' }],
      ['#/metrics/purchase/edit', { name: 'edit', kind: 'metric', key: 'purchase' }],
      ['#/new/experiment', { name: 'new', kind: 'experiment' }],
      ['#/audit', { name: 'audit' }],
      ['#/propagation', { name: 'propagation' }],
      ['#/metrics/purchase/results', { name: 'notfound' }],
      ['#/flag', { name: 'notfound' }],
      ['#/nope', { name: 'notfound' }],
      ['#/experiments/a/b/c', { name: 'notfound' }],
      ['#/experiments/%E0%A4%A', { name: 'notfound' }],
    ];
    for (const [hash, route] of cases) expect(parseHash(hash).route, hash).toEqual(route);
  });

  it('reads the query and round-trips keys that need escaping', () => {
    const { route, query } = parseHash('#/audit?kind=experiment&key=a%20b');
    expect(route).toEqual({ name: 'audit' });
    expect(query.get('key')).toBe('a b');
    const r: Route = { name: 'results', kind: 'experiment', key: 'a/b c' };
    expect(parseHash(href(r)).route).toEqual(r);
    expect(href({ name: 'list', kind: 'flag' }, new URLSearchParams({ q: 'x' }))).toBe('#/flags?q=x');
  });
});
