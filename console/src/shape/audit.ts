// The audit log's filters. The API filters by kind and key; who, what action and when are
// applied here to the entries it returned (the newest `limit`).

import type { AuditEntry } from '../types';

export interface AuditFilter {
  kind: string;
  key: string;
  who: string;
  action: string;
  /** Unix ms, inclusive; null for open. */
  from: number | null;
  to: number | null;
  limit: number;
}

export const DEFAULT_LIMIT = 200;

export function auditFilter(q: URLSearchParams): AuditFilter {
  const ms = (name: string) => {
    const v = q.get(name);
    if (v === null || v === '') return null;
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  };
  const limit = Number(q.get('limit'));
  return {
    kind: q.get('kind') ?? '',
    key: q.get('key') ?? '',
    who: q.get('who') ?? '',
    action: q.get('action') ?? '',
    from: ms('from'),
    to: ms('to'),
    limit: Number.isInteger(limit) && limit > 0 ? limit : DEFAULT_LIMIT,
  };
}

export function auditQuery(f: AuditFilter): URLSearchParams {
  const q = new URLSearchParams();
  if (f.kind) q.set('kind', f.kind);
  if (f.key) q.set('key', f.key);
  if (f.who) q.set('who', f.who);
  if (f.action) q.set('action', f.action);
  if (f.from !== null) q.set('from', String(f.from));
  if (f.to !== null) q.set('to', String(f.to));
  if (f.limit !== DEFAULT_LIMIT) q.set('limit', String(f.limit));
  return q;
}

export function filterAudit(entries: AuditEntry[], f: AuditFilter): AuditEntry[] {
  const who = f.who.trim().toLowerCase();
  return entries.filter(
    (e) =>
      (!f.kind || e.kind === f.kind) &&
      (!f.key || e.key === f.key) &&
      (!f.action || e.action === f.action) &&
      (!who || e.actor_name.toLowerCase().includes(who) || e.actor_key_id.toLowerCase().includes(who)) &&
      (f.from === null || e.at_ms >= f.from) &&
      (f.to === null || e.at_ms <= f.to),
  );
}
