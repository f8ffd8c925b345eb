// A fake fetch for view tests: answers the console API's paths from handlers, records calls.

import { Api } from '../src/api';
import type { Ctx } from '../src/context';
import type { Environment } from '../src/types';

export type Handler = (method: string, path: string, body: unknown) => { status: number; body: unknown } | undefined;

export function fakeApi(handler: Handler) {
  const calls: { method: string; path: string; body: unknown }[] = [];
  const fetchImpl = (async (url: string, init: RequestInit) => {
    const path = url.replace(/^\/api\/v1/, '');
    const body = init.body ? JSON.parse(init.body as string) : undefined;
    calls.push({ method: init.method ?? 'GET', path, body });
    const answer = handler(init.method ?? 'GET', path, body) ?? {
      status: 404,
      body: { error: { code: 'NOT_FOUND', message: `no ${path}` } },
    };
    return new Response(JSON.stringify(answer.body), { status: answer.status });
  }) as unknown as typeof fetch;
  return { api: new Api(() => 'key', fetchImpl), calls };
}

export const ENV: Environment = { id: 'env-1', key: 'dev', name: 'Development', version: 7 };

export function fakeCtx(api: Api, query = ''): Ctx & { went: string[]; refreshed: number; signedOutWith: string[] } {
  const ctx = {
    api,
    env: ENV,
    environments: [ENV],
    query: new URLSearchParams(query),
    signal: new AbortController().signal,
    went: [] as string[],
    refreshed: 0,
    signedOutWith: [] as string[],
    go(hash: string) {
      ctx.went.push(hash);
    },
    refresh() {
      ctx.refreshed += 1;
    },
    signedOut(message: string) {
      ctx.signedOutWith.push(message);
    },
  };
  return ctx;
}

/** Lets pending promises and their DOM updates run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}
