// An API failure as people read it: a title that says what happened and what to do, the server's
// message, and the field violations. A stale revision is told apart: nothing was overwritten.

import type { Violation } from '../types';

export interface ErrorLike {
  status?: number;
  code?: string;
  message: string;
  violations?: Violation[];
}

export interface Described {
  code: string;
  title: string;
  message: string;
  violations: Violation[];
  /** The write named a revision that is no longer current. */
  stale: boolean;
  /** The revision the server holds now, when it said. */
  currentRevision: number | null;
}

const TITLES: Record<string, string> = {
  INVALID_ARGUMENT: 'Not saved: the definition has problems',
  UNAUTHENTICATED: 'The admin key was refused',
  PERMISSION_DENIED: 'This key may not do that',
  NOT_FOUND: 'Not found',
  ALREADY_EXISTS: 'Not created: that key is already taken',
  FAILED_PRECONDITION: 'Refused by the server',
  UNAVAILABLE: 'A service cannot be reached; try again shortly',
};

export function describeError(e: ErrorLike, thing = 'this'): Described {
  const code = e.code ?? 'UNKNOWN';
  const violations = e.violations ?? [];
  const staleViolation = violations.find((v) => v.field === 'expected_revision');
  const stale = code === 'FAILED_PRECONDITION' && staleViolation !== undefined;
  const m = staleViolation?.description.match(/current revision is (\d+)/) ?? e.message.match(/is at revision (\d+)/);
  return {
    code,
    title: stale
      ? `Not saved: someone changed ${thing} since you opened it. Nothing was overwritten; reload to see their change, then apply yours again.`
      : (TITLES[code] ?? 'Something went wrong'),
    message: e.message,
    violations: stale ? violations.filter((v) => v !== staleViolation) : violations,
    stale,
    currentRevision: m?.[1] !== undefined ? Number(m[1]) : null,
  };
}
