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
      selector: env.name,
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

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
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
