import { describe, expect, it } from 'vitest';
import { auditFilter, auditQuery, DEFAULT_LIMIT, filterAudit } from '../src/shape/audit';
import { describeError } from '../src/shape/errors';
import { entityStatus, filterEntities, hasResults, statusOptions } from '../src/shape/lists';
import { propagationRows } from '../src/shape/propagation';
import type { AuditEntry, Entity } from '../src/types';

const entity = (kind: Entity['kind'], key: string, definition: Record<string, unknown>): Entity => ({
  kind,
  key,
  revision: 1,
  definition: { key, ...definition },
  created_at_ms: 0,
  updated_at_ms: 0,
});

describe('lists', () => {
  const list = [
    entity('experiment', 'checkout-button', { status: 'running', description: 'Green button' }),
    entity('experiment', 'pricing', { status: 'draft', description: 'Annual plan first' }),
    entity('experiment', 'banner', { status: 'running' }),
  ];

  it('filters by words in key or description, and by status, sorted by key', () => {
    expect(filterEntities(list, { q: '', status: '' }).map((e) => e.key)).toEqual(['banner', 'checkout-button', 'pricing']);
    expect(filterEntities(list, { q: 'GREEN button', status: '' }).map((e) => e.key)).toEqual(['checkout-button']);
    expect(filterEntities(list, { q: '', status: 'running' }).map((e) => e.key)).toEqual(['banner', 'checkout-button']);
    expect(filterEntities(list, { q: 'annual', status: 'running' })).toEqual([]);
  });

  it('says each kind’s status', () => {
    expect(entityStatus(entity('flag', 'f', { enabled: false }))).toBe('off');
    expect(entityStatus(entity('flag', 'f', {}))).toBe('on');
    expect(entityStatus(entity('holdout', 'h', { enabled: false }))).toBe('disabled');
    expect(entityStatus(entity('metric', 'm', {}))).toBeNull();
    expect(statusOptions('experiment')).toEqual(['draft', 'running', 'paused', 'completed']);
    expect(statusOptions('segment')).toEqual([]);
  });

  it('knows which entities have results', () => {
    expect(hasResults(entity('experiment', 'e', {}))).toBe(true);
    expect(hasResults(entity('holdout', 'h', {}))).toBe(true);
    expect(hasResults(entity('flag', 'f', {}))).toBe(false);
    expect(hasResults(entity('flag', 'f', { experiment: { id: 'x', metrics: [] } }))).toBe(true);
  });
});

describe('audit filters', () => {
  const e = (over: Partial<AuditEntry>): AuditEntry => ({
    id: 1,
    version: 1,
    actor_key_id: 'key-1',
    actor_name: 'Ada',
    action: 'update',
    kind: 'experiment',
    key: 'checkout',
    before: null,
    after: null,
    reason: null,
    at_ms: 1000,
    ...over,
  });
  const entries = [
    e({ id: 1 }),
    e({ id: 2, actor_name: 'Grace', actor_key_id: 'key-2', action: 'pause', at_ms: 2000 }),
    e({ id: 3, kind: 'flag', key: 'dark', at_ms: 3000 }),
  ];

  it('round-trips through the URL', () => {
    const f = { kind: 'experiment', key: 'checkout', who: 'ada', action: 'pause', from: 1, to: 2, limit: 50 };
    expect(auditFilter(auditQuery(f))).toEqual(f);
    expect(auditQuery(auditFilter(new URLSearchParams())).toString()).toBe('');
    expect(auditFilter(new URLSearchParams('limit=-3&from=x')).limit).toBe(DEFAULT_LIMIT);
  });

  it('filters by who, action, kind, key and time', () => {
    const base = auditFilter(new URLSearchParams());
    const ids = (over: object) => filterAudit(entries, { ...base, ...over }).map((x) => x.id);
    expect(ids({})).toEqual([1, 2, 3]);
    expect(ids({ who: 'grace' })).toEqual([2]);
    expect(ids({ who: 'KEY-1' })).toEqual([1, 3]);
    expect(ids({ action: 'pause' })).toEqual([2]);
    expect(ids({ kind: 'flag' })).toEqual([3]);
    expect(ids({ key: 'checkout' })).toEqual([1, 2]);
    expect(ids({ from: 1500, to: 2500 })).toEqual([2]);
  });
});

describe('propagation rows', () => {
  it('sorts newest first, marks the current version and the share acknowledged', () => {
    const rows = propagationRows([
      { version: 4, connected: 2, acknowledged: 2, p50_ms: 10, p99_ms: 30, max_ms: 31 },
      { version: 5, connected: 2, acknowledged: 1, p50_ms: 12, p99_ms: null, max_ms: null },
      { version: 3, connected: 0, acknowledged: 0, p50_ms: null, p99_ms: null, max_ms: null },
    ]);
    expect(rows.map((r) => [r.version, r.current, r.share, r.complete])).toEqual([
      [5, true, 0.5, false],
      [4, false, 1, true],
      [3, false, null, false],
    ]);
  });
});

describe('errors', () => {
  it('tells a stale revision apart and says nothing was overwritten', () => {
    const d = describeError(
      {
        code: 'FAILED_PRECONDITION',
        message: 'experiment "x" is at revision 4, not 3: it changed since it was read',
        violations: [{ field: 'expected_revision', description: 'stale; current revision is 4' }],
      },
      'experiment x',
    );
    expect(d.stale).toBe(true);
    expect(d.currentRevision).toBe(4);
    expect(d.title).toContain('someone changed experiment x');
    expect(d.title).toContain('Nothing was overwritten');
    expect(d.violations).toEqual([]);
  });

  it('keeps an illegal move and field violations as they are', () => {
    const illegal = describeError({ code: 'FAILED_PRECONDITION', message: 'cannot resume a running experiment' });
    expect(illegal).toMatchObject({ stale: false, currentRevision: null, title: 'Refused by the server' });
    const invalid = describeError({
      code: 'INVALID_ARGUMENT',
      message: 'invalid',
      violations: [{ field: 'definition.variants[1].weight_bp', description: 'too big' }],
    });
    expect(invalid.violations).toHaveLength(1);
    expect(describeError({ code: 'UNAUTHENTICATED', message: '' }).title).toBe('The admin key was refused');
    expect(describeError({ message: 'boom' }).title).toBe('Something went wrong');
  });
});
