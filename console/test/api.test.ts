import { describe, expect, it } from 'vitest';
import { Api, ApiError, errorFrom } from '../src/api';

function recorder(status: number, body: unknown) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetchImpl = (async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status });
  }) as unknown as typeof fetch;
  return { calls, fetchImpl };
}

describe('api', () => {
  it('sends the key as a bearer token to relative paths, keys escaped', async () => {
    const { calls, fetchImpl } = recorder(200, { entity: null, version: 9 });
    const api = new Api(() => 'secret', fetchImpl);
    await api.update('prod', 'experiment', 'a/b', { key: 'a/b' }, 3);
    expect(calls[0]!.url).toBe('/api/v1/environments/prod/entities/experiment/a%2Fb');
    expect(calls[0]!.init.method).toBe('PUT');
    expect((calls[0]!.init.headers as Record<string, string>).Authorization).toBe('Bearer secret');
    expect(JSON.parse(calls[0]!.init.body as string)).toEqual({ definition: { key: 'a/b' }, expected_revision: 3 });
  });

  it('builds the other paths of the contract', async () => {
    const { calls, fetchImpl } = recorder(200, {});
    const api = new Api(() => 'k', fetchImpl);
    await api.session('other');
    await api.entities('prod', 'flag');
    await api.remove('prod', 'flag', 'f', 2);
    await api.transition('prod', 'x', 'pause', 'why', 5);
    await api.audit('prod', { kind: 'experiment', key: 'x', limit: 50 });
    await api.audit('prod', {});
    await api.propagation('prod', 10);
    await api.results('prod', 'x');
    expect(calls.map((c) => `${c.init.method} ${c.url}`)).toEqual([
      'GET /api/v1/session',
      'GET /api/v1/environments/prod/entities?kind=flag',
      'DELETE /api/v1/environments/prod/entities/flag/f?expected_revision=2',
      'POST /api/v1/environments/prod/experiments/x/transition',
      'GET /api/v1/environments/prod/audit?kind=experiment&key=x&limit=50',
      'GET /api/v1/environments/prod/audit',
      'GET /api/v1/environments/prod/propagation?last=10',
      'GET /api/v1/environments/prod/results/x',
    ]);
    expect((calls[0]!.init.headers as Record<string, string>).Authorization).toBe('Bearer other');
    expect(JSON.parse(calls[3]!.init.body as string)).toEqual({ action: 'pause', reason: 'why', expected_revision: 5 });
  });

  it('turns the API error JSON into an ApiError with its violations', async () => {
    const body = { error: { code: 'INVALID_ARGUMENT', message: 'bad', violations: [{ field: 'definition.key', description: 'empty' }] } };
    const { fetchImpl } = recorder(400, body);
    const err = await new Api(() => 'k', fetchImpl).create('prod', 'flag', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 400, code: 'INVALID_ARGUMENT', message: 'bad', violations: body.error.violations });
  });

  it('names errors without the API JSON by their status', () => {
    expect(errorFrom(409, '<html>')).toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(errorFrom(502, '')).toMatchObject({ code: 'INTERNAL' });
    expect(errorFrom(418, '')).toMatchObject({ code: 'UNKNOWN' });
  });

  it('reports an unreachable backend as UNAVAILABLE', async () => {
    const api = new Api(() => 'k', (async () => {
      throw new TypeError('fetch failed');
    }) as unknown as typeof fetch);
    await expect(api.session()).rejects.toMatchObject({ code: 'UNAVAILABLE', status: 0 });
  });
});
