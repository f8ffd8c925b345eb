//! The console in a real browser (Debian's chromium, driven by `console/e2e/console.mjs` with
//! playwright-core) against a real stack on a fresh database: sign-in (a wrong key refused),
//! an experiment created and started through the page, a stale edit refused; then, after this
//! test drives traffic through the SDK and the analysis has a look, the results page's
//! scorecard and charts equal the analysis API's numbers, a pause with its reason reaches the
//! audit log, a flag change shows in the propagation view with the SDK's acknowledgement, and
//! a large result renders within a second. The script writes screenshots of the main pages to
//! `target/console-screenshots` for a reviewer.
//!
//! Needs what `scripts/console-setup.sh` (run by `make test`) prepares: `console/dist` and
//! `console/node_modules`; and `/usr/bin/chromium` (installed by `.ci/run`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cohort_dev::stack::Service;
use cohort_dev::testing::{TestCluster, authed};
use cohort_proto::analysis::v1 as apb;
use cohort_proto::config::v1 as cpb;
use cohort_sdk::{Client, Context, MetricEvent};
use serde_json::{Value, json};

const EXPERIMENT: &str = "console-checkout";
const UNITS: usize = 2_000;
/// The longest a step may take: the script's own steps, or the analysis catching up.
const PATIENCE: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn create(
    config: &mut cpb::config_service_client::ConfigServiceClient<tonic::transport::Channel>,
    admin: &str,
    kind: cpb::EntityKind,
    definition: Value,
) {
    let request = cpb::CreateEntityRequest {
        environment: "production".into(),
        kind: kind as i32,
        definition: cohort_proto::convert::structured::json_struct(&definition),
        reason: String::new(),
    };
    config
        .create_entity(authed(admin, request))
        .await
        .unwrap_or_else(|e| panic!("create {definition}: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_shows_what_the_services_know() {
    let repo = repo();
    for needed in
        ["console/dist/index.html", "console/node_modules/playwright-core", "console/e2e/console.mjs"]
    {
        assert!(repo.join(needed).exists(), "{needed} is missing: run `bash scripts/console-setup.sh` first");
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing: install Debian's chromium (.ci/run does)");

    let cluster =
        TestCluster::with(&[Service::Config, Service::Events, Service::Analysis, Service::Console]).await;
    let t = cluster.seed_organization("acme").await;
    let mut config = cluster.config().await;
    create(
        &mut config,
        &t.admin_key,
        cpb::EntityKind::Metric,
        json!({"key": "purchase", "event": "purchase", "aggregation": "conversion"}),
    )
    .await;
    let flag = json!({
        "key": "kill-switch-demo", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off", "default": {"variation": "on"},
    });
    create(&mut config, &t.admin_key, cpb::EntityKind::Flag, flag).await;
    let cache = tempfile::tempdir().unwrap();
    // Connected throughout: the propagation view counts its acknowledgements.
    let sdk = Client::builder(&t.sdk_key)
        .config_endpoint(cluster.config_url())
        .event_endpoint(cluster.events_url())
        .cache_file(cache.path().join("sdk.json"))
        .init_timeout(Duration::from_secs(10))
        .flush_timeout(PATIENCE)
        .build()
        .await
        .expect("the SDK starts");

    let screenshots = repo.join("target/console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut child = Command::new("node")
        .arg(repo.join("console/e2e/console.mjs"))
        .current_dir(&repo)
        .env("CONSOLE_URL", cluster.addrs(Service::Console).http_url())
        .env("ADMIN_KEY", &t.admin_key)
        .env("ENVIRONMENT", "production")
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs the browser script");
    let (mut stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let mut steps = Vec::new();
    loop {
        let line = match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                let _ = child.kill();
                panic!("the browser script said nothing for {PATIENCE:?}; its steps so far: {steps:?}");
            }
        };
        let Ok(step) = serde_json::from_str::<Value>(&line) else {
            // Anything else it prints (a browser's warning) is for a person reading the log.
            eprintln!("console.mjs: {line}");
            continue;
        };
        steps.push(step["step"].as_str().unwrap_or_default().to_owned());
        match step["step"].as_str() {
            Some("started") => {
                drive_traffic(&sdk).await;
                wait_for_a_look(&cluster, &t.admin_key).await;
                stdin.write_all(b"traffic\n").unwrap();
                stdin.flush().unwrap();
            }
            Some("perf") => {
                let ms = step["results_render_ms"].as_f64().expect("a render time");
                eprintln!("results page with 5 metrics, 20 segments, 50 looks rendered in {ms:.0} ms");
            }
            Some("failed") => panic!("the browser test failed: {}", step["error"]),
            Some("done") => break,
            _ => {}
        }
    }
    let status = child.wait().expect("the script ends");
    assert!(status.success(), "the browser script exited with {status}; steps {steps:?}");
    assert_eq!(steps.last().map(String::as_str), Some("done"), "{steps:?}");
    sdk.close().await.expect("the SDK closes");
    cluster.stop().await;
}

/// `UNITS` units see the experiment and a share of each converts (more in treatment).
async fn drive_traffic(sdk: &Client) {
    let mut status = sdk.subscribe();
    tokio::time::timeout(
        PATIENCE,
        status.wait_for(|_| {
            sdk.experiment(EXPERIMENT, &Context::new("probe-unit-0")).reason != cohort_sdk::Reason::Error
        }),
    )
    .await
    .expect("the SDK has the started experiment")
    .expect("the SDK is alive");
    for i in 0..UNITS {
        let unit = format!("console-user-{i}");
        let a = sdk.experiment(EXPERIMENT, &Context::new(unit.as_str()));
        assert!(a.enrolled, "{unit} is enrolled: {a:?}");
        let converts = match a.variant.as_deref() {
            Some("treatment") => i % 10 < 3,
            _ => i % 10 < 2,
        };
        if converts {
            sdk.track(MetricEvent::new(&unit, "purchase").with_value(1.0)).expect("queued");
        }
    }
    sdk.flush().await.expect("every exposure and purchase is delivered");
}

/// Until the analysis has counted every unit and recorded at least one formal look.
async fn wait_for_a_look(cluster: &TestCluster, admin: &str) {
    let mut analysis = cluster.analysis().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let request =
            apb::GetResultsRequest { environment: "production".into(), experiment: EXPERIMENT.into() };
        if let Ok(r) = analysis.get_results(authed(admin, request)).await {
            last = cohort_proto::convert::structured::to_json(
                r.into_inner().result.and_then(|r| r.result).as_ref(),
            )
            .unwrap();
            let units: u64 =
                last["units"].as_object().map_or(0, |u| u.values().filter_map(Value::as_u64).sum());
            if units >= UNITS as u64 && last["look"].as_u64().unwrap_or(0) >= 1 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the analysis did not count {UNITS} units at a look within {PATIENCE:?}: {last}");
}
