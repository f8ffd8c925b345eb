// Resolves Cohort's conformance cases through the real OpenFeature Node SDK.
//
// Reads the plan (JSON, path in argv[2]) the Rust test `openfeature` writes: per environment
// its key, the OFREP base URL, the flagd address bound to that environment's key (the Node
// flagd provider sends no credentials) and the cases. Resolves every case through the OFREP
// provider and the flagd provider (RPC mode) and prints one JSON line per resolution; the
// Rust test compares them with the expected outcomes.
import { readFileSync } from 'node:fs';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { FlagdProvider } from '@openfeature/flagd-provider';

const DEFAULTS = { boolean: false, string: '', float: 0, integer: 0, object: {} };

function providers(env) {
  return {
    ofrep: new OFREPProvider({
      baseUrl: env.ofrep_url,
      headers: [['Authorization', `Bearer ${env.key}`]],
    }),
    flagd: new FlagdProvider({
      host: env.flagd_host,
      port: env.flagd_bound_port,
      // The environment the evaluation service bound to this selector (its key stays there).
      selector: env.selector_override ?? env.name,
      resolverType: 'rpc',
      cache: 'disabled',
      deadlineMs: 5000,
    }),
  };
}

function context(c) {
  const ctx = c.context ?? {};
  const out = { ...(ctx.attributes ?? {}) };
  if (ctx.targetingKey != null) out.targetingKey = ctx.targetingKey;
  return out;
}

async function resolve(client, c) {
  const call = {
    boolean: client.getBooleanDetails,
    string: client.getStringDetails,
    float: client.getNumberDetails,
    integer: client.getNumberDetails,
    object: client.getObjectDetails,
  }[c.type].bind(client);
  const d = await call(c.key, DEFAULTS[c.type], context(c));
  return {
    value: d.value,
    variant: d.variant ?? null,
    reason: d.reason ?? null,
    error_code: d.errorCode ?? null,
    metadata: d.flagMetadata ?? {},
  };
}

const out = (fields) => process.stdout.write(JSON.stringify(fields) + '\n');
const details = (d) => ({ value: d.value, reason: d.reason ?? null, error_code: d.errorCode ?? null });

async function readyClient(domain, provider) {
  try {
    await OpenFeature.setProviderAndWait(domain, provider);
  } catch {
    // A provider that cannot start answers with errors: what is checked.
  }
  return OpenFeature.getClient(domain);
}

// Error paths through each provider, then a change reaching a cached flagd provider.
async function scenarios(sc) {
  const ctx = { targetingKey: 'user-1' };
  for (const [protocol, provider] of Object.entries(providers(sc))) {
    const client = await readyClient(`wrong-type-${protocol}`, provider);
    out({ step: 'wrong_type', protocol, ...details(await client.getStringDetails(sc.flag, 'dflt', ctx)) });
  }
  const steps = [
    ['revoked', { ...sc, key: sc.revoked_key, selector_override: 'revoked' }],
    ['down', { ...sc, ofrep_url: `http://127.0.0.1:${sc.down_port}`, flagd_bound_port: sc.down_port }],
  ];
  for (const [step, env] of steps) {
    for (const [protocol, provider] of Object.entries(providers(env))) {
      const client = await readyClient(`${step}-${protocol}`, provider);
      out({ step, protocol, ...details(await client.getBooleanDetails(sc.flag, true, ctx)) });
    }
  }
  const cached = new FlagdProvider({
    host: sc.flagd_host, port: sc.flagd_bound_port, selector: sc.name, resolverType: 'rpc',
    cache: 'lru', deadlineMs: 5000,
  });
  const client = await readyClient('watch', cached);
  const first = details(await client.getBooleanDetails(sc.flag, false, ctx));
  const second = details(await client.getBooleanDetails(sc.flag, false, ctx));
  out({ step: 'cached', first, second });
  // The test changes the flag, then says so.
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const started = Date.now();
  let d = await client.getBooleanDetails(sc.flag, false, ctx);
  while (d.value === first.value && Date.now() - started < 10000) {
    await new Promise((r) => setTimeout(r, 50));
    d = await client.getBooleanDetails(sc.flag, false, ctx);
  }
  out({ step: 'changed', seconds: (Date.now() - started) / 1000, ...details(d) });
}

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
if (process.argv[3] === 'scenarios') {
  await scenarios(plan.scenarios);
  await OpenFeature.close();
  process.exit(0);
}
for (const env of plan.environments) {
  for (const [protocol, provider] of Object.entries(providers(env))) {
    // COHORT_OPENFEATURE_ONLY=ofrep|flagd narrows a run by hand, when debugging.
    if ((process.env.COHORT_OPENFEATURE_ONLY ?? protocol) !== protocol) continue;
    const domain = `${env.name}-${protocol}`;
    await OpenFeature.setProviderAndWait(domain, provider);
    const client = OpenFeature.getClient(domain);
    for (const c of env.cases) {
      const out = await resolve(client, c);
      process.stdout.write(JSON.stringify({ ...out, environment: env.name, protocol, case: c.name }) + '\n');
    }
  }
}
await OpenFeature.close();
