// A definition as text: YAML or JSON to read and edit, JSON to send (the API takes JSON). Both
// are parsed by `yaml` (JSON is YAML 1.2), which reports every problem with its line and, like
// the API, refuses a key written twice in one object. The API's field paths are located in the
// text so its violations point at lines.

import { LineCounter, parseDocument, stringify, isMap, isSeq, type Node } from 'yaml';
import type { Definition, Violation } from '../types';

export type Format = 'yaml' | 'json';

export interface TextProblem {
  message: string;
  line: number | null;
  col: number | null;
}

export type Parsed = { ok: true; value: Definition } | { ok: false; problems: TextProblem[] };

export function toText(definition: Definition, format: Format): string {
  if (format === 'json') return `${JSON.stringify(definition, null, 2)}\n`;
  // lineWidth 0: never fold long strings, so what is shown is what was stored.
  return stringify(definition, { lineWidth: 0, version: '1.2' });
}

export function parseText(text: string, format: Format): Parsed {
  if (text.trim() === '') return { ok: false, problems: [{ message: 'The definition is empty.', line: null, col: null }] };
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    version: '1.2',
    uniqueKeys: true,
    prettyErrors: true,
    // JSON text must be JSON: a bare word is an error there, a string in YAML.
    schema: format === 'json' ? 'json' : 'core',
  });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({
        message: e.message.split('\n')[0] ?? e.message,
        line: e.linePos?.[0]?.line ?? null,
        col: e.linePos?.[0]?.col ?? null,
      })),
    };
  }
  const value: unknown = doc.toJS({ maxAliasCount: 100 });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, problems: [{ message: 'A definition is one object (a mapping of fields).', line: 1, col: 1 }] };
  }
  return { ok: true, value: value as Definition };
}

export type PathSegment = string | number;

/**
 * An API field path as segments within the definition: `definition.variants[1].weight_bp` →
 * ['variants', 1, 'weight_bp']; `metadata["a.b"]` → ['metadata', 'a.b']. Null for fields
 * outside the definition (`expected_revision`).
 */
export function parseFieldPath(field: string): PathSegment[] | null {
  const re = /\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([^.[\]]+)/gy;
  const out: PathSegment[] = [];
  let m: RegExpExecArray | null;
  while (re.lastIndex < field.length && (m = re.exec(field)) !== null) {
    if (m[1] !== undefined) out.push(Number(m[1]));
    else if (m[2] !== undefined) out.push(JSON.parse(`"${m[2]}"`) as string);
    else if (m[3] !== undefined) out.push(m[3]);
  }
  if (out[0] !== 'definition') return null;
  return out.slice(1);
}

/**
 * The line (1-based) where `path` is written in `text`, or of its nearest written ancestor
 * (a missing field is reported where its object is). Null when the text does not parse.
 */
export function locate(text: string, format: Format, path: PathSegment[]): number | null {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, version: '1.2', schema: format === 'json' ? 'json' : 'core' });
  if (doc.errors.length > 0) return null;
  let node: unknown = doc.contents;
  let line = nodeLine(node, lineCounter) ?? 1;
  for (const seg of path) {
    let next: unknown = undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => scalarKey(p.key) === String(seg));
      if (pair) {
        line = nodeLine(pair.key, lineCounter) ?? line;
        next = pair.value;
      }
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
      line = nodeLine(next, lineCounter) ?? line;
    }
    if (next === undefined) break;
    node = next;
  }
  return line;
}

function scalarKey(key: unknown): string | null {
  if (key && typeof key === 'object' && 'value' in key) return String((key as { value: unknown }).value);
  return null;
}

function nodeLine(node: unknown, lc: LineCounter): number | null {
  const range = (node as Node | null | undefined)?.range;
  return range ? lc.linePos(range[0]).line : null;
}

export interface LocatedViolation extends Violation {
  path: PathSegment[] | null;
  line: number | null;
}

export function locateViolations(text: string, format: Format, violations: Violation[]): LocatedViolation[] {
  return violations.map((v) => {
    const path = parseFieldPath(v.field);
    return { ...v, path, line: path ? locate(text, format, path) : null };
  });
}

/**
 * A field path and its ancestors, nearest first: `definition.variants[1].weight_bp`,
 * `definition.variants[1]`, `definition.variants`, `definition`. A form shows a violation at
 * the nearest of these it has a control for.
 */
export function pathAndAncestors(field: string): string[] {
  const out = [field];
  let p = field;
  for (;;) {
    const m = p.match(/^(.*?)(\[[^\]]*\]|\.[^.[\]]+)$/);
    if (!m || m[1] === '') break;
    p = m[1]!;
    out.push(p);
  }
  return out;
}
