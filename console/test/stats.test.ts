import { describe, expect, it } from 'vitest';
import { normalQuantile, wilson } from '../src/shape/stats';

describe('normalQuantile', () => {
  it('matches known quantiles', () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963985, 8);
    expect(normalQuantile(0.5)).toBeCloseTo(0, 12);
    expect(normalQuantile(0.995)).toBeCloseTo(2.575829304, 8);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232306, 8);
  });

  it('refuses probabilities outside (0, 1)', () => {
    expect(() => normalQuantile(0)).toThrow(RangeError);
    expect(() => normalQuantile(1)).toThrow(RangeError);
  });
});

describe('wilson', () => {
  it('matches the textbook interval', () => {
    const [lo, hi] = wilson(0.5, 100, 0.95)!;
    expect(lo).toBeCloseTo(0.4038, 4);
    expect(hi).toBeCloseTo(0.5962, 4);
  });

  it('stays within [0, 1] at the edges', () => {
    const [lo, hi] = wilson(0, 20, 0.95)!;
    expect(lo).toBe(0);
    expect(hi).toBeCloseTo(0.1611, 4);
    expect(wilson(1, 20, 0.95)![1]).toBe(1);
  });

  it('has no interval without units', () => {
    expect(wilson(0.1, 0, 0.95)).toBeNull();
    expect(wilson(1.5, 10, 0.95)).toBeNull();
  });
});
