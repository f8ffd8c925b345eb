// The console API (console/API.md): same-origin, relative paths, the admin key as a bearer
// token. Every failure becomes an ApiError carrying the API's code and field violations.

import type {
  AuditEntry,
  Definition,
  Entity,
  ErrorBody,
  ExperimentAction,
  Kind,
  Propagation,
  Results,
  Session,
  Violation,
  Write,
} from './types';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly violations: Violation[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Codes for statuses whose body was not the API's error JSON (a proxy's page, say). */
const CODE_BY_STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'FAILED_PRECONDITION',
  503: 'UNAVAILABLE',
};

export type KeySource = () => string | null;

export class Api {
  /** GETs started ahead of the page that reads them, each answered once. */
  private readonly early = new Map<string, Promise<unknown>>();

  constructor(
    private readonly key: KeySource,
    private readonly fetchImpl: typeof fetch = (...args) => fetch(...args),
  ) {}

  /** Starts a GET now, for the first request of the same path to take. */
  prefetch(path: string): void {
    const p = this.request('GET', path);
    // Handled here so an unread prefetch is not an unhandled rejection; its reader still sees it.
    p.catch(() => {});
    this.early.set(path, p);
  }

  /** Drops prefetched answers nobody read (they would be stale by the next page). */
  forgetPrefetched(): void {
    this.early.clear();
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, key = this.key()): Promise<T> {
    const early = method === 'GET' ? this.early.get(path) : undefined;
    if (early) {
      this.early.delete(path);
      return early as Promise<T>;
    }
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: 'no-store',
      });
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'UNAVAILABLE', 'The console backend cannot be reached.');
    }
    if (!response.ok) throw errorFrom(response.status, await response.text());
    // Parsed from the bytes: a results answer runs to megabytes, and no string copy is made.
    return (await response.json()) as T;
  }

  /** Checks a key (the signed-in one unless another is given, as at sign-in). */
  session(key?: string): Promise<Session> {
    return this.request('GET', '/session', undefined, undefined, key ?? this.key());
  }

  entities(env: string, kind?: Kind, signal?: AbortSignal): Promise<{ entities: Entity[] }> {
    const q = kind ? `?kind=${encodeURIComponent(kind)}` : '';
    return this.request('GET', `${envPath(env)}/entities${q}`, undefined, signal);
  }

  entity(env: string, kind: Kind, key: string, signal?: AbortSignal): Promise<Entity> {
    return this.request('GET', onePath(env, kind, key), undefined, signal);
  }

  create(env: string, kind: Kind, definition: Definition): Promise<Write> {
    return this.request('POST', entityPath(env, kind), { definition });
  }

  update(env: string, kind: Kind, key: string, definition: Definition, expectedRevision: number): Promise<Write> {
    return this.request('PUT', onePath(env, kind, key), {
      definition,
      expected_revision: expectedRevision,
    });
  }

  remove(env: string, kind: Kind, key: string, expectedRevision: number): Promise<Write> {
    return this.request('DELETE', `${onePath(env, kind, key)}?expected_revision=${expectedRevision}`);
  }

  transition(env: string, key: string, action: ExperimentAction, reason: string, expectedRevision: number): Promise<Write> {
    return this.request('POST', `${envPath(env)}/experiments/${enc(key)}/transition`, {
      action,
      reason,
      expected_revision: expectedRevision,
    });
  }

  audit(env: string, filter: AuditQuery, signal?: AbortSignal): Promise<{ entries: AuditEntry[] }> {
    return this.request('GET', auditPath(env, filter), undefined, signal);
  }

  propagation(env: string, last: number, signal?: AbortSignal): Promise<{ versions: Propagation[] }> {
    return this.request('GET', `${envPath(env)}/propagation?last=${last}`, undefined, signal);
  }

  results(env: string, experiment: string, signal?: AbortSignal): Promise<Results> {
    return this.request('GET', resultsPath(env, experiment), undefined, signal);
  }
}

export function errorFrom(status: number, text: string): ApiError {
  const fallback = CODE_BY_STATUS[status] ?? (status >= 500 ? 'INTERNAL' : 'UNKNOWN');
  try {
    const body = JSON.parse(text) as Partial<ErrorBody>;
    if (body.error && typeof body.error.code === 'string') {
      return new ApiError(status, body.error.code, body.error.message ?? '', body.error.violations ?? []);
    }
  } catch {
    // Not the API's JSON: described by its status below.
  }
  return new ApiError(status, fallback, `The server answered ${status}.`);
}

const enc = encodeURIComponent;
const envPath = (env: string) => `/environments/${enc(env)}`;
const entityPath = (env: string, kind: Kind) => `${envPath(env)}/entities/${enc(kind)}`;
export const onePath = (env: string, kind: Kind, key: string) => `${entityPath(env, kind)}/${enc(key)}`;
export const resultsPath = (env: string, experiment: string) => `${envPath(env)}/results/${enc(experiment)}`;

export interface AuditQuery {
  kind?: string;
  key?: string;
  limit?: number;
}

export function auditPath(env: string, filter: AuditQuery): string {
  const q = new URLSearchParams();
  if (filter.kind) q.set('kind', filter.kind);
  if (filter.key) q.set('key', filter.key);
  if (filter.limit) q.set('limit', String(filter.limit));
  const qs = q.toString();
  return `${envPath(env)}/audit${qs ? `?${qs}` : ''}`;
}
