//! The demo: an organization, an SDK key, two metrics (a purchase conversion and a page-load
//! guardrail), a running checkout-button experiment and a flag, written through the config API.

use anyhow::Context;
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use cohort_dev::stack::{Service, Stack};

pub(crate) const EXPERIMENT: &str = "checkout-button";
pub(crate) const FLAG: &str = "new-navigation";

#[derive(Debug, Clone)]
pub(crate) struct Demo {
    pub(crate) admin_key: String,
    pub(crate) sdk_key: String,
}

fn authed<T>(key: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    if let Ok(v) = format!("Bearer {key}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

pub(crate) async fn apply(stack: &Stack) -> anyhow::Result<Demo> {
    let mut c: ConfigServiceClient<Channel> =
        ConfigServiceClient::connect(stack.addrs(Service::Config).expect("config runs").grpc_url()).await?;
    let boot = c
        .bootstrap(pb::BootstrapRequest {
            organization: "demo".into(),
            environment: "production".into(),
            token: String::new(),
        })
        .await
        .context("bootstrap")?
        .into_inner();
    let admin_key = boot.admin_key.context("bootstrap returned no key")?.secret;
    let sdk_key = c
        .create_api_key(authed(
            &admin_key,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Sdk as i32,
                name: "demo traffic".into(),
                environment: "production".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .secret;
    let definitions = [
        (
            pb::EntityKind::Metric,
            json!({"key": "purchase", "event": "purchase", "aggregation": "conversion",
            "description": "Bought something after seeing the checkout"}),
        ),
        (
            pb::EntityKind::Metric,
            json!({"key": "page-load", "event": "page_load_ms", "aggregation": "mean",
            "direction": "decrease", "guardrail_threshold": 0.10, "description": "Checkout page load time"}),
        ),
        (
            pb::EntityKind::Experiment,
            json!({
                "key": EXPERIMENT, "description": "Does a green checkout button sell more?",
                "variants": [
                    {"key": "grey", "weight_bp": 5000, "control": true, "payload": {"color": "#9e9e9e"}},
                    {"key": "green", "weight_bp": 5000, "payload": {"color": "#2e7d32"}},
                ],
                "primary_metrics": ["purchase"], "guardrail_metrics": ["page-load"],
                "breakdown_attributes": ["country", "platform"],
                "planned_units_per_variant": 6000,
            }),
        ),
        (
            pb::EntityKind::Flag,
            json!({
                "key": FLAG, "type": "boolean", "salt": "new-navigation-1",
                "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                "off_variation": "off",
                "rules": [{"condition": {"op": "in", "attribute": "country", "values": ["NZ", "AU"]}, "serve": {"variation": "on"}}],
                "default": {"split": [{"variation": "on", "weight_bp": 2000}, {"variation": "off", "weight_bp": 8000}]},
            }),
        ),
    ];
    for (kind, definition) in definitions {
        c.create_entity(authed(
            &admin_key,
            pb::CreateEntityRequest {
                environment: "production".into(),
                kind: kind as i32,
                definition_json: definition.to_string(),
            },
        ))
        .await
        .with_context(|| format!("creating {}", definition["key"]))?;
    }
    c.transition_experiment(authed(
        &admin_key,
        pb::TransitionExperimentRequest {
            environment: "production".into(),
            key: EXPERIMENT.into(),
            action: pb::ExperimentAction::Start as i32,
            expected_revision: 1,
            reason: "demo".into(),
        },
    ))
    .await
    .context("starting the experiment")?;
    Ok(Demo { admin_key, sdk_key })
}
