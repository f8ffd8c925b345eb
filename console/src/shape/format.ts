// How numbers and times read on screen. The exact numbers travel beside them in data-value
// attributes; these strings are for people.

const DASH = '—';

function isNum(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

export function int(x: number | null | undefined): string {
  return isNum(x) ? Math.round(x).toLocaleString('en-US') : DASH;
}

export function fixed(x: number | null | undefined, digits = 3): string {
  return isNum(x) ? x.toFixed(digits) : DASH;
}

/** 0.1234 → "12.34%". */
export function pct(x: number | null | undefined, digits = 2): string {
  return isNum(x) ? `${(x * 100).toFixed(digits)}%` : DASH;
}

/** A change: 0.05 → "+5.00%", −0.05 → "−5.00%". */
export function signedPct(x: number | null | undefined, digits = 2): string {
  if (!isNum(x)) return DASH;
  const s = (Math.abs(x) * 100).toFixed(digits);
  if (Number(s) === 0) return `${s}%`;
  return `${x > 0 ? '+' : '−'}${s}%`;
}

/** A difference in the metric's own unit, signed. */
export function signed(x: number | null | undefined, digits = 4): string {
  if (!isNum(x)) return DASH;
  const s = Math.abs(x).toPrecision(digits);
  if (Number(s) === 0) return s;
  return `${x > 0 ? '+' : '−'}${s}`;
}

/** A mean or a rate in the metric's unit: rates as percentages, others to 4 significant digits. */
export function value(x: number | null | undefined, asRate: boolean): string {
  if (!isNum(x)) return DASH;
  return asRate ? pct(x) : x.toPrecision(4);
}

export function pValue(p: number | null | undefined): string {
  if (!isNum(p)) return DASH;
  if (p < 0.001) return '< 0.001';
  return p.toFixed(3);
}

/** 850 → "850 ms", 2300 → "2.3 s", 125000 → "2.1 min". */
export function duration(ms: number | null | undefined): string {
  if (!isNum(ms)) return DASH;
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (a < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (a < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/** How long ago `thenMs` was at `nowMs`, for freshness: "12 s ago". */
export function ago(thenMs: number | null | undefined, nowMs: number): string {
  if (!isNum(thenMs)) return DASH;
  const d = nowMs - thenMs;
  return d < 0 ? 'just now' : `${duration(d)} ago`;
}

/** A timestamp in UTC, to the second: logs and people in several zones agree on it. */
export function dateTime(ms: number | null | undefined): string {
  if (!isNum(ms)) return DASH;
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A difference of two rates, in percentage points: 0.012 → "+1.20 pp". */
export function signedPoints(x: number | null | undefined, digits = 2): string {
  const s = signedPct(x, digits);
  return s.endsWith('%') ? `${s.slice(0, -1)} pp` : s;
}
