//! The analysis cycle at scale: runs the config service in-process (cohort-dev's stack, as
//! the tests do), seeds a fresh database with running experiments (written through the config
//! service's gRPC API) and millions of exposures and metric events (binary COPY into the event
//! service's read model), then times full analysis cycles. With `--latency`, also runs the
//! event and analysis services in the stack and times an event's acknowledgment to its effect
//! in stored results.
//!
//! A quick run: `cargo bench -p cohort-analysis --bench cycle -- --experiments 20 --events 100000 --cycles 1 --delta 1000`
//!
//! `cargo bench -p cohort-analysis --bench cycle -- --experiments 1000 --metrics 3 --events 10000000 --cycles 3`
//!
//! `--keep NAME` seeds database NAME once and keeps it, so later runs skip the seeding.

// A benchmark binary: its report goes to standard output.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use cohort_analysis::analyze::Settings;
use cohort_analysis::config::ConfigClient;
use cohort_analysis::cycle::{Analyzer, CycleReport};
use cohort_analysis::metrics::Metrics;
use cohort_analysis::store::{ExperimentRef, Store};
use cohort_core::time::{civil_from_days, day_of, unix_ms};
use cohort_db::Pool;
use cohort_db::testing::{Tenant, TestDb};
use cohort_dev::stack::{Options, Service, Stack};
use cohort_dev::testing::authed;
use cohort_proto::config::v1 as cpb;
use cohort_proto::config::v1::batch_operation::Operation;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use cohort_proto::events::v1 as pb;
use futures::pin_mut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Times analysis cycles over a seeded database")]
struct Args {
    /// Running experiments, spread evenly over the environments.
    #[arg(long, default_value_t = 1000)]
    experiments: usize,
    /// Metrics per experiment (1 to 3: a conversion, a sum and a mean).
    #[arg(long, default_value_t = 3)]
    metrics: usize,
    /// Stored events, exposures and metric events together.
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    /// Environments (tenants) the experiments are spread over.
    #[arg(long, default_value_t = 4)]
    environments: usize,
    /// Cycles timed.
    #[arg(long, default_value_t = 3)]
    cycles: usize,
    /// New events stored between timed cycles (what arrives in one interval).
    #[arg(long, default_value_t = 50_000)]
    delta: usize,
    /// Also time an event's acknowledgment to its effect in stored results.
    #[arg(long)]
    latency: bool,
    /// Trials of the latency measurement.
    #[arg(long, default_value_t = 5)]
    latency_trials: usize,
    /// Seed the database of this name once and keep it (later runs reuse it).
    #[arg(long)]
    keep: Option<String>,
    /// With `--keep`: keep its aggregation state too (no cold cycle).
    #[arg(long)]
    keep_state: bool,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Exposures are this share of all events; the rest are metric events.
const EXPOSURE_SHARE: f64 = 0.6;
/// How many experiments of its environment a unit is exposed to, on average.
const EXPERIMENTS_PER_UNIT: usize = 3;
/// Experiments created and started per config write (one batch, one environment version).
const EXPERIMENTS_PER_BATCH: usize = 200;
/// Events are spread over this much time before now.
const SPAN: Duration = Duration::from_secs(2 * 86_400);
const COUNTRIES: [&str; 8] = ["US", "DE", "FR", "GB", "NL", "BR", "IN", "JP"];
const PLATFORMS: [&str; 3] = ["ios", "android", "web"];

/// The database under test: a throwaway one, or a kept one.
#[derive(Debug)]
struct Db {
    url: String,
    pool: Pool,
    _owned: Option<TestDb>,
}

/// One seeded environment.
#[derive(Debug, Clone)]
struct Env {
    tenant: Tenant,
    experiments: Vec<(Uuid, String)>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = open(&args).await;
    // The stack migrates the database; the event and analysis services join it for --latency
    // (analysis on its normal 10 s interval).
    let spool = tempfile::tempdir().expect("spool directory");
    let options =
        Options { analysis_interval: Duration::from_secs(10), ..Options::test(spool.path().to_path_buf()) };
    let mut stack = Stack::new(&db.url, &options).await.expect("preparing the stack");
    stack.add(Service::Config, &[]).await.expect("starting the config service");
    let config = Config::new(&stack).await;
    let envs = if seeded(&db).await && args.keep_state {
        println!("reusing the seeded database and its analysis state");
        load_envs(&db, &config).await
    } else if seeded(&db).await {
        println!("reusing the seeded database; its analysis state starts over");
        let c = db.pool.get().await.expect("connection");
        c.batch_execute(
            "TRUNCATE analysis_state, analysis_units, analysis_unit_events, analysis_sums, analysis_looks,
                      analysis_latest, analysis_plans;
             UPDATE analysis_watermark SET through = NULL;",
        )
        .await
        .expect("reset analysis state");
        load_envs(&db, &config).await
    } else {
        seed(&args, &db, &config).await
    };
    let (exposures, metric_events) = counts(&db.pool).await;
    println!(
        "{} running experiments in {} environments; {exposures} exposures + {metric_events} metric events",
        envs.iter().map(|e| e.experiments.len()).sum::<usize>(),
        envs.len()
    );
    cycles(&args, &db, &config, &envs, exposures + metric_events).await;
    if args.latency {
        latency(&args, &db, &mut stack, &envs).await;
    }
    stack.stop().await.expect("stopping the services");
}

/// The config service of the stack, as the benchmark uses it: a client of its API, and where
/// analysis finds it with its service key.
#[derive(Debug, Clone)]
struct Config {
    url: String,
    service_key: String,
    client: ConfigServiceClient<tonic::transport::Channel>,
}

impl Config {
    async fn new(stack: &Stack) -> Config {
        let url = stack.addrs(Service::Config).expect("the config service runs").grpc_url();
        let service_key = stack.service_key(Service::Analysis).expect("analysis's service key").to_owned();
        let client =
            ConfigServiceClient::connect(url.clone()).await.expect("connecting to the config service");
        Config { url, service_key, client }
    }

    /// `operations` as one batch in `tenant`'s environment, with its admin key: each
    /// operation's entity afterwards.
    async fn apply(&self, tenant: &Tenant, operations: Vec<Operation>) -> Vec<cpb::Entity> {
        let request = cpb::ApplyBatchRequest {
            environment: tenant.environment_id.to_string(),
            operations: operations.into_iter().map(|o| cpb::BatchOperation { operation: Some(o) }).collect(),
        };
        let response = self
            .client
            .clone()
            .apply_batch(authed(&tenant.admin_key, request))
            .await
            .unwrap_or_else(|e| panic!("config write: {e}"))
            .into_inner();
        response.results.into_iter().map(|r| r.entity.expect("the entity written")).collect()
    }

    /// The running experiments of `tenant`'s environment, ordered by key.
    async fn running(&self, tenant: &Tenant) -> Vec<(Uuid, String)> {
        let mut running = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = cpb::ListEntitiesRequest {
                environment: tenant.environment_id.to_string(),
                kind: cpb::EntityKind::Experiment as i32,
                page_size: 1000,
                page_token,
            };
            let page = self
                .client
                .clone()
                .list_entities(authed(&tenant.admin_key, request))
                .await
                .expect("list experiments")
                .into_inner();
            for e in page.entities {
                let definition: Value =
                    cohort_proto::convert::structured::to_json(e.definition.as_ref()).expect("a definition");
                if definition["status"] == "running" {
                    let id = Uuid::parse_str(definition["id"].as_str().expect("id")).expect("uuid");
                    running.push((id, e.key));
                }
            }
            if page.next_page_token.is_empty() {
                return running;
            }
            page_token = page.next_page_token;
        }
    }
}

fn create(kind: cpb::EntityKind, definition: Value) -> Operation {
    Operation::Create(cpb::CreateOperation {
        kind: kind as i32,
        definition: cohort_proto::convert::structured::json_struct(&definition),
        reason: String::new(),
    })
}

fn start(key: &str) -> Operation {
    Operation::Transition(cpb::TransitionOperation {
        key: key.to_owned(),
        action: cpb::ExperimentAction::Start as i32,
        expected_revision: 1,
        reason: String::new(),
    })
}

async fn open(args: &Args) -> Db {
    let Some(name) = &args.keep else {
        let t = TestDb::new().await;
        return Db { url: t.url.clone(), pool: t.pool.clone(), _owned: Some(t) };
    };
    let server = cohort_db::testing::server_url();
    let (client, conn) = tokio_postgres::connect(&server, NoTls).await.expect("connect to the server");
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[name])
        .await
        .expect("look up the kept database")
        .is_some();
    if !exists {
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the kept database");
    }
    let url = cohort_db::testing::with_search_path(
        &cohort_db::testing::with_database(&server, name),
        cohort_db::testing::SEARCH_PATH,
    );
    let pool = cohort_db::connect(&url, &cohort_db::PoolOptions::default()).expect("pool");
    Db { url, pool, _owned: None }
}

async fn seeded(db: &Db) -> bool {
    let c = db.pool.get().await.expect("connection");
    c.query_one("SELECT EXISTS (SELECT 1 FROM metric_events)", &[]).await.expect("probe").get(0)
}

async fn counts(pool: &Pool) -> (i64, i64) {
    let c = pool.get().await.expect("connection");
    let r = c
        .query_one("SELECT (SELECT count(*) FROM exposures), (SELECT count(*) FROM metric_events)", &[])
        .await
        .expect("count events");
    (r.get(0), r.get(1))
}

/// An organization with environment `production` and its keys, like `TestDb::seed_tenant`.
async fn tenant(pool: &Pool, name: &str) -> Tenant {
    let c = pool.get().await.expect("connection");
    let (org, env) = (Uuid::new_v4(), Uuid::new_v4());
    c.execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", &[&org, &name])
        .await
        .expect("organization");
    c.execute(
        "INSERT INTO environments (id, organization_id, key, name) VALUES ($1, $2, 'production', 'Production')",
        &[&env, &org],
    )
    .await
    .expect("environment");
    let (admin_key, sdk_key) = cohort_db::testing::issue_keys(&c, org, env, name).await;
    Tenant { organization_id: org, environment_id: env, admin_key, sdk_key }
}

/// Environments of a kept database, with keys issued anew (only their hashes are stored), and
/// their running experiments from the config service.
async fn load_envs(db: &Db, config: &Config) -> Vec<Env> {
    let c = db.pool.get().await.expect("connection");
    let rows = c
        .query("SELECT id, organization_id FROM environments ORDER BY created_at, id", &[])
        .await
        .expect("environments");
    let mut envs = Vec::new();
    for r in rows {
        let (env, org): (Uuid, Uuid) = (r.get(0), r.get(1));
        let (admin_key, sdk_key) = cohort_db::testing::issue_keys(&c, org, env, "bench").await;
        let tenant = Tenant { organization_id: org, environment_id: env, admin_key, sdk_key };
        let experiments = config.running(&tenant).await;
        envs.push(Env { tenant, experiments });
    }
    envs
}

fn metric_defs(n: usize) -> Vec<Value> {
    let all = [
        json!({"key": "purchase", "event": "purchase", "aggregation": "conversion", "direction": "increase"}),
        json!({"key": "revenue", "event": "order", "aggregation": "sum", "direction": "increase"}),
        json!({"key": "load_time", "event": "page_load", "aggregation": "mean", "direction": "decrease",
               "guardrail_threshold": 0.1}),
    ];
    all.into_iter().take(n.clamp(1, 3)).collect()
}

fn experiment_def(key: &str, metrics: usize) -> Value {
    let (primary, guardrails): (Vec<&str>, Vec<&str>) = match metrics {
        1 => (vec!["purchase"], vec![]),
        2 => (vec!["purchase", "revenue"], vec![]),
        _ => (vec!["purchase", "revenue"], vec!["load_time"]),
    };
    json!({
        "key": key,
        "variants": [{"key": "control", "weight_bp": 5000, "control": true}, {"key": "treatment", "weight_bp": 5000}],
        "primary_metrics": primary,
        "guardrail_metrics": guardrails,
        "breakdown_attributes": ["country", "platform"],
    })
}

/// Creates the environments, then metrics and running experiments through the config
/// service, then the events, then ANALYZE.
async fn seed(args: &Args, db: &Db, config: &Config) -> Vec<Env> {
    let started = Instant::now();
    let per_env = args.experiments.div_ceil(args.environments);
    let mut jobs = Vec::new();
    for e in 0..args.environments {
        let tenant = tenant(&db.pool, &format!("bench-{e}")).await;
        let n = per_env.min(args.experiments.saturating_sub(e * per_env));
        let (config, metrics) = (config.clone(), args.metrics);
        jobs.push(tokio::spawn(async move {
            let defs = metric_defs(metrics).into_iter().map(|m| create(cpb::EntityKind::Metric, m)).collect();
            config.apply(&tenant, defs).await;
            let mut experiments = Vec::new();
            let keys: Vec<String> = (0..n).map(|i| format!("exp-{i:04}")).collect();
            for chunk in keys.chunks(EXPERIMENTS_PER_BATCH) {
                let ops = chunk
                    .iter()
                    .flat_map(|key| {
                        [create(cpb::EntityKind::Experiment, experiment_def(key, metrics)), start(key)]
                    })
                    .collect();
                // Each experiment's entity after its create, then after its start.
                for (written, key) in config.apply(&tenant, ops).await.chunks(2).zip(chunk) {
                    let definition: Value =
                        cohort_proto::convert::structured::to_json(written[0].definition.as_ref())
                            .expect("a definition");
                    let id = Uuid::parse_str(definition["id"].as_str().expect("id")).expect("uuid");
                    experiments.push((id, key.clone()));
                }
            }
            Env { tenant, experiments }
        }));
    }
    let mut envs = Vec::new();
    for j in jobs {
        envs.push(j.await.expect("seeding task"));
    }
    println!(
        "seeded {} experiments through the config service in {:.1?}",
        args.experiments,
        started.elapsed()
    );

    let started = Instant::now();
    let now = SystemTime::now();
    create_partitions(&db.pool, now).await;
    let exposures = (args.events as f64 * EXPOSURE_SHARE) as usize;
    let metric_events = args.events - exposures;
    let (a, b) = tokio::join!(
        copy_exposures(&db.url, &envs, exposures, args.seed, now),
        copy_metric_events(&db.url, &envs, exposures, metric_events, args.seed, now),
    );
    println!("copied {a} exposures and {b} metric events in {:.1?}", started.elapsed());
    let started = Instant::now();
    let c = db.pool.get().await.expect("connection");
    // One statement each: VACUUM cannot run in the implicit transaction of a batch.
    for table in ["exposures", "metric_events"] {
        c.batch_execute(&format!("VACUUM ANALYZE {table}")).await.expect("vacuum analyze");
    }
    println!("VACUUM ANALYZE in {:.1?}", started.elapsed());
    envs
}

/// Daily partitions named and bounded like the event service's drainer makes them.
async fn create_partitions(pool: &Pool, now: SystemTime) {
    let c = pool.get().await.expect("connection");
    let mut sql = String::from("SET client_min_messages = warning;");
    for d in day_of(unix_ms(now - SPAN)) - 1..=day_of(unix_ms(now)) + 2 {
        let (y, m, dd) = civil_from_days(d);
        let (y1, m1, d1) = civil_from_days(d + 1);
        for table in ["exposures", "metric_events"] {
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {table}_p{y:04}{m:02}{dd:02} PARTITION OF {table}
                 FOR VALUES FROM ('{y:04}-{m:02}-{dd:02} 00:00:00+00') TO ('{y1:04}-{m1:02}-{d1:02} 00:00:00+00');"
            ));
        }
    }
    c.batch_execute(&sql).await.expect("partitions");
}

/// Units of environment `e`: a pool each environment's experiments draw from.
fn unit_name(e: usize, i: usize) -> String {
    format!("e{e}-user-{i:07}")
}

fn attributes(unit: &str) -> Value {
    let h = cohort_core::hash::bucket("bench-attributes", unit) as usize;
    json!({"country": COUNTRIES[h % COUNTRIES.len()], "platform": PLATFORMS[(h / 8) % PLATFORMS.len()]})
}

fn random_ts(rng: &mut ChaCha8Rng, now: SystemTime) -> SystemTime {
    now - Duration::from_millis(rng.random_range(60_000..SPAN.as_millis() as u64))
}

fn random_id(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn pool_size(args_exposures: usize, envs: &[Env]) -> usize {
    (args_exposures / envs.len().max(1) / EXPERIMENTS_PER_UNIT).max(1)
}

async fn copy_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect for COPY");
    tokio::spawn(conn);
    client
}

/// Each experiment's share of units from its environment's pool, each exposed once at a
/// random time with the variant bucketing assigns; a few are exposed again, and a few of
/// those to the other variant (units seen in two variants are excluded by analysis).
async fn copy_exposures(url: &str, envs: &[Env], total: usize, seed: u64, now: SystemTime) -> usize {
    let client = copy_client(url).await;
    let sink = client
        .copy_in(
            "COPY exposures (environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at)
             FROM STDIN (FORMAT binary)",
        )
        .await
        .expect("COPY exposures");
    let types = [
        Type::UUID,
        Type::UUID,
        Type::UUID,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::JSONB,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let experiments: usize = envs.iter().map(|e| e.experiments.len()).sum();
    let per_experiment = total / experiments.max(1);
    let pool = pool_size(total, envs);
    let mut written = 0;
    for (e, env) in envs.iter().enumerate() {
        for (id, _) in &env.experiments {
            let salt = id.to_string();
            for _ in 0..per_experiment {
                let unit = unit_name(e, rng.random_range(0..pool));
                let mut variant =
                    if cohort_core::hash::bucket(&salt, &unit) < 5000 { "control" } else { "treatment" };
                let roll: f64 = rng.random();
                if roll < 0.001 {
                    variant = if variant == "control" { "treatment" } else { "control" };
                }
                let ts = random_ts(&mut rng, now);
                let row: [&(dyn ToSql + Sync); 9] = [
                    &env.tenant.environment_id,
                    &random_id(&mut rng),
                    id,
                    &unit,
                    &variant,
                    &1i64,
                    &attributes(&unit),
                    &ts,
                    &ts,
                ];
                writer.as_mut().write(&row).await.expect("COPY row");
                written += 1;
            }
        }
    }
    writer.finish().await.expect("COPY exposures done");
    written as usize
}

/// Metric events by units of the pool: mostly page loads (valued), some orders (valued),
/// a few purchases (conversions), at random times, before or after their exposures.
async fn copy_metric_events(
    url: &str,
    envs: &[Env],
    exposures: usize,
    total: usize,
    seed: u64,
    now: SystemTime,
) -> usize {
    let client = copy_client(url).await;
    let sink = client
        .copy_in(
            "COPY metric_events (environment_id, event_id, unit, event, value, properties, ts, received_at)
             FROM STDIN (FORMAT binary)",
        )
        .await
        .expect("COPY metric events");
    let types = [
        Type::UUID,
        Type::UUID,
        Type::TEXT,
        Type::TEXT,
        Type::FLOAT8,
        Type::JSONB,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let pool = pool_size(exposures, envs);
    let per_env = total / envs.len().max(1);
    let props = json!({});
    let mut written = 0;
    for (e, env) in envs.iter().enumerate() {
        for _ in 0..per_env {
            let unit = unit_name(e, rng.random_range(0..pool));
            let roll: f64 = rng.random();
            let (event, value) = if roll < 0.03 {
                ("purchase", None)
            } else if roll < 0.10 {
                ("order", Some((rng.random_range(5.0..200.0f64) * 100.0).round() / 100.0))
            } else {
                ("page_load", Some(rng.random_range(150.0..2500.0f64).round()))
            };
            let ts = random_ts(&mut rng, now);
            let row: [&(dyn ToSql + Sync); 8] =
                [&env.tenant.environment_id, &random_id(&mut rng), &unit, &event, &value, &props, &ts, &ts];
            writer.as_mut().write(&row).await.expect("COPY row");
            written += 1;
        }
    }
    writer.finish().await.expect("COPY metric events done");
    written as usize
}

fn analyzer(pool: &Pool, config: &Config) -> Analyzer {
    Analyzer::new(
        Store::new(pool.clone()),
        ConfigClient::new(&config.url, &config.service_key, &Default::default()).expect("config client"),
        Settings::default(),
        Metrics::new(&mut prometheus_client::registry::Registry::default()),
    )
}

/// Times the cold start (no aggregation state yet: cycles rebuild a bounded share of the
/// experiments each from all their rows until none is pending), then `--cycles` cycles, each
/// after `--delta` new events arrive.
async fn cycles(args: &Args, db: &Db, config: &Config, envs: &[Env], events: i64) {
    let analyzer = analyzer(&db.pool, config);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xc1c1e);
    let started = Instant::now();
    let mut cold = Vec::new();
    loop {
        let (took, report) = timed_cycle(&analyzer, &format!("start-up cycle {}", cold.len() + 1)).await;
        cold.push(took);
        if report.pending == 0 {
            break;
        }
    }
    cold.sort();
    println!(
        "start-up over {events} events: {} cycles in {:.2?}, the longest {:.2?}",
        cold.len(),
        started.elapsed(),
        cold.last().copied().unwrap_or_default()
    );
    let mut times = Vec::new();
    for i in 0..args.cycles {
        if args.delta > 0 {
            insert_delta(&db.pool, envs, args.delta, &mut rng).await;
        }
        times.push(timed_cycle(&analyzer, &format!("cycle {}", i + 1)).await.0);
    }
    times.sort();
    if let (Some(min), Some(max)) = (times.first(), times.last()) {
        let median = times[times.len() / 2];
        println!(
            "cycle over {events} events + {} new: median {median:.2?}, min {min:.2?}, max {max:.2?}; {:.0} new events/s at the median",
            args.delta,
            args.delta as f64 / median.as_secs_f64()
        );
    }
}

async fn timed_cycle(analyzer: &Analyzer, name: &str) -> (Duration, CycleReport) {
    let load = load_average();
    let started = Instant::now();
    let report = analyzer.cycle().await.expect("cycle");
    let took = started.elapsed();
    println!(
        "{name}: {took:.2?} (aggregation {:.2?}; {} experiments analyzed, {} rebuilt, {} pending, {} looks, {} paused, {} failed; load before {load})",
        report.aggregation,
        report.experiments,
        report.rebuilt,
        report.pending,
        report.looks,
        report.paused,
        report.failed
    );
    (took, report)
}

/// `n` new events now, as one interval of traffic: new units exposed in random experiments,
/// and metric events by units of the pools.
async fn insert_delta(pool: &Pool, envs: &[Env], n: usize, rng: &mut ChaCha8Rng) {
    let c = pool.get().await.expect("connection");
    let now = SystemTime::now();
    let exposures = n / 2;
    let (mut env_ids, mut exps, mut units, mut variants, mut attrs) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..exposures {
        let e = rng.random_range(0..envs.len());
        let (id, _) = envs[e].experiments[rng.random_range(0..envs[e].experiments.len())];
        let unit = format!("e{e}-new-{}", random_id(rng).simple());
        variants.push(if cohort_core::hash::bucket(&id.to_string(), &unit) < 5000 {
            "control"
        } else {
            "treatment"
        });
        attrs.push(attributes(&unit));
        units.push(unit);
        env_ids.push(envs[e].tenant.environment_id);
        exps.push(id);
    }
    c.execute(
        "INSERT INTO exposures (environment_id, event_id, experiment_id, unit, variant, config_version, attributes, ts, received_at)
         SELECT e, gen_random_uuid(), x, u, v, 1, a, $6, $6 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[]) AS t(e, x, u, v, a)",
        &[&env_ids, &exps, &units, &variants, &attrs, &now],
    )
    .await
    .expect("insert new exposures");
    let (mut env_ids, mut munits, mut events, mut values) = (vec![], vec![], vec![], vec![]);
    for i in 0..n - exposures {
        // Half by the units just exposed, half by the existing pools.
        let (env, unit) = if i % 2 == 0 {
            let k = rng.random_range(0..units.len());
            (exps_env(envs, &exps[k]), units[k].clone())
        } else {
            let e = rng.random_range(0..envs.len());
            (envs[e].tenant.environment_id, unit_name(e, rng.random_range(0..1000)))
        };
        let roll: f64 = rng.random();
        let (event, value) = if roll < 0.05 {
            ("purchase", None)
        } else if roll < 0.15 {
            ("order", Some(rng.random_range(5.0..200.0f64)))
        } else {
            ("page_load", Some(rng.random_range(150.0..2500.0f64)))
        };
        env_ids.push(env);
        munits.push(unit);
        events.push(event);
        values.push(value);
    }
    let later = now + Duration::from_millis(1);
    c.execute(
        "INSERT INTO metric_events (environment_id, event_id, unit, event, value, properties, ts, received_at)
         SELECT e, gen_random_uuid(), u, ev, v, '{}', $5, $5 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[]) AS t(e, u, ev, v)",
        &[&env_ids, &munits, &events, &values, &later],
    )
    .await
    .expect("insert new metric events");
}

fn exps_env(envs: &[Env], experiment: &Uuid) -> Uuid {
    envs.iter()
        .find(|e| e.experiments.iter().any(|(id, _)| id == experiment))
        .map(|e| e.tenant.environment_id)
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Adds the event and analysis services to the stack (analysis on its normal 10 s interval),
/// sends batches through the event service, and times each acknowledgment until the stored
/// result of its experiment counts the batch's units.
async fn latency(args: &Args, db: &Db, stack: &mut Stack, envs: &[Env]) {
    use cohort_proto::events::v1::event_service_client::EventServiceClient;

    let events = stack.add(Service::Events, &[]).await.expect("starting the event service");
    stack.add(Service::Analysis, &[]).await.expect("starting the analysis service");
    let mut client = loop {
        match EventServiceClient::connect(events.grpc_url()).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let store = Store::new(db.pool.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x1a7e);
    let mut samples = Vec::new();
    for trial in 0..args.latency_trials {
        let env = &envs[trial % envs.len()];
        let (experiment, key) = env.experiments[rng.random_range(0..env.experiments.len())].clone();
        let id = ExperimentRef { environment_id: env.tenant.environment_id, experiment_id: experiment };
        let before = units_in(&store, id).await;
        // A random phase against the analysis interval.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..10_000))).await;
        let n = 200;
        let now_ms = unix_ms(SystemTime::now());
        let mut batch = Vec::new();
        for _ in 0..n {
            let unit = format!("latency-{}", random_id(&mut rng).simple());
            let variant = if cohort_core::hash::bucket(&experiment.to_string(), &unit) < 5000 {
                "control"
            } else {
                "treatment"
            };
            let attributes: HashMap<String, String> =
                serde_json::from_value(attributes(&unit)).expect("attributes");
            batch.push(pb::Event {
                event_id: random_id(&mut rng).to_string(),
                timestamp_ms: now_ms,
                kind: Some(pb::event::Kind::Exposure(pb::Exposure {
                    unit: unit.clone(),
                    experiment_id: experiment.to_string(),
                    variant: variant.into(),
                    config_version: 1,
                    attributes,
                })),
            });
            batch.push(pb::Event {
                event_id: random_id(&mut rng).to_string(),
                timestamp_ms: now_ms + 1,
                kind: Some(pb::event::Kind::Metric(pb::Metric {
                    unit,
                    name: "purchase".into(),
                    value: None,
                    properties: HashMap::new(),
                })),
            });
        }
        let request = authed(&env.tenant.sdk_key, pb::SendBatchRequest { events: batch });
        let response = client.send_batch(request).await.expect("send batch").into_inner();
        let acked = Instant::now();
        assert_eq!(response.accepted as usize, 2 * n, "{:?}", response.rejected);
        loop {
            if units_in(&store, id).await >= before + n as u64 {
                break;
            }
            assert!(acked.elapsed() < Duration::from_secs(120), "results never reflected the batch");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = acked.elapsed();
        println!("latency trial {}: {key}: ack → results {took:.2?} (load {})", trial + 1, load_average());
        samples.push(took);
    }
    stack.stop_service(Service::Analysis).await.expect("stopping the analysis service");
    stack.stop_service(Service::Events).await.expect("stopping the event service");
    samples.sort();
    if let (Some(min), Some(max)) = (samples.first(), samples.last()) {
        println!("ack → results: median {:.2?}, min {min:.2?}, max {max:.2?}", samples[samples.len() / 2]);
    }
}

async fn units_in(store: &Store, experiment: ExperimentRef) -> u64 {
    let r = store.latest(experiment).await.expect("latest result");
    r.map_or(0, |r| r.units.values().sum::<u64>() + r.excluded_units)
}
