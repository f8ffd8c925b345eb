import { describe, expect, it } from 'vitest';
import { ago, dateTime, duration, fixed, int, pct, pValue, signed, signedPct, signedPoints, value } from '../src/shape/format';

describe('format', () => {
  it('shows a dash for what is missing or not finite', () => {
    for (const f of [int, pct, signedPct, signed, pValue, duration, dateTime]) {
      expect(f(null)).toBe('—');
      expect(f(undefined)).toBe('—');
      expect(f(Number.NaN)).toBe('—');
    }
  });

  it('writes rates, changes and p-values', () => {
    expect(pct(0.12345)).toBe('12.35%');
    expect(signedPct(0.05)).toBe('+5.00%');
    expect(signedPct(-0.05)).toBe('−5.00%');
    expect(signedPct(0.00001)).toBe('0.00%');
    expect(signedPoints(0.012)).toBe('+1.20 pp');
    expect(signed(-0.123456)).toBe('−0.1235');
    expect(pValue(0.0004)).toBe('< 0.001');
    expect(pValue(0.04321)).toBe('0.043');
    expect(value(0.1, true)).toBe('10.00%');
    expect(value(12.3456, false)).toBe('12.35');
    expect(fixed(2.5, 2)).toBe('2.50');
    expect(int(1234567)).toBe('1,234,567');
  });

  it('writes durations and ages', () => {
    expect(duration(850)).toBe('850 ms');
    expect(duration(2300)).toBe('2.3 s');
    expect(duration(125_000)).toBe('2.1 min');
    expect(duration(2 * 3_600_000)).toBe('2.0 h');
    expect(duration(3 * 86_400_000)).toBe('3.0 d');
    expect(ago(1000, 13_000)).toBe('12.0 s ago');
    expect(ago(2000, 1000)).toBe('just now');
  });

  it('writes times in UTC', () => {
    expect(dateTime(Date.UTC(2024, 4, 1, 12, 3, 4))).toBe('2024-05-01 12:03:04 UTC');
  });
});
