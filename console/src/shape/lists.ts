// Entity lists: the status each kind shows and the search and status filters.

import type { Entity, Kind } from '../types';

/** What a row's status column says: an experiment's lifecycle, a flag's or holdout's switch. */
export function entityStatus(e: Entity): string | null {
  const d = e.definition;
  switch (e.kind) {
    case 'experiment':
      return typeof d.status === 'string' ? d.status : null;
    case 'flag':
      return d.enabled === false ? 'off' : 'on';
    case 'holdout':
      return d.enabled === false ? 'disabled' : 'enabled';
    default:
      return null;
  }
}

export function statusOptions(kind: Kind): string[] {
  switch (kind) {
    case 'experiment':
      return ['draft', 'running', 'paused', 'completed'];
    case 'flag':
      return ['on', 'off'];
    case 'holdout':
      return ['enabled', 'disabled'];
    default:
      return [];
  }
}

export function describe(e: Entity): string {
  return typeof e.definition.description === 'string' ? e.definition.description : '';
}

export interface ListFilter {
  q: string;
  status: string;
}

/** Matches the search words against key and description (all words must match), and the status. */
export function filterEntities(entities: Entity[], f: ListFilter): Entity[] {
  const words = f.q.toLowerCase().split(/\s+/).filter(Boolean);
  return entities
    .filter((e) => !f.status || entityStatus(e) === f.status)
    .filter((e) => {
      const hay = `${e.key} ${describe(e)}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    })
    .sort((a, b) => a.key.localeCompare(b.key));
}

/** Experiments, holdouts and flags whose split is analysed have results. */
export function hasResults(e: Entity): boolean {
  return e.kind === 'experiment' || e.kind === 'holdout' || (e.kind === 'flag' && e.definition.experiment != null);
}
