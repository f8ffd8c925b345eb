// Propagation rows: for each config version, how many connected SDKs acknowledged it and how
// long commit → applied took.

import type { Propagation } from '../types';

export interface PropagationRow extends Propagation {
  /** Acknowledged share of the connected SDKs; null when none is connected. */
  share: number | null;
  /** Every connected SDK has applied it. */
  complete: boolean;
  /** The newest version: the one SDKs should be serving now. */
  current: boolean;
}

export function propagationRows(versions: Propagation[]): PropagationRow[] {
  return [...versions]
    .sort((a, b) => b.version - a.version)
    .map((v, i) => ({
      ...v,
      share: v.connected > 0 ? Math.min(1, v.acknowledged / v.connected) : null,
      complete: v.connected > 0 && v.acknowledged >= v.connected,
      current: i === 0,
    }));
}
