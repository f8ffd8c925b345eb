// A stand-in for the console backend (console/API.md), for running the browser end-to-end
// script without the Rust stack: in memory, one organization, two environments. Test-only:
// the shipped page never talks to it. It serves dist/ like the real backend.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { randomUUID } from 'node:crypto';
import { syntheticResults } from '../e2e/synthetic.mjs';

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };

class Refused extends Error {
  constructor(status, code, message, violations = []) {
    super(message);
    Object.assign(this, { status, code, violations });
  }
}

const invalid = (field, description) => new Refused(400, 'INVALID_ARGUMENT', 'invalid definition', [{ field, description }]);

const MOVES = { start: ['draft', 'running'], pause: ['running', 'paused'], resume: ['paused', 'running'], complete: [null, 'completed'] };

export function startMockBackend({ dist, adminKey, port = 0 }) {
  const envs = new Map();
  for (const [key, name] of [['dev', 'Development'], ['prod', 'Production']]) {
    envs.set(key, { id: randomUUID(), key, name, version: 1, entities: new Map(), audit: [], versions: [{ version: 1, at: Date.now() - 60_000 }] });
  }
  const withResults = new Set();

  const env = (key) => {
    const e = envs.get(key) ?? [...envs.values()].find((x) => x.id === key);
    if (!e) throw new Refused(404, 'NOT_FOUND', `no environment ${key}`);
    return e;
  };

  const commit = (e, kind, key, action, before, after, reason) => {
    e.version += 1;
    e.versions.push({ version: e.version, at: Date.now() });
    e.audit.unshift({
      id: String(e.audit.length + 1),
      version: e.version,
      actor_key_id: 'key-e2e',
      actor_name: 'e2e admin',
      action,
      kind,
      key,
      before,
      after,
      reason,
      at_ms: Date.now(),
    });
    return e.version;
  };

  const validate = (e, kind, def) => {
    if (typeof def !== 'object' || def === null || Array.isArray(def)) throw invalid('definition', 'must be a JSON object');
    if (typeof def.key !== 'string' || def.key === '') throw invalid('definition.key', 'missing field `key`');
    if (kind === 'experiment') {
      const variants = Array.isArray(def.variants) ? def.variants : [];
      const sum = variants.reduce((s, v) => s + (v.weight_bp ?? 0), 0);
      if (sum !== 10000) throw invalid(`definition.variants[${Math.max(0, variants.length - 1)}].weight_bp`, `weights sum to ${sum}, expected 10000`);
      (def.primary_metrics ?? []).forEach((m, i) => {
        if (!e.entities.has(`metric/${m}`)) throw invalid(`definition.primary_metrics[${i}]`, `no metric ${JSON.stringify(m)}`);
      });
    }
  };

  const checkRevision = (entity, expected) => {
    if (entity.revision !== expected) {
      throw new Refused(409, 'FAILED_PRECONDITION', `${entity.kind} ${JSON.stringify(entity.key)} is at revision ${entity.revision}, not ${expected}: it changed since it was read`, [
        { field: 'expected_revision', description: `stale; current revision is ${entity.revision}` },
      ]);
    }
  };

  const find = (e, kind, key) => {
    const entity = e.entities.get(`${kind}/${key}`);
    if (!entity) throw new Refused(404, 'NOT_FOUND', `${kind} ${JSON.stringify(key)} does not exist`);
    return entity;
  };

  const write = (e, kind, key, action, definition, reason = null) => {
    const before = e.entities.get(`${kind}/${key}`) ?? null;
    const now = Date.now();
    const entity = before
      ? { ...before, definition, revision: before.revision + 1, updated_at_ms: now }
      : { kind, key, definition, revision: 1, created_at_ms: now, updated_at_ms: now };
    e.entities.set(`${kind}/${key}`, entity);
    const version = commit(e, kind, key, action, before?.definition ?? null, definition, reason);
    return { entity, version };
  };

  const api = (method, parts, query, body) => {
    if (parts[0] === 'session' && method === 'GET') {
      return { environments: [...envs.values()].map(({ id, key, name, version }) => ({ id, key, name, version })) };
    }
    if (parts[0] !== 'environments' || !parts[1]) throw new Refused(404, 'NOT_FOUND', 'no such endpoint');
    const e = env(parts[1]);
    const [, , what, a, b, c] = parts;
    if (what === 'entities') {
      if (method === 'GET' && !a) {
        const kind = query.get('kind');
        return { entities: [...e.entities.values()].filter((x) => !kind || x.kind === kind) };
      }
      if (method === 'GET') return find(e, a, b);
      if (method === 'POST') {
        const def = structuredClone(body.definition);
        validate(e, a, def);
        if (e.entities.has(`${a}/${def.key}`)) throw new Refused(409, 'ALREADY_EXISTS', `${a} ${JSON.stringify(def.key)} already exists`);
        if (a === 'experiment') {
          def.id ??= randomUUID();
          def.status ??= 'draft';
          if (def.status !== 'draft') throw invalid('definition.status', 'new experiments start as draft');
          def.variants = def.variants.map((v) => ({ control: false, ...v }));
        }
        return write(e, a, def.key, 'create', def);
      }
      if (method === 'PUT') {
        const existing = find(e, a, b);
        checkRevision(existing, body.expected_revision);
        const def = structuredClone(body.definition);
        if (a === 'experiment') def.id ??= existing.definition.id;
        validate(e, a, def);
        if (def.key !== b) throw invalid('definition.key', `cannot rename ${b}`);
        if (a === 'experiment' && def.status !== existing.definition.status) {
          throw new Refused(409, 'FAILED_PRECONDITION', 'status changes only through TransitionExperiment', [{ field: 'definition.status', description: 'status changes only through TransitionExperiment' }]);
        }
        return write(e, a, b, 'update', def);
      }
      if (method === 'DELETE') {
        const existing = find(e, a, b);
        checkRevision(existing, Number(query.get('expected_revision')));
        e.entities.delete(`${a}/${b}`);
        return { entity: null, version: commit(e, a, b, 'delete', existing.definition, null, null) };
      }
    }
    if (what === 'experiments' && b === 'transition' && method === 'POST') {
      const existing = find(e, 'experiment', a);
      checkRevision(existing, body.expected_revision);
      const [from, to] = MOVES[body.action] ?? [];
      const status = existing.definition.status;
      const legal = to && (from === status || (from === null && (status === 'running' || status === 'paused')));
      if (!legal) throw new Refused(409, 'FAILED_PRECONDITION', `cannot ${body.action} experiment ${JSON.stringify(a)}: it is ${status}`);
      return write(e, 'experiment', a, body.action, { ...existing.definition, status: to }, body.reason || null);
    }
    if (what === 'audit' && method === 'GET') {
      const kind = query.get('kind');
      const key = query.get('key');
      const limit = Number(query.get('limit') ?? 200);
      return { entries: e.audit.filter((x) => (!kind || x.kind === kind) && (!key || x.key === key)).slice(0, limit) };
    }
    if (what === 'propagation' && method === 'GET') {
      const last = Number(query.get('last') ?? 10);
      const now = Date.now();
      return {
        versions: e.versions
          .slice(-last)
          .reverse()
          .map((v) => {
            const acked = now - v.at > 800 ? 1 : 0;
            return { version: v.version, connected: 1, acknowledged: acked, p50_ms: acked ? 12 : null, p99_ms: acked ? 40 : null, max_ms: acked ? 41 : null };
          }),
      };
    }
    if (what === 'results' && method === 'GET' && c === undefined) {
      find(e, 'experiment', a);
      if (!withResults.has(a)) return { latest: null, looks: [] };
      return syntheticResults({ key: a, names: e.entities.get(`experiment/${a}`).definition.primary_metrics, segmentValues: 3, looks: 4 });
    }
    throw new Refused(404, 'NOT_FOUND', 'no such endpoint');
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://mock');
    const send = (status, body, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    };
    if (url.pathname.startsWith('/api/')) {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      try {
        if (req.headers.authorization !== `Bearer ${adminKey}`) throw new Refused(401, 'UNAUTHENTICATED', 'unknown or revoked admin key');
        const parts = url.pathname.replace(/^\/api\/v1\//, '').split('/').map(decodeURIComponent);
        const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : null;
        send(200, api(req.method, parts, url.searchParams, body));
      } catch (err) {
        if (!(err instanceof Refused)) throw err;
        const error = { code: err.code, message: err.message, ...(err.violations.length ? { violations: err.violations } : {}) };
        send(err.status, { error });
      }
      return;
    }
    const file = url.pathname === '/' ? 'index.html' : normalize(url.pathname).replace(/^\/+/, '');
    try {
      send(200, await readFile(join(dist, file)), TYPES[extname(file)] ?? 'application/octet-stream');
    } catch {
      send(404, 'not found', 'text/plain');
    }
  });

  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        /** Makes the experiment's results appear, as traffic and an analysis cycle would. */
        traffic: (key) => withResults.add(key),
        seed: (envKey, kind, definition) => write(env(envKey), kind, definition.key, 'create', definition),
        close: () => new Promise((r) => server.close(r)),
      });
    });
  });
}
