//! The real OpenFeature SDKs (Python and Node, from the pinned lists in `openfeature/`, set up
//! by `scripts/openfeature-setup.sh`) decide every conformance case as Cohort does, through
//! both protocols: OFREP and flagd's evaluation gRPC. Each language's program only resolves
//! and prints; the expectations are compared here, once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Parser;
use cohort_core::conformance::{self, Case, Suite};
use cohort_core::model::FlagType;
use serde_json::{Value, json};

use cohort_proto::config::v1 as cpb;

use crate::conformance::write_suite;
use crate::{PATIENCE, Stack};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// How a case is resolved through OpenFeature: a flag by its type, an experiment as a string
/// (its variant key) or, when its variant carries a payload, as an object.
fn resolution_type(suite: &Suite, case: &Case) -> &'static str {
    if let Some(f) = suite.config.flags.iter().find(|f| f.key == case.key) {
        return match f.flag_type {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            // An application reads a whole-number flag as an integer (Python's providers check).
            FlagType::Number if f.variations.iter().all(|v| v.value.is_i64() || v.value.is_u64()) => {
                "integer"
            }
            FlagType::Number => "float",
            FlagType::Json => "object",
        };
    }
    if case.expected.value.is_object() { "object" } else { "string" }
}

/// What OpenFeature must report for a case resolved as `kind`: the value (the caller's
/// default when Cohort serves none), variant, reason and error code. An enrolled experiment's
/// string value is its variant key.
fn expected(kind: &str, experiment: bool, case: &Case) -> Value {
    let default = match kind {
        "boolean" => json!(false),
        "string" => json!(""),
        "float" => json!(0.0),
        "integer" => json!(0),
        _ => json!({}),
    };
    let e = &case.expected;
    if let Some(code) = e.error_code {
        return json!({"value": default, "reason": "ERROR", "error_code": code.as_str()});
    }
    let value = match (experiment, kind, &e.value) {
        (true, "string", _) if e.enrolled => json!(e.variant),
        (_, _, Value::Null) => default,
        (_, _, v) => v.clone(),
    };
    json!({"value": value, "variant": e.variant, "reason": e.reason.as_str(), "error_code": null})
}

fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        _ => want == got,
    }
}

/// Every field of `want` that is not null must match; a null variant must be absent or null.
fn mismatch(want: &Value, got: &Value) -> Option<String> {
    let fields = ["value", "variant", "reason", "error_code"];
    let wrong: Vec<&str> = fields
        .into_iter()
        .filter(|f| !same(want.get(f).unwrap_or(&Value::Null), got.get(f).unwrap_or(&Value::Null)))
        .collect();
    (!wrong.is_empty()).then(|| format!("{} differ: want {want}, got {got}", wrong.join(", ")))
}

/// Runs `program plan scenarios`: the error paths (a wrong type, a revoked key, the service
/// down: the caller's default and an error, however each provider words it), then a flagd
/// provider with its cache on reads the flag twice (cached the second time) and, once the flag
/// is switched over here, sees the new value within seconds: the change reached it through
/// EventStream and emptied its cache. What differs, as failures.
async fn scenarios(
    stack: &Stack,
    language: &str,
    program: &[&str],
    plan: &Path,
    revision: &mut i64,
    on: &mut bool,
) -> Vec<String> {
    use std::io::{BufRead, Write};
    let mut child = std::process::Command::new(program[0])
        .args(&program[1..])
        .arg(plan)
        .arg("scenarios")
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program:?}: {e}"));
    let (mut stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(format!("{language} scenarios: {what}"));
    loop {
        let Ok(Some(line)) = tokio::time::timeout(PATIENCE, rx.recv()).await else { break };
        let got: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{language}: {e}: {line}"));
        if got["step"] == "cached" {
            if got["second"]["reason"] != "CACHED" || got["first"]["value"] != *on {
                fail(format!("the cached provider did not cache: {got}"));
            }
            // Switch the flag over, then tell the program.
            *on = !*on;
            let off = crate::flag_json("watched", *on);
            let mut config = stack.config_client().await;
            let update = cpb::UpdateEntityRequest {
                environment: "openfeature-watch".into(),
                kind: cpb::EntityKind::Flag as i32,
                key: "watched".into(),
                definition: cohort_proto::convert::structured::text_struct(&off),
                expected_revision: *revision,
                reason: String::new(),
            };
            config.update_entity(crate::authed(&stack.tenant.admin_key, update)).await.unwrap();
            *revision += 1;
            stdin.write_all(b"changed\n").unwrap();
            stdin.flush().unwrap();
        }
        lines.push(got);
    }
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    if !status.success() {
        fail(format!("exited with {status}"));
    }
    let step = |name: &str| lines.iter().filter(|l| l["step"] == name).collect::<Vec<_>>();
    let wrong = step("wrong_type");
    if wrong.len() != 2 || wrong.iter().any(|l| l["error_code"] != "TYPE_MISMATCH" || l["value"] != "dflt") {
        fail(format!("a wrong type: {wrong:?}"));
    }
    for name in ["revoked", "down"] {
        let got = step(name);
        let errors = ["GENERAL", "PROVIDER_NOT_READY", "PROVIDER_FATAL"];
        // Node's flagd provider (0.16.1) words UNAVAILABLE as FLAG_NOT_FOUND.
        let node_unavailable = |l: &Value| {
            name == "down"
                && language == "node"
                && l["protocol"] == "flagd"
                && l["error_code"] == "FLAG_NOT_FOUND"
        };
        let served_default = |l: &&Value| {
            l["value"] == true
                && l["reason"] == "ERROR"
                && (errors.iter().any(|e| l["error_code"] == *e) || node_unavailable(l))
        };
        if got.len() != 2 || !got.iter().all(served_default) {
            fail(format!("{name}: the caller's default and an error expected: {got:?}"));
        }
    }
    let changed = step("changed");
    if changed.len() != 1 || changed[0]["value"] != *on {
        fail(format!("the change did not reach the cached provider: {changed:?}"));
    }
    failures
}

/// The resolutions of `language` that differ from what is expected of them.
fn compare(language: &str, lines: &[Value], expectations: &BTreeMap<(String, String), Value>) -> Vec<String> {
    let mut failures = Vec::new();
    for got in lines {
        let key = (got["environment"].as_str().unwrap().to_owned(), got["case"].as_str().unwrap().to_owned());
        let mut want = expectations[&key].clone();
        // Node's OFREP provider (0.1.3) predates OFREP's code-default answer (ADR 0006): it
        // takes an answer without a value for an error. The caller's default is served either
        // way; only the reason differs.
        let code_default = want["variant"].is_null() && want["error_code"].is_null();
        if code_default && language == "node" && got["protocol"] == "ofrep" {
            want["reason"] = json!("ERROR");
            want["error_code"] = json!("GENERAL");
        }
        // flagd's gRPC has one status for a bad context and a type mismatch
        // (INVALID_ARGUMENT), and the providers read only the status: they report
        // TYPE_MISMATCH.
        let context_error =
            matches!(want["error_code"].as_str(), Some("TARGETING_KEY_MISSING" | "INVALID_CONTEXT"));
        if context_error && got["protocol"] == "flagd" {
            // …and Rust's (0.3.0) calls that status INVALID_CONTEXT.
            want["error_code"] = json!(if language == "rust" { "INVALID_CONTEXT" } else { "TYPE_MISMATCH" });
        }
        // The Rust OFREP provider (0.1.2) says STATIC of every answer, calls every 400
        // INVALID_CONTEXT whatever its errorCode, and takes an answer without a value for
        // unparsable: values and variants are what it can be held to.
        if language == "rust" && got["protocol"] == "ofrep" {
            if code_default {
                want = json!({"value": want["value"], "reason": "ERROR", "error_code": "PARSE_ERROR"});
            } else if want["error_code"].is_null() {
                want["reason"] = json!("STATIC");
            } else if want["error_code"] != "FLAG_NOT_FOUND" {
                want["error_code"] = json!("INVALID_CONTEXT");
            }
        }
        // The Rust flagd provider (0.3.0) passes v1's zero values on (a "" variant where Cohort
        // sends none) and renders lists inside objects as debug text: those are left out.
        let mut got = got.clone();
        if language == "rust" && got["protocol"] == "flagd" {
            if got["variant"] == "" {
                got["variant"] = Value::Null;
            }
            if let Some(w) = want["value"].as_object_mut() {
                let lists: Vec<String> =
                    w.iter().filter(|(_, v)| v.is_array()).map(|(k, _)| k.clone()).collect();
                for k in &lists {
                    w.remove(k);
                    if let Some(g) = got["value"].as_object_mut() {
                        g.remove(k);
                    }
                }
            }
        }
        let got = &got;
        if let Some(m) = mismatch(&want, got) {
            failures.push(format!("{language}/{} {}: {m}", got["protocol"], key.1));
        }
    }
    failures
}

/// Runs `program plan` from the repository root (on a blocking thread: the stack it talks to
/// runs on this runtime); its standard output.
async fn run(program: Vec<String>, plan: PathBuf) -> String {
    let out = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&program[0])
            .args(&program[1..])
            .arg(&plan)
            .current_dir(repo())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program:?}: {e}; run scripts/openfeature-setup.sh first"));
        assert!(
            out.status.success(),
            "{program:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    })
    .await
    .expect("the program ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Rust SDK's resolutions of `env`'s cases through its OFREP provider, as the other
/// languages print them. Its context has no lists: cases with a list attribute are left out
/// (`skipped`).
async fn rust_ofrep(env: &Value, skipped: &mut Vec<String>) -> Vec<Value> {
    use open_feature_ofrep::{OfrepOptions, OfrepProvider};

    let mut headers = reqwest_headers();
    headers.insert("authorization", format!("Bearer {}", env["key"].as_str().unwrap()).parse().unwrap());
    let provider = OfrepProvider::new(OfrepOptions {
        base_url: env["ofrep_url"].as_str().unwrap().to_owned(),
        headers,
        ..OfrepOptions::default()
    })
    .await
    .expect("an OFREP provider");
    rust_resolve(env, "ofrep", provider, skipped).await
}

/// The Rust SDK's resolutions through its flagd provider (RPC, flagd.evaluation.v1). It sends
/// no metadata, so an evaluation service of its own binds the environment's key for calls
/// without one, for as long as it runs.
async fn rust_flagd(stack: &Stack, env: &Value, skipped: &mut Vec<String>) -> Vec<Value> {
    use open_feature_flagd::{FlagdOptions, FlagdProvider, ResolverType};

    let (addr, shutdown, task) = bound_service(stack, &[env["key"].as_str().unwrap().to_owned()]).await;
    let provider = FlagdProvider::new(FlagdOptions {
        host: "127.0.0.1".into(),
        port: addr.port(),
        resolver_type: ResolverType::Rpc,
        cache_settings: None,
        deadline_ms: 5000,
        ..FlagdOptions::default()
    })
    .await
    .expect("a flagd provider");
    let out = rust_resolve(env, "flagd", provider, skipped).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    out
}

/// An evaluation service of its own over the stack's config service, binding `bindings`
/// (`--flagd-environment-key` entries) for flagd calls that carry no key.
async fn bound_service(
    stack: &Stack,
    bindings: &[String],
) -> (std::net::SocketAddr, cohort_runtime::Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let mut argv = vec![
        "cohort-evaluation".to_owned(),
        "--config-endpoint".to_owned(),
        format!("http://{}", stack.config_addr),
        "--events-endpoint".to_owned(),
        // Exposures of these resolutions go nowhere; the protocols' own tests follow them.
        "http://127.0.0.1:1".to_owned(),
        "--shutdown-grace".to_owned(),
        "1s".to_owned(),
    ];
    for binding in bindings {
        argv.extend(["--flagd-environment-key".to_owned(), binding.clone()]);
    }
    crate::in_process(cohort_evaluation::Settings::try_parse_from(argv).unwrap()).await
}

/// Resolves `env`'s cases through `provider` with the Rust SDK, printing them as the other
/// languages do.
async fn rust_resolve(
    env: &Value,
    protocol: &str,
    provider: impl open_feature::provider::FeatureProvider,
    skipped: &mut Vec<String>,
) -> Vec<Value> {
    use open_feature::{EvaluationContext, EvaluationContextFieldValue, OpenFeature, StructValue};

    let domain = format!("{}-{protocol}", env["name"].as_str().unwrap());
    let client = {
        let mut api = OpenFeature::singleton_mut().await;
        api.set_named_provider(&domain, provider).await;
        api.create_named_client(&domain)
    };
    let mut out = Vec::new();
    for case in env["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut ctx = EvaluationContext::default();
        if let Some(k) = case["context"]["targetingKey"].as_str() {
            ctx = ctx.with_targeting_key(k);
        }
        let mut listed = false;
        for (attribute, value) in case["context"]["attributes"].as_object().into_iter().flatten() {
            let field = match value {
                Value::String(s) => EvaluationContextFieldValue::String(s.clone()),
                Value::Bool(b) => EvaluationContextFieldValue::Bool(*b),
                Value::Number(n) if n.is_i64() => EvaluationContextFieldValue::Int(n.as_i64().unwrap()),
                Value::Number(n) => EvaluationContextFieldValue::Float(n.as_f64().unwrap()),
                _ => {
                    listed = true;
                    continue;
                }
            };
            ctx = ctx.with_custom_field(attribute.as_str(), field);
        }
        if listed {
            if protocol == "ofrep" {
                skipped.push(name.to_owned());
            }
            continue;
        }
        let key = case["key"].as_str().unwrap();
        let (value, details) = match case["type"].as_str().unwrap() {
            "boolean" => {
                split(client.get_bool_details(key, Some(&ctx), None).await, json!(false), Value::from)
            }
            "string" => split(client.get_string_details(key, Some(&ctx), None).await, json!(""), Value::from),
            "integer" => split(client.get_int_details(key, Some(&ctx), None).await, json!(0), Value::from),
            "float" => split(client.get_float_details(key, Some(&ctx), None).await, json!(0.0), Value::from),
            _ => {
                split(client.get_struct_details::<StructValue>(key, Some(&ctx), None).await, json!({}), |s| {
                    struct_json(&s)
                })
            }
        };
        let mut line = details;
        line["value"] = value;
        line["environment"] = env["name"].clone();
        line["protocol"] = json!(protocol);
        line["case"] = json!(name);
        out.push(line);
    }
    out
}

/// The provider's header type: reqwest's, which is `http`'s, as axum's is.
fn reqwest_headers() -> axum::http::HeaderMap {
    axum::http::HeaderMap::new()
}

/// A resolution's value (the default on error) and its variant, reason and error code.
fn split<T>(
    r: Result<open_feature::EvaluationDetails<T>, open_feature::EvaluationError>,
    default: Value,
    value: impl Fn(T) -> Value,
) -> (Value, Value) {
    match r {
        Ok(d) => (
            value(d.value),
            json!({"variant": d.variant, "reason": d.reason.map(|r| r.to_string()), "error_code": null}),
        ),
        Err(e) => {
            // General carries a message, which is what it displays ("Unknown" for the
            // UNKNOWN status flagd's gRPC answers a general error with).
            let code = match e.code {
                open_feature::EvaluationErrorCode::General(_) => "GENERAL".to_owned(),
                other => other.to_string(),
            };
            (default, json!({"variant": null, "reason": "ERROR", "error_code": code}))
        }
    }
}

fn struct_json(s: &open_feature::StructValue) -> Value {
    s.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect::<serde_json::Map<_, _>>().into()
}

fn value_json(v: &open_feature::Value) -> Value {
    use open_feature::Value as V;
    match v {
        V::Bool(b) => json!(b),
        V::Int(i) => json!(i),
        V::Float(f) => json!(f),
        V::String(s) => json!(s),
        V::Array(a) => a.iter().map(value_json).collect::<Vec<_>>().into(),
        V::Struct(s) => struct_json(s),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_openfeature_sdks_decide_every_conformance_case_as_cohort_does() {
    let venv = repo().join("target/openfeature/venv/bin/python");
    let node_modules = repo().join("openfeature/node/node_modules");
    assert!(
        venv.exists() && node_modules.exists(),
        "the OpenFeature SDKs are not installed: run scripts/openfeature-setup.sh (make test does)"
    );
    let stack = Stack::start().await;
    let mut environments = Vec::new();
    let mut expectations = BTreeMap::new();
    for (i, suite) in conformance::suites().iter().enumerate() {
        let env = format!("openfeature-{i}");
        let key = stack.environment(&env).await;
        write_suite(&stack, &env, &suite.config).await;
        let mut cases = Vec::new();
        for (j, case) in suite.cases.iter().enumerate() {
            // A targeting key the wire cannot carry is refused before evaluation; the
            // protocols' own tests cover those.
            if case.expected.error_code == Some(cohort_core::ErrorCode::InvalidContext) {
                continue;
            }
            let kind = resolution_type(suite, case);
            let experiment = suite.config.experiments.iter().any(|e| e.key == case.key);
            let name = format!("{}#{j}: {}", suite.name, case.name);
            expectations.insert((env.clone(), name.clone()), expected(kind, experiment, case));
            let mut context = json!({"attributes": case.context.attributes});
            if let Some(k) = &case.context.targeting_key {
                context["targetingKey"] = json!(k);
            }
            cases.push(json!({"name": name, "key": case.key, "type": kind, "context": context}));
        }
        environments.push(json!({
            "name": env, "key": key, "ofrep_url": format!("http://{}", stack.http),
            "flagd_host": "127.0.0.1", "flagd_port": stack.grpc.port(), "cases": cases,
        }));
    }
    // The scenarios' environment: one flag that will change, and a second key to revoke.
    let watch_key = stack.environment("openfeature-watch").await;
    stack.create("openfeature-watch", cpb::EntityKind::Flag, crate::flag_json("watched", true)).await;
    let doomed = stack
        .config_client()
        .await
        .create_api_key(crate::authed(
            &stack.tenant.admin_key,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Sdk as i32,
                name: "revoked".into(),
                environment: "openfeature-watch".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // Nothing listens on port 1 (and nothing unprivileged can): connections are refused.
    let down = 1;

    // Node's flagd provider sends no key: a second evaluation service binds each environment's
    // key to its name, which the provider sends as its `selector`.
    let mut bindings: Vec<String> = environments
        .iter()
        .map(|env| format!("{}={}", env["name"].as_str().unwrap(), env["key"].as_str().unwrap()))
        .collect();
    bindings.push(format!("openfeature-watch={watch_key}"));
    bindings.push(format!("revoked={}", doomed.secret));
    let (bound_addr, shutdown, bound) = bound_service(&stack, &bindings).await;
    let bound_port = bound_addr.port();
    for env in &mut environments {
        env["flagd_bound_port"] = json!(bound_port);
    }

    let scenario_plan = json!({
        "name": "openfeature-watch", "key": watch_key, "revoked_key": doomed.secret, "flag": "watched",
        "ofrep_url": format!("http://{}", stack.http), "flagd_host": "127.0.0.1",
        "flagd_port": stack.grpc.port(), "flagd_bound_port": bound_port, "down_port": down,
    });
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, json!({"environments": environments, "scenarios": scenario_plan}).to_string())
        .unwrap();

    let venv = venv.display().to_string();
    let mut failures = Vec::new();
    for (language, program) in [
        ("python", [venv.as_str(), "openfeature/python/resolve.py"]),
        ("node", ["node", "openfeature/node/resolve.mjs"]),
    ] {
        let out = run(program.map(str::to_owned).to_vec(), plan.clone()).await;
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{language}: {e}: {l}")))
            .collect();
        let protocols = if std::env::var("COHORT_OPENFEATURE_ONLY").is_ok() { 1 } else { 2 };
        assert_eq!(
            lines.len(),
            expectations.len() * protocols,
            "{language}: every case through both protocols"
        );
        failures.extend(compare(language, &lines, &expectations));
    }
    let (mut lines, mut skipped) = (Vec::new(), Vec::new());
    for env in &environments {
        lines.extend(rust_ofrep(env, &mut skipped).await);
        lines.extend(rust_flagd(&stack, env, &mut skipped).await);
    }
    assert!(skipped.len() < 10, "the Rust SDK's context cannot carry these: {skipped:?}");
    assert_eq!(lines.len() + 2 * skipped.len(), 2 * expectations.len(), "rust: every case through both");
    failures.extend(compare("rust", &lines, &expectations));
    // Error paths and a change through each language's providers.
    let id = doomed.key.unwrap().id;
    let mut config = stack.config_client().await;
    config
        .revoke_api_key(crate::authed(&stack.tenant.admin_key, cpb::RevokeApiKeyRequest { id }))
        .await
        .unwrap();
    // The services' key caches let a revoked key live for seconds.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (mut revision, mut on) = (1, true);
    for (language, program) in [
        ("python", [venv.as_str(), "openfeature/python/resolve.py"]),
        ("node", ["node", "openfeature/node/resolve.mjs"]),
    ] {
        failures.extend(scenarios(&stack, language, &program, &plan, &mut revision, &mut on).await);
    }
    shutdown.cancel();
    bound.await.unwrap().unwrap();
    assert!(failures.is_empty(), "{} differ:\n{}", failures.len(), failures.join("\n"));
    stack.stop().await;
}
