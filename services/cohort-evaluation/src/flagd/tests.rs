//! flagd answers from decisions, statuses from errors, changed keys from configs, and the
//! event stream's life, without tonic's transport.

use std::time::Duration;

use cohort_core::{CompiledConfig, Context, Definitions, ErrorCode, compile, evaluate, evaluate_all};
use cohort_proto::convert::flagd::{Kind, Value};
use cohort_sdk::Client;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_types::StatusExt;

use super::*;

const EXPERIMENT_ID: &str = "6a1f0e3c-2b7d-4c59-9e8a-0d3c5b7a9f21";

fn flag(key: &str, values: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Array(values) = values else { panic!("values") };
    let variations: Vec<_> =
        values.iter().enumerate().map(|(i, v)| json!({"key": format!("v{i}"), "value": v})).collect();
    let flag_type = match &values[0] {
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(_) => "number",
        _ => "json",
    };
    json!({
        "key": key, "type": flag_type, "salt": key, "variations": variations,
        "off_variation": "v0", "default": {"variation": "v0"},
    })
}

fn defs() -> serde_json::Value {
    let mut plan = flag("plan", json!(["free", "pro"]));
    plan["rules"] = json!([{"id": "pros", "condition": {"op": "equals", "attribute": "user.plan", "value": "pro"},
                            "serve": {"variation": "v1"}}]);
    let mut split = flag("split", json!([true, false]));
    split["default"] =
        json!({"split": [{"variation": "v0", "weight_bp": 5000}, {"variation": "v1", "weight_bp": 5000}]});
    json!({
        "flags": [
            flag("dark-mode", json!([true, false])),
            plan,
            flag("price", json!([2.5])),
            flag("seats", json!([3])),
            flag("whole", json!([3.0])),
            flag("theme", json!([{"color": "green"}])),
            flag("list", json!([[1, 2]])),
            split,
        ],
        "experiments": [
            {"id": EXPERIMENT_ID, "key": "checkout", "status": "running",
             "variants": [{"key": "control", "weight_bp": 5000, "control": true, "payload": {"color": "grey"}},
                          {"key": "treatment", "weight_bp": 5000, "payload": {"color": "green"}}]},
            {"id": "c3d2e1f0-a9b8-4c7d-8e6f-5a4b3c2d1e0f", "key": "nobody", "status": "running", "traffic_bp": 0,
             "variants": [{"key": "a", "weight_bp": 5000, "control": true}, {"key": "b", "weight_bp": 5000}]},
        ],
    })
}

fn compiled(defs: serde_json::Value) -> CompiledConfig {
    let defs: Definitions = serde_json::from_value(defs).unwrap();
    compile(&defs).unwrap()
}

fn user() -> Context {
    Context::new("user-1").with("user.plan", "pro")
}

/// Resolves `key` for [`user`] as an SDK key would see it.
fn sdk(cfg: &CompiledConfig, key: &str, wanted: Wanted) -> Result<Resolution, FlagdError> {
    resolve(&evaluate(cfg, &user(), key), wanted, false)
}

fn text(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.into())) }
}

fn status(e: FlagdError) -> (Code, String) {
    let s = tonic::Status::from(e);
    (s.code(), s.message().to_owned())
}

#[test]
fn flags_resolve_by_their_json_type() {
    let cfg = compiled(defs());
    let r = sdk(&cfg, "dark-mode", Wanted::Boolean).unwrap();
    assert_eq!(
        (r.value, r.variant.as_deref(), r.reason),
        (Some(Answer::Boolean(true)), Some("v0"), "STATIC")
    );
    let r = sdk(&cfg, "plan", Wanted::String).unwrap();
    assert_eq!(
        (r.value, r.variant.as_deref(), r.reason),
        (Some(Answer::String("pro".into())), Some("v1"), "TARGETING_MATCH")
    );
    assert_eq!(r.metadata.fields["ruleId"], text("pros"));
    assert_eq!(sdk(&cfg, "price", Wanted::Float).unwrap().value, Some(Answer::Float(2.5)));
    let theme = sdk(&cfg, "theme", Wanted::Object).unwrap().value;
    let Some(Answer::Object(theme)) = theme else { panic!("{theme:?}") };
    assert_eq!(theme.fields["color"], text("green"));
}

#[test]
fn integers_are_numbers_without_a_fraction_and_floats_take_any_number() {
    let cfg = compiled(defs());
    assert_eq!(sdk(&cfg, "seats", Wanted::Integer).unwrap().value, Some(Answer::Integer(3)));
    assert_eq!(sdk(&cfg, "whole", Wanted::Integer).unwrap().value, Some(Answer::Integer(3)));
    assert_eq!(sdk(&cfg, "seats", Wanted::Float).unwrap().value, Some(Answer::Float(3.0)));
    let (code, message) = status(sdk(&cfg, "price", Wanted::Integer).unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::InvalidArgument, "TYPE_MISMATCH: the value of price is not an integer")
    );
    assert_eq!(typed(&json!(1e300), Wanted::Integer), None);
    assert_eq!(typed(&json!(u64::MAX), Wanted::Integer), None);
    assert_eq!(
        typed(&json!(-9_007_199_254_740_993_i64), Wanted::Integer),
        Some(Answer::Integer(-9_007_199_254_740_993))
    );
}

#[test]
fn other_types_are_a_type_mismatch() {
    let cfg = compiled(defs());
    for (key, wanted) in [
        ("dark-mode", Wanted::String),
        ("plan", Wanted::Boolean),
        ("price", Wanted::Object),
        ("list", Wanted::Object),
        ("theme", Wanted::Float),
    ] {
        let (code, message) = status(sdk(&cfg, key, wanted).unwrap_err());
        assert_eq!(code, Code::InvalidArgument, "{key}");
        assert!(message.starts_with("TYPE_MISMATCH: "), "{key}: {message}");
    }
}

#[test]
fn experiments_resolve_as_their_variant_or_its_payload() {
    let cfg = compiled(defs());
    let r = sdk(&cfg, "checkout", Wanted::String).unwrap();
    let Some(Answer::String(variant)) = &r.value else { panic!("{r:?}") };
    assert_eq!((r.variant.as_deref(), r.reason), (Some(variant.as_str()), "SPLIT"));
    assert_eq!(r.metadata.fields["experimentId"], text(EXPERIMENT_ID));
    assert_eq!(r.metadata.fields["variant"], text(variant));
    assert_eq!(r.metadata.fields["enrolled"], Value { kind: Some(Kind::BoolValue(true)) });
    let o = sdk(&cfg, "checkout", Wanted::Object).unwrap();
    let Some(Answer::Object(payload)) = &o.value else { panic!("{o:?}") };
    let color = if variant == "control" { "grey" } else { "green" };
    assert_eq!(payload.fields["color"], text(color));

    // A unit the experiment does not enroll gets no value and no variant: its default.
    let r = sdk(&cfg, "nobody", Wanted::String).unwrap();
    assert_eq!((r.value, r.variant, r.reason), (None, None, "DEFAULT"));
    assert_eq!(r.metadata.fields["enrolled"], Value { kind: Some(Kind::BoolValue(false)) });
    assert!(!r.metadata.fields.contains_key("variant"));

    let (code, message) = status(sdk(&cfg, "checkout", Wanted::Boolean).unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("TYPE_MISMATCH: checkout is an experiment"), "{message}");
}

#[test]
fn client_keys_see_no_rule_or_experiment_ids() {
    let cfg = compiled(defs());
    let plan = resolve(&evaluate(&cfg, &user(), "plan"), Wanted::String, true).unwrap();
    assert!(plan.metadata.fields.is_empty(), "{plan:?}");
    let checkout = resolve(&evaluate(&cfg, &user(), "checkout"), Wanted::String, true).unwrap();
    assert!(!checkout.metadata.fields.contains_key("experimentId"), "{checkout:?}");
    assert!(checkout.metadata.fields.contains_key("enrolled"));
    for d in evaluate_all(&cfg, &user()) {
        let Some(any) = any_flag(&d, true) else { continue };
        let metadata = any.metadata;
        assert!(!metadata.fields.contains_key("experimentId") && !metadata.fields.contains_key("ruleId"));
    }
}

#[test]
fn errors_are_statuses_as_flagd_answers_them() {
    let cfg = compiled(defs());
    let (code, message) = status(sdk(&cfg, "missing", Wanted::Boolean).unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::NotFound, "FLAG_NOT_FOUND: no flag or experiment named missing")
    );
    let anonymous = evaluate(&cfg, &Context::anonymous(), "split");
    let (code, message) = status(resolve(&anonymous, Wanted::Boolean, false).unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("TARGETING_KEY_MISSING: "), "{message}");
    for (error, code) in [
        (ErrorCode::FlagNotFound, Code::NotFound),
        (ErrorCode::TypeMismatch, Code::InvalidArgument),
        (ErrorCode::InvalidContext, Code::InvalidArgument),
        (ErrorCode::TargetingKeyMissing, Code::InvalidArgument),
        (ErrorCode::ParseError, Code::DataLoss),
        (ErrorCode::ProviderNotReady, Code::Unavailable),
        (ErrorCode::General, Code::Unknown),
    ] {
        let s = tonic::Status::from(FlagdError::resolution(error, "why"));
        assert_eq!((s.code(), s.message()), (code, format!("{}: why", error.as_str()).as_str()));
    }
    // A context that does not convert names its field, in the message and as a violation.
    let bad = ProtoError::new("tags[1]", "a list attribute holds strings only, not a number").at("context");
    let s = tonic::Status::from(FlagdError::Context(bad));
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(
        s.message(),
        "INVALID_CONTEXT: context.tags[1]: a list attribute holds strings only, not a number"
    );
    let violations = s.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "context.tags[1]");
}

#[test]
fn resolve_all_types_each_value_and_leaves_out_what_flagd_cannot_carry() {
    use AnyValue as V;
    let cfg = compiled(defs());
    let all: HashMap<String, AnyFlag> = evaluate_all(&cfg, &Context::anonymous())
        .iter()
        .filter_map(|d| Some((d.key.to_owned(), any_flag(d, false)?)))
        .collect();
    assert_eq!(all["dark-mode"].value, Some(V::Bool(true)));
    assert_eq!(all["plan"].value, Some(V::String("free".into())));
    assert_eq!(all["seats"].value, Some(V::Double(3.0)));
    assert!(matches!(all["theme"].value, Some(V::Object(_))));
    // An array has no AnyFlag type.
    assert!(!all.contains_key("list"));
    // Failed decisions: no value, reason ERROR, the code in the metadata.
    let split = &all["split"];
    assert_eq!((split.value.as_ref(), split.reason), (None, "ERROR"));
    assert_eq!(split.metadata.fields["errorCode"], text("TARGETING_KEY_MISSING"));
    assert_eq!(all["checkout"].reason, "ERROR");
}

/// `defs()` with `change` applied.
fn changed(change: impl FnOnce(&mut serde_json::Value)) -> CompiledConfig {
    let mut d = defs();
    change(&mut d);
    compiled(d)
}

#[test]
fn changes_name_exactly_the_keys_whose_content_changed() {
    let before = Fingerprints::compute(&compiled(defs()), 1);
    assert_eq!(before.by_key.len(), 10);
    assert!(before.changes(&Fingerprints::compute(&compiled(defs()), 2)).is_empty(), "recompiled, unchanged");

    let after = Fingerprints::compute(
        &changed(|d| {
            let flags = d["flags"].as_array_mut().unwrap();
            flags[0]["enabled"] = json!(false); // dark-mode
            flags.retain(|f| f["key"] != "price");
            flags.push(flag("fresh", json!([true])));
            d["experiments"][0]["status"] = json!("paused"); // checkout
        }),
        2,
    );
    let changes: Vec<(String, &str)> = before.changes(&after).into_iter().collect();
    assert_eq!(
        changes,
        [
            ("checkout".into(), "update"),
            ("dark-mode".into(), "update"),
            ("fresh".into(), "write"),
            ("price".into(), "delete")
        ]
    );
}

#[test]
fn a_segment_change_names_the_flags_that_use_it() {
    let with_segment = |email_suffix: &str| {
        changed(|d| {
            d["segments"] = json!([{"key": "staff", "condition": {"op": "ends_with", "attribute": "email", "value": email_suffix}}]);
            d["flags"][0]["rules"] = json!([{"condition": {"op": "in_segment", "segment": "staff"}, "serve": {"variation": "v1"}}]);
        })
    };
    let (a, b) = (with_segment("@a.dev"), with_segment("@b.dev"));
    assert!(segments_text(&a).is_some_and(|s| s.contains("@a.dev")), "{:?}", segments_text(&a));
    let changes = Fingerprints::compute(&a, 1).changes(&Fingerprints::compute(&b, 2));
    assert_eq!(changes.into_iter().collect::<Vec<_>>(), [("dark-mode".to_owned(), "update")]);
}

#[test]
fn configuration_changes_are_in_flagds_shape() {
    let e = configuration_change(&BTreeMap::from([("a".to_owned(), "update")]));
    assert_eq!(e.kind, "configuration_change");
    let data = e.data.unwrap();
    let Some(Kind::StructValue(flags)) = &data.fields["flags"].kind else { panic!("{data:?}") };
    let Some(Kind::StructValue(a)) = &flags.fields["a"].kind else { panic!("{flags:?}") };
    assert_eq!(a.fields["type"], text("update"));
}

type Events = mpsc::Receiver<Result<Event, tonic::Status>>;

async fn next(rx: &mut Events) -> Option<Result<Event, tonic::Status>> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("an event in time")
}

/// A source that always answers the same client.
struct Fixed(Client);

impl Source for Fixed {
    async fn client(&mut self) -> Result<Client, ServiceError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn a_stream_says_ready_then_keeps_alive_until_stopped() {
    let defs: Definitions = serde_json::from_value(defs()).unwrap();
    let client = Client::from_definitions(&defs).unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(stream_events(
        Fixed(client.clone()),
        client,
        tx,
        stop.clone(),
        Duration::from_millis(50),
        true,
    ));
    assert_eq!(next(&mut rx).await.unwrap().unwrap().kind, "provider_ready");
    assert_eq!(next(&mut rx).await.unwrap().unwrap().kind, "keep_alive");
    assert_eq!(next(&mut rx).await.unwrap().unwrap().kind, "keep_alive");
    stop.cancel();
    // The stream ends cleanly: the producer is gone and nothing else arrives.
    task.await.unwrap();
    assert!(next(&mut rx).await.is_none());
}

#[tokio::test]
async fn a_stream_whose_client_went_away_ends() {
    let defs: Definitions = serde_json::from_value(defs()).unwrap();
    let client = Client::from_definitions(&defs).unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    let task = tokio::spawn(stream_events(
        Fixed(client.clone()),
        client,
        tx,
        CancellationToken::new(),
        Duration::from_secs(3600),
        true,
    ));
    assert_eq!(rx.recv().await.unwrap().unwrap().kind, "provider_ready");
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the producer ends").unwrap();
}
