// Hash routes: #/experiments, #/experiments/KEY, #/experiments/KEY/edit,
// #/experiments/KEY/results, #/new/experiment, #/audit?kind=…, #/propagation.

import { KINDS, type Kind } from './types';

export type Route =
  | { name: 'list'; kind: Kind }
  | { name: 'entity'; kind: Kind; key: string }
  | { name: 'edit'; kind: Kind; key: string }
  | { name: 'results'; kind: Kind; key: string }
  | { name: 'new'; kind: Kind }
  | { name: 'audit' }
  | { name: 'propagation' }
  | { name: 'notfound' };

export interface Location {
  route: Route;
  query: URLSearchParams;
}

export const DEFAULT_HASH = '#/experiments';

/** Each kind's name as a section title. */
export const SECTION_TITLES: Record<Kind, string> = {
  experiment: 'Experiments',
  flag: 'Flags',
  segment: 'Segments',
  metric: 'Metrics',
  layer: 'Layers',
  holdout: 'Holdouts',
};

/** Kinds whose results the analysis publishes. */
export const ANALYSED: readonly Kind[] = ['experiment', 'holdout', 'flag'];

export function plural(kind: Kind): string {
  return `${kind}s`;
}

function kindOf(segment: string | undefined): Kind | null {
  return KINDS.find((k) => plural(k) === segment || k === segment) ?? null;
}

export function parseHash(hash: string): Location {
  const body = hash.replace(/^#\/?/, '');
  const q = body.indexOf('?');
  const path = q < 0 ? body : body.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : body.slice(q + 1));
  let parts: string[];
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { route: { name: 'notfound' }, query };
  }
  const [first, second, third, ...rest] = parts;
  const route = ((): Route => {
    if (rest.length > 0) return { name: 'notfound' };
    if (first === 'audit' && !second) return { name: 'audit' };
    if (first === 'propagation' && !second) return { name: 'propagation' };
    if (first === 'new' && second && !third) {
      const kind = kindOf(second);
      return kind ? { name: 'new', kind } : { name: 'notfound' };
    }
    const kind = kindOf(first);
    if (!kind || first !== plural(kind)) return { name: 'notfound' };
    if (!second) return { name: 'list', kind };
    if (!third) return { name: 'entity', kind, key: second };
    if (third === 'edit') return { name: 'edit', kind, key: second };
    if (third === 'results' && ANALYSED.includes(kind)) return { name: 'results', kind, key: second };
    return { name: 'notfound' };
  })();
  return { route, query };
}

export function href(route: Route, query?: URLSearchParams): string {
  const qs = query && [...query.keys()].length > 0 ? `?${query.toString()}` : '';
  const enc = encodeURIComponent;
  switch (route.name) {
    case 'list':
      return `#/${plural(route.kind)}${qs}`;
    case 'entity':
      return `#/${plural(route.kind)}/${enc(route.key)}${qs}`;
    case 'edit':
      return `#/${plural(route.kind)}/${enc(route.key)}/edit${qs}`;
    case 'results':
      return `#/${plural(route.kind)}/${enc(route.key)}/results${qs}`;
    case 'new':
      return `#/new/${route.kind}${qs}`;
    case 'audit':
      return `#/audit${qs}`;
    case 'propagation':
      return `#/propagation${qs}`;
    case 'notfound':
      return DEFAULT_HASH;
  }
}
