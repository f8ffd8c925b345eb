//! The demo: two metrics (a purchase conversion and a page-load guardrail), a running
//! checkout-button experiment and a flag, written through the config API with an admin key
//! (see [`crate::dev`] for the organization and the keys). Applying it again adds only what is
//! missing.

use anyhow::Context;
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::stack::{Service, Stack};

pub const EXPERIMENT: &str = "checkout-button";
pub const FLAG: &str = "new-navigation";

#[derive(Debug, Clone)]
pub struct Demo {
    pub admin_key: String,
    pub sdk_key: String,
}

pub(crate) fn authed<T>(key: &str, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    if let Ok(v) = format!("Bearer {key}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// Creates the demo's metrics, experiment and flag in `environment` unless they exist, and
/// starts the experiment when this call created it. Returns how many entities it created.
pub async fn apply(stack: &Stack, admin_key: &str, environment: &str) -> anyhow::Result<usize> {
    let mut c: ConfigServiceClient<Channel> = ConfigServiceClient::connect(
        stack.addrs(Service::Config).context("config is not running")?.grpc_url(),
    )
    .await?;
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
    let mut created = 0;
    let mut experiment_created = false;
    for (kind, definition) in definitions {
        let result = c
            .create_entity(authed(
                admin_key,
                pb::CreateEntityRequest {
                    environment: environment.into(),
                    kind: kind as i32,
                    definition: cohort_proto::convert::structured::json_struct(&definition),
                    reason: "make dev's demo".into(),
                },
            ))
            .await;
        match result {
            Ok(_) => {
                created += 1;
                experiment_created |= kind == pb::EntityKind::Experiment;
            }
            // There from an earlier run (or changed since): kept as it is.
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => return Err(s).with_context(|| format!("creating {}", definition["key"])),
        }
    }
    if !experiment_created {
        return Ok(created);
    }
    c.transition_experiment(authed(
        admin_key,
        pb::TransitionExperimentRequest {
            environment: environment.into(),
            key: EXPERIMENT.into(),
            action: pb::ExperimentAction::Start as i32,
            expected_revision: 1,
            reason: "demo".into(),
        },
    ))
    .await
    .context("starting the experiment")?;
    Ok(created)
}
