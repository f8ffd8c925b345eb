// Before/after of an audit entry as the changed fields, named by the same paths the API uses in
// its violations (`variants[1].weight_bp`), so a reader can match one to the other.

export type ChangeOp = 'added' | 'removed' | 'changed';

export interface Change {
  /** '' for the whole definition (a create or a delete). */
  path: string;
  op: ChangeOp;
  before?: unknown;
  after?: unknown;
}

export function diff(before: unknown, after: unknown): Change[] {
  const out: Change[] = [];
  walk(before, after, '', out);
  return out;
}

function walk(a: unknown, b: unknown, path: string, out: Change[]): void {
  if (a === undefined || a === null) {
    if (b !== undefined && b !== null) out.push({ path, op: 'added', after: b });
    return;
  }
  if (b === undefined || b === null) {
    out.push({ path, op: 'removed', before: a });
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) walk(a[i], b[i], `${path}[${i}]`, out);
    return;
  }
  if (isObject(a) && isObject(b)) {
    const keys = [...Object.keys(a), ...Object.keys(b).filter((k) => !(k in a))];
    for (const k of keys) walk(a[k], b[k], join(path, k), out);
    return;
  }
  if (!sameJson(a, b)) out.push({ path, op: 'changed', before: a, after: b });
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `a` + `b` → `a.b`; keys that are not plain names are quoted: `metadata["team.name"]`. */
function join(path: string, key: string): string {
  if (IDENT.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

/** A value on one line, as JSON. */
export function showValue(x: unknown): string {
  return x === undefined ? '' : JSON.stringify(x);
}
