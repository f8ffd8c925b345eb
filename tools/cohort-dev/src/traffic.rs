//! Simulated users through the SDK: each is assigned by the experiment (an exposure is
//! recorded), buys with a probability that the green button raises by the planted effect, and
//! reports a page-load time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use cohort_sdk::{Client, MetricEvent};
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken as Stop;

use cohort_dev::demo::{Demo, EXPERIMENT, FLAG};
use cohort_dev::stack::{Service, Stack};

/// The control's purchase rate.
const BASE_RATE: f64 = 0.10;

#[derive(Debug)]
pub(crate) struct Traffic {
    pub(crate) client: Arc<Client>,
    pub(crate) users: Arc<AtomicU64>,
    stop: Stop,
    task: JoinHandle<()>,
}

impl Traffic {
    pub(crate) async fn start(
        stack: &Stack,
        demo: &Demo,
        users_per_second: u32,
        effect: f64,
    ) -> anyhow::Result<Traffic> {
        let client = Client::builder(demo.sdk_key.clone())
            .config_endpoint(stack.addrs(Service::Config).expect("config runs").grpc_url())
            .event_endpoint(stack.addrs(Service::Events).expect("events run").grpc_url())
            .init_timeout(Duration::from_secs(10))
            .build()
            .await
            .context("starting the SDK")?;
        let client = Arc::new(client);
        let users = Arc::new(AtomicU64::new(0));
        let stop = Stop::new();
        let task = tokio::spawn(run(client.clone(), users.clone(), stop.clone(), users_per_second, effect));
        Ok(Traffic { client, users, stop, task })
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        let _ = self.client.close().await;
    }
}

async fn run(client: Arc<Client>, users: Arc<AtomicU64>, stop: Stop, per_second: u32, effect: f64) {
    let ticks_per_second = 10;
    let per_tick = (per_second / ticks_per_second).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / u64::from(ticks_per_second)));
    let countries = ["NZ", "AU", "US", "GB", "DE"];
    let platforms = ["ios", "android", "web"];
    while !stop.is_cancelled() {
        tick.tick().await;
        let mut rng = rand::rng();
        for _ in 0..per_tick {
            let n = users.fetch_add(1, Ordering::Relaxed);
            let unit = format!("user-{n}");
            let ctx = cohort_core::Context::new(unit.as_str())
                .with("country", countries[rng.random_range(0..countries.len())])
                .with("platform", platforms[rng.random_range(0..platforms.len())]);
            let _navigation = client.bool_value(FLAG, &ctx, false);
            let assignment = client.experiment(EXPERIMENT, &ctx);
            if !assignment.enrolled {
                continue;
            }
            let green = assignment.variant.as_deref() == Some("green");
            let rate = if green { BASE_RATE * (1.0 + effect) } else { BASE_RATE };
            // Green pages load a little slower: within the 10 % guardrail.
            let load_ms = rng.random_range(900.0..1500.0) * if green { 1.03 } else { 1.0 };
            let _ = client.track(MetricEvent::new(unit.as_str(), "page_load_ms").with_value(load_ms));
            if rng.random::<f64>() < rate {
                let _ = client.track(
                    MetricEvent::new(unit.as_str(), "purchase").with_value(rng.random_range(20.0..120.0)),
                );
            }
        }
    }
}
