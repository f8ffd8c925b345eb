//! flagd's evaluation API (`flagd.evaluation.v1.Service`) end to end, as a flagd provider in
//! RPC mode calls it: every Resolve* on flags of every type, experiments (their exposures
//! recorded), ResolveAll, errors as flagd's statuses, the event stream, keys, and version 2
//! (what current Python and Node providers call), which answers alike with field presence.

use std::time::{Duration, Instant};

use clap::Parser;
use cohort_evaluation::Settings;
use cohort_proto::config::v1 as cpb;
use cohort_proto::convert::flagd::{Kind, Struct, Value, json_object};
use cohort_proto::events::v1 as epb;
use cohort_proto::flagd::evaluation::v1 as pb;
use cohort_proto::flagd::evaluation::v1::service_client::ServiceClient;
use cohort_proto::flagd::evaluation::v2 as pb2;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::{PATIENCE, Stack, authed, flag_json};

async fn client(stack: &Stack) -> ServiceClient<Channel> {
    ServiceClient::connect(format!("http://{}", stack.grpc)).await.expect("connect flagd")
}

/// A flagd context from JSON (an object).
fn context(value: serde_json::Value) -> Option<Struct> {
    let serde_json::Value::Object(object) = value else { panic!("a context is an object") };
    Some(json_object(&object))
}

fn unit(key: &str) -> Option<Struct> {
    context(json!({"targetingKey": key}))
}

fn text(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.into())) }
}

fn boolean(b: bool) -> Value {
    Value { kind: Some(Kind::BoolValue(b)) }
}

/// A flag of `type` whose default serves its first value; `rules` as cohort-core has them.
fn flag(key: &str, flag_type: &str, values: serde_json::Value, rules: serde_json::Value) -> String {
    let serde_json::Value::Array(values) = values else { panic!("values") };
    let variations: Vec<_> =
        values.iter().enumerate().map(|(i, v)| json!({"key": format!("v{i}"), "value": v})).collect();
    json!({
        "key": key, "type": flag_type, "salt": key, "variations": variations,
        "off_variation": "v0", "rules": rules, "default": {"variation": "v0"},
    })
    .to_string()
}

fn bool_request(key: &str, ctx: Option<Struct>) -> pb::ResolveBooleanRequest {
    pb::ResolveBooleanRequest { flag_key: key.into(), context: ctx }
}

/// A running experiment everyone is enrolled in, with payloads.
async fn running_experiment(stack: &Stack) {
    let experiment = json!({
        "key": "button",
        "variants": [
            {"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey"}},
            {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}},
        ],
    });
    let (revision, _) = stack.create("production", cpb::EntityKind::Experiment, experiment.to_string()).await;
    stack.transition("production", "button", cpb::ExperimentAction::Start, revision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resolve_answers_flags_of_its_type_and_errors_as_flagd_does() {
    let stack = Stack::start().await;
    let key = stack.tenant.sdk_key.clone();
    let pro = json!([{"id": "pros", "condition": {"op": "equals", "attribute": "user.plan", "value": "pro"},
                      "serve": {"variation": "v1"}}]);
    stack
        .create(
            "production",
            cpb::EntityKind::Flag,
            flag("dark-mode", "boolean", json!([true, false]), json!([])),
        )
        .await;
    stack
        .create("production", cpb::EntityKind::Flag, flag("greeting", "string", json!(["hi", "hello"]), pro))
        .await;
    stack
        .create("production", cpb::EntityKind::Flag, flag("seats", "number", json!([3, 5]), json!([])))
        .await;
    stack.create("production", cpb::EntityKind::Flag, flag("price", "number", json!([2.5]), json!([]))).await;
    stack
        .create(
            "production",
            cpb::EntityKind::Flag,
            flag("theme", "json", json!([{"color": "green"}]), json!([])),
        )
        .await;
    let split = json!({
        "key": "rollout", "type": "boolean", "salt": "rollout",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off",
        "default": {"split": [{"variation": "on", "weight_bp": 5000}, {"variation": "off", "weight_bp": 5000}]},
    });
    stack.create("production", cpb::EntityKind::Flag, split.to_string()).await;
    let mut c = client(&stack).await;

    let r = c.resolve_boolean(authed(&key, bool_request("dark-mode", unit("u")))).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant.as_str(), r.reason.as_str()), (true, "v0", "STATIC"));

    // Nested objects are dotted attributes: `user.plan` matches the rule.
    let ctx = context(json!({"targetingKey": "u", "user": {"plan": "pro"}}));
    let request = pb::ResolveStringRequest { flag_key: "greeting".into(), context: ctx };
    let r = c.resolve_string(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!((r.value.as_str(), r.variant.as_str(), r.reason.as_str()), ("hello", "v1", "TARGETING_MATCH"));
    assert_eq!(r.metadata.unwrap().fields["ruleId"], text("pros"));

    let request = pb::ResolveIntRequest { flag_key: "seats".into(), context: unit("u") };
    let r = c.resolve_int(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant.as_str(), r.reason.as_str()), (3, "v0", "STATIC"));

    let request = pb::ResolveFloatRequest { flag_key: "price".into(), context: unit("u") };
    let r = c.resolve_float(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant.as_str(), r.reason.as_str()), (2.5, "v0", "STATIC"));
    // An integer is a fine float.
    let request = pb::ResolveFloatRequest { flag_key: "seats".into(), context: unit("u") };
    assert_eq!(c.resolve_float(authed(&key, request)).await.unwrap().into_inner().value, 3.0);

    let request = pb::ResolveObjectRequest { flag_key: "theme".into(), context: unit("u") };
    let r = c.resolve_object(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!(r.value.unwrap().fields["color"], text("green"));
    assert_eq!((r.variant.as_str(), r.reason.as_str()), ("v0", "STATIC"));

    let r = c.resolve_boolean(authed(&key, bool_request("rollout", unit("u")))).await.unwrap().into_inner();
    assert_eq!(r.reason, "SPLIT");

    // A number that is not an integer is no int.
    let request = pb::ResolveIntRequest { flag_key: "price".into(), context: unit("u") };
    let status = c.resolve_int(authed(&key, request)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("TYPE_MISMATCH: "), "{status:?}");

    let status = c.resolve_boolean(authed(&key, bool_request("missing", unit("u")))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().starts_with("FLAG_NOT_FOUND: "), "{status:?}");

    // A split needs a unit.
    let status =
        c.resolve_boolean(authed(&key, bool_request("rollout", context(json!({}))))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("TARGETING_KEY_MISSING: "), "{status:?}");

    // A context field no attribute can hold is named.
    let ctx = context(json!({"targetingKey": "u", "user": {"tags": ["a", 1]}}));
    let status = c.resolve_boolean(authed(&key, bool_request("dark-mode", ctx))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("INVALID_CONTEXT: context.user.tags[1]: "), "{status:?}");
    let violations = status.get_details_bad_request().expect("field violations").field_violations;
    assert_eq!(violations[0].field, "context.user.tags[1]");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_resolve_as_variant_and_payload_and_record_exposures() {
    let stack = Stack::start().await;
    running_experiment(&stack).await;
    let key = stack.tenant.sdk_key.clone();
    let mut c = client(&stack).await;

    let request = pb::ResolveStringRequest { flag_key: "button".into(), context: unit("user-7") };
    let r = c.resolve_string(authed(&key, request)).await.unwrap().into_inner();
    assert!(["control", "treatment"].contains(&r.value.as_str()), "{r:?}");
    assert_eq!((r.variant.as_str(), r.reason.as_str()), (r.value.as_str(), "SPLIT"));
    let metadata = r.metadata.unwrap();
    assert_eq!(metadata.fields["variant"], text(&r.value));
    assert_eq!(metadata.fields["enrolled"], boolean(true));
    let Some(Kind::StringValue(experiment_id)) = metadata.fields["experimentId"].kind.clone() else {
        panic!("{metadata:?}")
    };

    let request = pb::ResolveObjectRequest { flag_key: "button".into(), context: unit("user-7") };
    let o = c.resolve_object(authed(&key, request)).await.unwrap().into_inner();
    let color = if r.value == "control" { "grey" } else { "green" };
    assert_eq!(o.value.unwrap().fields["color"], text(color));
    assert_eq!(o.variant, r.value);

    // An experiment is no boolean.
    let request = bool_request("button", unit("user-7"));
    assert_eq!(c.resolve_boolean(authed(&key, request)).await.unwrap_err().code(), Code::InvalidArgument);

    // A client-side key learns the variant, not the experiment's id.
    let web = stack.client_key("production").await;
    let request = pb::ResolveStringRequest { flag_key: "button".into(), context: unit("user-8") };
    let w = c.resolve_string(authed(&web, request)).await.unwrap().into_inner();
    let fields = w.metadata.unwrap().fields;
    assert!(!fields.contains_key("experimentId") && fields.contains_key("variant"), "{fields:?}");

    // Each enrolled unit's exposure reaches the event service, as from `Evaluate`.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let exposed = |unit: &str, variant: &str| {
            stack.events.events.lock().unwrap().iter().any(|e| {
                matches!(&e.kind, Some(epb::event::Kind::Exposure(x))
                    if x.unit == unit && x.experiment_id == experiment_id && x.variant == variant)
            })
        };
        if exposed("user-7", &r.value) && exposed("user-8", &w.value) {
            break;
        }
        assert!(Instant::now() < deadline, "no exposure arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_all_answers_every_flag_and_experiment() {
    use pb::any_flag::Value as V;
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("checkout", true)).await;
    running_experiment(&stack).await;
    let mut c = client(&stack).await;
    let request = pb::ResolveAllRequest { context: unit("user-7") };
    let r = c.resolve_all(authed(&stack.tenant.sdk_key, request)).await.unwrap().into_inner();
    let mut keys: Vec<&str> = r.flags.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["button", "checkout"]);
    let checkout = &r.flags["checkout"];
    assert_eq!((checkout.value.clone(), checkout.variant.as_str()), (Some(V::BoolValue(true)), "on"));
    let button = &r.flags["button"];
    assert_eq!(button.value, Some(V::StringValue(button.variant.clone())), "{button:?}");
    assert_eq!(button.reason, "SPLIT");
    assert!(button.metadata.as_ref().unwrap().fields.contains_key("experimentId"));
    stack.stop().await;
}

/// The stream's next event other than `keep_alive`.
async fn next(events: &mut tonic::Streaming<pb::EventStreamResponse>) -> pb::EventStreamResponse {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.message())
            .await
            .expect("an event in time")
            .expect("the stream is healthy")
            .expect("the stream is open");
        if event.r#type != "keep_alive" {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_says_ready_then_names_exactly_the_changed_key() {
    let stack = Stack::start().await;
    let key = stack.tenant.sdk_key.clone();
    let (revision, _) = stack.create("production", cpb::EntityKind::Flag, flag_json("checkout", false)).await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("other", false)).await;
    running_experiment(&stack).await;
    let mut c = client(&stack).await;
    let mut events = c.event_stream(authed(&key, pb::EventStreamRequest {})).await.unwrap().into_inner();
    assert_eq!(next(&mut events).await.r#type, "provider_ready");

    let mut config = stack.config_client().await;
    config
        .update_entity(authed(
            &stack.tenant.admin_key,
            cpb::UpdateEntityRequest {
                environment: "production".into(),
                kind: cpb::EntityKind::Flag as i32,
                key: "checkout".into(),
                definition: cohort_proto::convert::structured::text_struct(&flag_json("checkout", true)),
                expected_revision: revision,
                reason: String::new(),
            },
        ))
        .await
        .unwrap();
    let change = next(&mut events).await;
    assert_eq!(change.r#type, "configuration_change");
    let data = change.data.expect("data");
    let Some(Kind::StructValue(flags)) = &data.fields["flags"].kind else { panic!("{data:?}") };
    let keys: Vec<&str> = flags.fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["checkout"]);
    let Some(Kind::StructValue(checkout)) = &flags.fields["checkout"].kind else { panic!("{flags:?}") };
    assert_eq!(checkout.fields["type"], text("update"));

    // The new value is what a resolve now answers.
    let r = c.resolve_boolean(authed(&key, bool_request("checkout", unit("u")))).await.unwrap().into_inner();
    assert!(r.value);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_working_key_are_unauthenticated() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    let mut c = client(&stack).await;

    let status = c.resolve_boolean(Request::new(bool_request("f", unit("u")))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = c.event_stream(Request::new(pb::EventStreamRequest {})).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let unknown = format!("cohort_sdk_{}", "0".repeat(64));
    let status = c.resolve_boolean(authed(&unknown, bool_request("f", unit("u")))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status =
        c.resolve_all(authed(&stack.tenant.admin_key, pb::ResolveAllRequest::default())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // A key revoked while in use: resolves and the open event stream are refused.
    let mut config = stack.config_client().await;
    let created = config
        .create_api_key(authed(
            &stack.tenant.admin_key,
            cpb::CreateApiKeyRequest {
                kind: cpb::KeyKind::Sdk as i32,
                name: "app".into(),
                environment: "production".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create sdk key")
        .into_inner();
    let (id, key) = (created.key.unwrap().id, created.secret);
    c.resolve_boolean(authed(&key, bool_request("f", unit("u")))).await.expect("served while the key works");
    let mut events = c.event_stream(authed(&key, pb::EventStreamRequest {})).await.unwrap().into_inner();
    assert_eq!(events.message().await.unwrap().unwrap().r#type, "provider_ready");
    config
        .revoke_api_key(authed(&stack.tenant.admin_key, cpb::RevokeApiKeyRequest { id }))
        .await
        .expect("revoke");
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated);
    let status = c.resolve_boolean(authed(&key, bool_request("f", unit("u")))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_key_answers_calls_that_carry_none() {
    let stack = Stack::start().await;
    stack.create("production", cpb::EntityKind::Flag, flag_json("f", true)).await;
    let staging = stack.environment("staging").await;
    stack.create("staging", cpb::EntityKind::Flag, flag_json("f", false)).await;
    let staging_binding = format!("staging={staging}");
    // A second evaluation service over the same config service, bound to the SDK key, and to
    // staging's for calls that select it.
    let config = format!("http://{}", stack.config_addr);
    let settings = Settings::try_parse_from([
        "cohort-evaluation",
        "--config-endpoint",
        &config,
        "--events-endpoint",
        "http://127.0.0.1:1",
        "--flagd-environment-key",
        &stack.tenant.sdk_key,
        "--flagd-environment-key",
        &staging_binding,
        "--shutdown-grace",
        "5s",
    ])
    .unwrap();
    let (addr, shutdown, task) = crate::in_process(settings).await;
    let mut c = ServiceClient::connect(format!("http://{addr}")).await.unwrap();

    let r = c.resolve_boolean(Request::new(bool_request("f", unit("u")))).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant.as_str()), (true, "on"));
    let mut events = c.event_stream(Request::new(pb::EventStreamRequest {})).await.unwrap().into_inner();
    assert_eq!(events.message().await.unwrap().unwrap().r#type, "provider_ready");
    // The providers' `selector` option picks another bound environment; an unbound one none.
    let selected = |selector: &str| {
        let mut r = Request::new(bool_request("f", unit("u")));
        r.metadata_mut().insert("flagd-selector", selector.parse().unwrap());
        r
    };
    let r = c.resolve_boolean(selected("staging")).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant.as_str()), (false, "off"));
    let status = c.resolve_boolean(selected("nope")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // A key sent is still the key used: a bad one is refused, not replaced.
    let status =
        c.resolve_boolean(authed("cohort_sdk_nope", bool_request("f", unit("u")))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Shutdown ends the open stream.
    shutdown.cancel();
    let ended = tokio::time::timeout(PATIENCE, events.message()).await.expect("the stream ends");
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    task.await.unwrap().unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_answers_alike_and_leaves_out_what_is_not_served() {
    let stack = Stack::start().await;
    let key = stack.tenant.sdk_key.clone();
    stack.create("production", cpb::EntityKind::Flag, flag_json("checkout", true)).await;
    let nobody = json!({
        "key": "nobody", "traffic_bp": 0,
        "variants": [{"key": "a", "weight_bp": 5000, "control": true}, {"key": "b", "weight_bp": 5000}],
    });
    let (revision, _) = stack.create("production", cpb::EntityKind::Experiment, nobody.to_string()).await;
    stack.transition("production", "nobody", cpb::ExperimentAction::Start, revision).await;
    let address = format!("http://{}", stack.grpc);
    let mut v2 = pb2::service_client::ServiceClient::connect(address).await.expect("connect flagd v2");

    let request = pb2::ResolveBooleanRequest { flag_key: "checkout".into(), context: unit("u") };
    let r = v2.resolve_boolean(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant.as_deref(), r.reason.as_str()), (Some(true), Some("on"), "STATIC"));

    // Not enrolled: no value and no variant, so the provider serves the caller's default.
    let request = pb2::ResolveStringRequest { flag_key: "nobody".into(), context: unit("u") };
    let r = v2.resolve_string(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!((r.value, r.variant, r.reason.as_str()), (None, None, "DEFAULT"));
    assert_eq!(r.metadata.unwrap().fields["enrolled"], boolean(false));
    // Version 1 cannot say so: the zero values, as flagd answers a code default.
    let request = pb::ResolveStringRequest { flag_key: "nobody".into(), context: unit("u") };
    let r = client(&stack).await.resolve_string(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!((r.value.as_str(), r.variant.as_str(), r.reason.as_str()), ("", "", "DEFAULT"));

    let request = pb2::ResolveAllRequest { context: unit("u") };
    let all = v2.resolve_all(authed(&key, request)).await.unwrap().into_inner();
    assert_eq!(all.flags["checkout"].value, Some(pb2::any_flag::Value::BoolValue(true)));
    assert_eq!((all.flags["nobody"].value.as_ref(), all.flags["nobody"].variant.as_ref()), (None, None));

    let status = v2.resolve_boolean(authed(
        &key,
        pb2::ResolveBooleanRequest { flag_key: "missing".into(), context: None },
    ));
    assert_eq!(status.await.unwrap_err().code(), Code::NotFound);
    let mut events = v2.event_stream(authed(&key, pb2::EventStreamRequest {})).await.unwrap().into_inner();
    assert_eq!(events.message().await.unwrap().unwrap().r#type, "provider_ready");
    let status = v2.event_stream(Request::new(pb2::EventStreamRequest {})).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    stack.stop().await;
}

#[test]
fn a_bound_key_must_be_an_sdk_or_client_key() {
    let check = |extra: &[&str]| {
        let mut argv = vec!["cohort-evaluation"];
        argv.extend_from_slice(extra);
        Settings::try_parse_from(argv).unwrap().validate()
    };
    let hex = "ab".repeat(32);
    let sdk = format!("cohort_sdk_{hex}");
    let client = format!("cohort_client_{hex}");
    let service = format!("cohort_service_{hex}");
    assert_eq!(check(&["--flagd-environment-key", &sdk]), Ok(()));
    let staging = format!("staging={sdk}");
    assert_eq!(check(&["--flagd-environment-key", &sdk, "--flagd-environment-key", &staging]), Ok(()));
    for (twice, which) in
        [([&sdk, &sdk], "without a selector"), ([&staging, &staging], "for selector \"staging\"")]
    {
        let err =
            check(&["--flagd-environment-key", twice[0], "--flagd-environment-key", twice[1]]).unwrap_err();
        assert_eq!(err, format!("--flagd-environment-key: two keys {which}"));
    }
    for bad in [service.as_str(), "cohort_sdk_short", "anything"] {
        let err = check(&["--flagd-environment-key", bad]).unwrap_err();
        assert!(err.starts_with("--flagd-environment-key must be an SDK or client key"), "{bad}: {err}");
    }
    // A client key's environment streams under the service's own key.
    let err = check(&["--flagd-environment-key", &client]).unwrap_err();
    assert!(err.contains("--service-key"), "{err}");
    assert_eq!(check(&["--flagd-environment-key", &client, "--service-key", &service]), Ok(()));
}
