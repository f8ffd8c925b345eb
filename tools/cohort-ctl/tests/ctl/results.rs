//! `results` against a running analysis service: exposures and conversions sent to the
//! events service, analysed by the analysis service's cycle, read back as a scorecard, JSON,
//! YAML, CSV and the history of looks.

use std::time::{Duration, Instant, SystemTime};

use cohort_dev::stack::Service;
use cohort_dev::testing::{TestCluster, authed};
use cohort_proto::events::v1 as epb;

use crate::{Ran, run_at, write, yaml_value};

const DEFS: &str = "\
kind: metric
key: purchase
event: purchase
aggregation: conversion
---
kind: experiment
key: checkout-button
status: running
primary_metrics: [purchase]
variants:
  - {key: control, weight_bp: 5000, control: true}
  - {key: green, weight_bp: 5000}
";

/// Units per arm, and how many of them convert.
const UNITS: u64 = 150;
const CONVERTED: [(&str, u64); 2] = [("control", 15), ("green", 30)];

/// Both endpoints and the admin key.
struct At<'a> {
    config: &'a str,
    analysis: &'a str,
    key: &'a str,
}

impl At<'_> {
    async fn run(&self, args: &[&str]) -> Ran {
        let argv = [&["--analysis-endpoint", self.analysis][..], args].concat();
        run_at(self.config, Some(self.key), &argv, "", false).await
    }
}

#[tokio::test]
async fn results_print_the_scorecard_in_every_format() {
    let cluster = TestCluster::with(&[Service::Config, Service::Events, Service::Analysis]).await;
    let tenant = cluster.seed_organization("acme").await;
    let config = cluster.config_url();
    let analysis = cluster.addrs(Service::Analysis).grpc_url();
    let at = At { config: &config, analysis: &analysis, key: &tenant.admin_key };
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "defs.yaml", DEFS);
    at.run(&["apply", "-f", &file]).await.ok();
    let experiment = at.run(&["get", "experiment", "checkout-button", "-o", "json"]).await.json();
    let (id, config_version) = (experiment["id"].as_str().unwrap().to_owned(), 1);

    let now = cohort_core::time::unix_ms(SystemTime::now());
    let mut events = Vec::new();
    for (variant, converted) in CONVERTED {
        for i in 0..UNITS {
            let unit = format!("{variant}-{i}");
            events.push(epb::Event {
                event_id: uuid::Uuid::new_v4().to_string(),
                timestamp_ms: now - 60_000,
                kind: Some(epb::event::Kind::Exposure(epb::Exposure {
                    unit: unit.clone(),
                    experiment_id: id.clone(),
                    variant: variant.into(),
                    config_version,
                    attributes: Default::default(),
                })),
            });
            if i < converted {
                events.push(epb::Event {
                    event_id: uuid::Uuid::new_v4().to_string(),
                    timestamp_ms: now - 30_000,
                    kind: Some(epb::event::Kind::Metric(epb::Metric {
                        unit,
                        name: "purchase".into(),
                        value: None,
                        properties: Default::default(),
                    })),
                });
            }
        }
    }
    let mut sender = cluster.events().await;
    let sent = sender
        .send_batch(authed(&tenant.sdk_key, epb::SendBatchRequest { events: events.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((sent.accepted as usize, sent.rejected.len()), (events.len(), 0), "{:?}", sent.rejected);

    // Until the events are drained and analysed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let ran: Ran = at.run(&["results", "checkout-button", "-o", "json"]).await;
        if let Ok(cohort_ctl::Outcome::Done) = ran.result {
            let r = ran.json();
            if r["units"]["control"] == UNITS
                && r["units"]["green"] == UNITS
                && r["metrics"][0]["variants"][1]["mean"].is_number()
            {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "no complete result: {:?}\n{}", ran.result, ran.out);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(result["experiment_key"], "checkout-button");
    assert_eq!(result["metrics"][0]["metric"], "purchase");

    let table = at.run(&["results", "checkout-button"]).await;
    let text = table.ok();
    assert!(text.starts_with("experiment checkout-button, sequential   look "), "{text}");
    assert!(text.contains(&format!("units: control {UNITS}, green {UNITS}")), "{text}");
    assert!(text.contains("  purchase (primary, conversion)\n"), "{text}");
    assert!(text.contains("  control  150    10.00% (15)"), "{text}");
    let green = text.lines().find(|l| l.starts_with("  green ")).expect("green's row");
    assert!(green.contains("20.00% (30)") && green.contains("+100.0%"), "{text}");

    let yaml = at.run(&["results", "checkout-button", "-o", "yaml"]).await;
    let from_yaml = yaml_value(yaml.ok());
    assert_eq!(from_yaml["experiment_key"], "checkout-button");
    assert_eq!(from_yaml["units"], result["units"]);

    let csv = at.run(&["results", "checkout-button", "-o", "csv"]).await;
    let lines: Vec<&str> = csv.ok().lines().collect();
    assert_eq!(lines.len(), 3, "a header and a row per arm of the one metric:\n{}", csv.out);
    assert!(lines[0].starts_with("experiment,look,computed_at,metric,"), "{}", csv.out);
    assert!(lines[1].contains(",purchase,primary,conversion,control,150,0.1,"), "{}", csv.out);
    assert!(lines[2].contains(",purchase,primary,conversion,green,150,0.2,"), "{}", csv.out);
    let lift: f64 = lines[2].split(',').nth(9).unwrap().parse().unwrap();
    assert!((lift - 1.0).abs() < 1e-9, "green converts twice as often: {}", csv.out);

    // The history holds one result per formal look taken so far.
    let looks = at.run(&["results", "checkout-button", "--looks", "-o", "json"]).await.json();
    let latest = at.run(&["results", "checkout-button", "-o", "json"]).await.json();
    assert_eq!(looks.as_array().unwrap().len() as u64, latest["look"].as_u64().unwrap(), "{looks}");
    let history = at.run(&["results", "checkout-button", "--looks"]).await;
    if looks.as_array().unwrap().is_empty() {
        assert_eq!(history.err, "checkout-button: no formal look yet\n");
    } else {
        assert!(history.ok().starts_with("LOOK  COMPUTED"), "{}", history.out);
    }

    let missing = at.run(&["results", "nope"]).await;
    assert!(missing.error().starts_with("get results of nope: "), "{}", missing.error());
    let no_key =
        run_at(&config, None, &["--analysis-endpoint", &analysis, "results", "checkout-button"], "", false)
            .await;
    assert!(no_key.error().contains("no API key"), "{}", no_key.error());
    cluster.stop().await;
}
