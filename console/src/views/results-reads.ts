// What the results page reads, in one place: the page asks for these, and the shell prefetches
// them on a reload while it checks the key (the result is the largest answer the API gives).

import { auditPath, onePath, resultsPath } from '../api';
import type { Kind } from '../types';

export const TRAIL_LIMIT = 50;

export function resultsPageReads(env: string, kind: Kind, key: string): string[] {
  return [resultsPath(env, key), onePath(env, kind, key), auditPath(env, { kind, key, limit: TRAIL_LIMIT })];
}
