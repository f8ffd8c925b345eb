"""Resolves Cohort's conformance cases through the real OpenFeature Python SDK.

Reads a plan (JSON, path in argv[1]) that the Rust test `openfeature` writes: per environment
its key, the OFREP base URL, the flagd gRPC address and the cases (flag key, the type to
resolve it as, the context). Resolves every case through the OFREP provider and the flagd
provider (RPC mode) and prints one JSON line per resolution; the Rust test compares them with
the expected outcomes. Comparison lives there, once, for every language.
"""

import json
import os
import sys
import time

import grpc
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import ProviderStatus

DEFAULTS = {"boolean": False, "string": "", "float": 0.0, "integer": 0, "object": {}}


def providers(env):
    key = env["key"]
    ofrep = OFREPProvider(env["ofrep_url"], headers_factory=lambda: {"Authorization": f"Bearer {key}"})
    host, port = env["flagd_host"], env["flagd_port"]
    # Local credentials let a plaintext loopback channel carry the key as call credentials.
    creds = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(key)
    )
    if os.environ.get("COHORT_OPENFEATURE_ONLY") == "ofrep":
        return {"ofrep": ofrep}
    flagd = FlagdProvider(
        host=host,
        port=port,
        resolver_type=ResolverType.RPC,
        cache=CacheType.DISABLED,
        channel_credentials=creds,
        deadline_ms=5000,
    )
    return {"ofrep": ofrep, "flagd": flagd}


def context(case):
    ctx = case.get("context") or {}
    return EvaluationContext(ctx.get("targetingKey"), ctx.get("attributes") or {})


def resolve(client, case):
    kind, key, ctx = case["type"], case["key"], context(case)
    call = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "float": client.get_float_details,
        "integer": client.get_integer_details,
        "object": client.get_object_details,
    }[kind]
    d = call(key, DEFAULTS[kind], ctx)
    return {
        "value": d.value,
        "variant": d.variant,
        "reason": d.reason if isinstance(d.reason, str) or d.reason is None else d.reason.value,
        "error_code": d.error_code.value if d.error_code is not None else None,
        "metadata": dict(d.flag_metadata or {}),
    }


def out(**fields):
    print(json.dumps(fields), flush=True)


def details(d):
    return {
        "value": d.value,
        "reason": d.reason if isinstance(d.reason, str) or d.reason is None else d.reason.value,
        "error_code": d.error_code.value if d.error_code is not None else None,
    }


def ready_client(domain, provider, seconds):
    api.set_provider(provider, domain)
    client = api.get_client(domain)
    deadline = time.monotonic() + seconds
    while client.get_provider_status() != ProviderStatus.READY and time.monotonic() < deadline:
        time.sleep(0.05)
    return client


def scenarios(sc):
    """Error paths through each provider, then a change reaching a cached flagd provider."""
    ctx = EvaluationContext("user-1")
    for protocol, provider in providers(sc).items():
        client = ready_client(f"wrong-type-{protocol}", provider, 15)
        out(step="wrong_type", protocol=protocol, **details(client.get_string_details(sc["flag"], "dflt", ctx)))
    for step, env in [
        ("revoked", dict(sc, key=sc["revoked_key"])),
        ("down", dict(sc, ofrep_url=f"http://127.0.0.1:{sc['down_port']}", flagd_port=sc["down_port"])),
    ]:
        for protocol, provider in providers(env).items():
            client = ready_client(f"{step}-{protocol}", provider, 3)
            out(step=step, protocol=protocol, **details(client.get_boolean_details(sc["flag"], True, ctx)))

    creds = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(sc["key"])
    )
    cached = FlagdProvider(
        host=sc["flagd_host"], port=sc["flagd_port"], resolver_type=ResolverType.RPC,
        cache=CacheType.LRU, channel_credentials=creds, deadline_ms=5000,
    )
    client = ready_client("watch", cached, 15)
    first, second = (client.get_boolean_details(sc["flag"], False, ctx) for _ in range(2))
    out(step="cached", first=details(first), second=details(second))
    # The test changes the flag, then says so.
    sys.stdin.readline()
    started = time.monotonic()
    d = client.get_boolean_details(sc["flag"], False, ctx)
    while d.value == first.value and time.monotonic() - started < 10:
        time.sleep(0.05)
        d = client.get_boolean_details(sc["flag"], False, ctx)
    out(step="changed", seconds=time.monotonic() - started, **details(d))


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    if len(sys.argv) > 2 and sys.argv[2] == "scenarios":
        scenarios(plan["scenarios"])
        api.shutdown()
        return
    for env in plan["environments"]:
        for protocol, provider in providers(env).items():
            # COHORT_OPENFEATURE_ONLY=ofrep|flagd narrows a run by hand, when debugging.
            if os.environ.get("COHORT_OPENFEATURE_ONLY", protocol) != protocol:
                continue
            domain = f"{env['name']}-{protocol}"
            api.set_provider(provider, domain)
            client = api.get_client(domain)
            # The flagd provider is ready once its event stream says so, in the background.
            deadline = time.monotonic() + 15
            while client.get_provider_status() != ProviderStatus.READY and time.monotonic() < deadline:
                time.sleep(0.05)
            for case in env["cases"]:
                out = resolve(client, case)
                out.update({"environment": env["name"], "protocol": protocol, "case": case["name"]})
                print(json.dumps(out), flush=True)
    api.shutdown()


if __name__ == "__main__":
    main()
