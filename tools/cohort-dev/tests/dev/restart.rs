//! `make dev` started twice on the same database keeps the keys, the demo and what was made in
//! between; `--fresh` forgets the keys. Needs PostgreSQL on 127.0.0.1:5432 (user postgres).

use std::path::Path;

use cohort_dev::demo::{EXPERIMENT, FLAG};
use cohort_dev::dev::{self, ENVIRONMENT, Setup};
use cohort_dev::stack::{Options, Service, Stack};
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use rand::Rng;
use serde_json::json;
use tokio_postgres::NoTls;
use tonic::transport::Channel;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().expect("a header value"));
    request
}

async fn admin_sql(sql: &str) {
    let (client, conn) =
        tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls).await.expect("PostgreSQL");
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn config(stack: &Stack) -> ConfigServiceClient<Channel> {
    let url = stack.addrs(Service::Config).expect("config runs").grpc_url();
    ConfigServiceClient::connect(url).await.expect("connecting to config")
}

async fn entities(stack: &Stack, admin_key: &str) -> Vec<(i32, String)> {
    let request =
        pb::ListEntitiesRequest { environment: ENVIRONMENT.into(), page_size: 1000, ..Default::default() };
    let list =
        config(stack).await.list_entities(authed(admin_key, request)).await.expect("listing").into_inner();
    list.entities.into_iter().map(|e| (e.kind, e.key)).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("the state file").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_keeps_keys_demo_and_definitions_and_fresh_forgets() {
    let name = format!("cohort_dev_restart_{:016x}", rand::rng().random::<u64>());
    admin_sql(&format!("CREATE DATABASE {name}")).await;
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let state_file = dir.join("state").join("state.json");
    let mut setup = Setup {
        database_url: format!("{SERVER}/{name}"),
        options: Options::test(dir.join("spool")),
        state_file: Some(state_file.clone()),
        fresh: false,
    };

    // First run: a new organization, its keys saved (owner-only), the whole demo.
    let first = dev::start(&setup).await.expect("first start");
    assert!(!first.reused);
    assert_eq!(first.organization, "demo");
    assert_eq!(first.demo_created, 4);
    #[cfg(unix)]
    assert_eq!(mode(&state_file), 0o600);
    let saved = std::fs::read_to_string(&state_file).expect("the state file");
    assert!(saved.contains(&first.demo.admin_key) && saved.contains(&first.demo.sdk_key));
    // A newcomer's flag.
    let flag = json!({
        "key": "my-flag", "type": "boolean", "salt": "my-flag-1",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "off_variation": "off",
        "default": {"split": [{"variation": "on", "weight_bp": 10000}]},
    });
    let request = pb::CreateEntityRequest {
        environment: ENVIRONMENT.into(),
        kind: pb::EntityKind::Flag as i32,
        definition: cohort_proto::convert::structured::json_struct(&flag),
        reason: String::new(),
    };
    config(&first.stack)
        .await
        .create_entity(authed(&first.demo.admin_key, request))
        .await
        .expect("creating a flag");
    let before = entities(&first.stack, &first.demo.admin_key).await;
    first.stack.stop().await.expect("stopping the first run");

    // Second run: the same keys, nothing of the demo made again, the flag still there.
    let second = dev::start(&setup).await.expect("second start");
    assert!(second.reused, "notes: {:?}", second.notes);
    assert_eq!(second.organization, "demo");
    assert_eq!(second.demo.admin_key, first.demo.admin_key);
    assert_eq!(second.demo.sdk_key, first.demo.sdk_key);
    assert_eq!(second.demo_created, 0);
    let after = entities(&second.stack, &second.demo.admin_key).await;
    assert_eq!(after, before);
    let count = |key: &str| after.iter().filter(|(_, k)| k == key).count();
    assert_eq!((count(EXPERIMENT), count(FLAG), count("my-flag")), (1, 1, 1));
    second.stack.stop().await.expect("stopping the second run");

    // Saved keys that no longer work: a new organization, not a failure.
    std::fs::write(&state_file, saved.replace(&first.demo.admin_key, "cohort_admin_0000")).expect("writing");
    let stale = dev::start(&setup).await.expect("start with stale keys");
    assert!(!stale.reused);
    assert_ne!(stale.demo.admin_key, first.demo.admin_key);
    assert_eq!(stale.demo_created, 4);
    assert!(!stale.notes.is_empty());
    stale.stack.stop().await.expect("stopping the stale-keys run");

    // --fresh: the saved keys are forgotten (this database is the caller's: a new organization).
    setup.fresh = true;
    let fresh = dev::start(&setup).await.expect("fresh start");
    assert!(!fresh.reused);
    assert_ne!(fresh.demo.admin_key, first.demo.admin_key);
    assert_ne!(fresh.demo.admin_key, stale.demo.admin_key);
    assert_eq!(fresh.demo_created, 4);
    let saved = std::fs::read_to_string(&state_file).expect("the new state file");
    assert!(saved.contains(&fresh.demo.admin_key));
    fresh.stack.stop().await.expect("stopping the fresh run");

    admin_sql(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
    let _ = std::fs::remove_dir_all(&dir);
}
