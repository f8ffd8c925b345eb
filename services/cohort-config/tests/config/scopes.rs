//! Admin keys that can do only their job: read-only keys read but never write, keys limited to
//! some environments cannot tell the others from absent ones nor widen their own reach,
//! expired keys stop working (cached or not), and each key's last use is recorded.

use std::time::{Duration, SystemTime};

use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::Flag;
use tonic::Code;
use tonic::transport::Channel;

use cohort_proto::config::v1::config_service_client::ConfigServiceClient;

use crate::{Server, authed, create, flag_json};

async fn admin_key(
    c: &mut ConfigServiceClient<Channel>,
    by: &str,
    request: pb::CreateApiKeyRequest,
) -> String {
    let request =
        pb::CreateApiKeyRequest { kind: pb::KeyKind::Admin as i32, name: "scoped".into(), ..request };
    c.create_api_key(authed(by, request)).await.expect("create admin key").into_inner().secret
}

async fn new_environment(c: &mut ConfigServiceClient<Channel>, admin: &str, key: &str) {
    let request = pb::CreateEnvironmentRequest { key: key.into(), name: String::new(), ..Default::default() };
    c.create_environment(authed(admin, request)).await.expect("create environment");
}

fn write(env: &str, key: &str) -> pb::CreateEntityRequest {
    pb::CreateEntityRequest {
        environment: env.into(),
        kind: Flag as i32,
        definition: cohort_proto::convert::structured::text_struct(&flag_json(key, true)),
        reason: String::new(),
    }
}

fn list(env: &str) -> pb::ListEntitiesRequest {
    pb::ListEntitiesRequest { environment: env.into(), ..Default::default() }
}

#[tokio::test]
async fn a_read_only_key_reads_everything_and_writes_nothing() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &tenant.admin_key, "production", Flag, flag_json("checkout", true)).await;
    let reader = admin_key(
        &mut c,
        &tenant.admin_key,
        pb::CreateApiKeyRequest { read_only: true, ..Default::default() },
    )
    .await;

    let listed = c.list_entities(authed(&reader, list("production"))).await.expect("reads").into_inner();
    assert_eq!(listed.entities.len(), 1);
    c.list_api_keys(authed(&reader, pb::ListApiKeysRequest::default())).await.expect("lists keys");
    c.list_audit(authed(&reader, pb::ListAuditRequest::default())).await.expect("reads the audit log");

    let refused = [
        c.create_entity(authed(&reader, write("production", "other"))).await.map(drop),
        c.create_environment(authed(
            &reader,
            pb::CreateEnvironmentRequest { key: "staging".into(), name: String::new(), ..Default::default() },
        ))
        .await
        .map(drop),
        c.create_api_key(authed(
            &reader,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Sdk as i32,
                name: "app".into(),
                environment: "production".into(),
                ..Default::default()
            },
        ))
        .await
        .map(drop),
    ];
    for outcome in refused {
        let status = outcome.expect_err("a read-only key cannot write");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("read-only"), "{status:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_key_limited_to_some_environments_reaches_only_those() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    new_environment(&mut c, &tenant.admin_key, "staging").await;
    create(&mut c, &tenant.admin_key, "production", Flag, flag_json("live", true)).await;
    let staging = admin_key(
        &mut c,
        &tenant.admin_key,
        pb::CreateApiKeyRequest { environments: vec!["staging".into()], ..Default::default() },
    )
    .await;

    c.create_entity(authed(&staging, write("staging", "new-thing"))).await.expect("writes its environment");
    for outcome in [
        c.create_entity(authed(&staging, write("production", "sneaky"))).await.map(drop),
        c.list_entities(authed(&staging, list("production"))).await.map(drop),
    ] {
        // The same answer as for an environment that does not exist.
        assert_eq!(outcome.expect_err("production is out of reach").code(), Code::NotFound);
    }
    let envs =
        c.list_environments(authed(&staging, pb::ListEnvironmentsRequest {})).await.unwrap().into_inner();
    assert_eq!(envs.environments.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["staging"]);

    // It cannot make itself a wider key, nor see the organization's admin keys.
    let widen = c.create_api_key(authed(
        &staging,
        pb::CreateApiKeyRequest {
            kind: pb::KeyKind::Admin as i32,
            name: "wider".into(),
            ..Default::default()
        },
    ));
    assert_eq!(widen.await.expect_err("no wider key").code(), Code::PermissionDenied);
    let keys =
        c.list_api_keys(authed(&staging, pb::ListApiKeysRequest::default())).await.unwrap().into_inner();
    assert!(keys.keys.iter().all(|k| k.environment == "staging"), "{:?}", keys.keys);
    // An SDK key for its own environment it may make.
    let sdk = pb::CreateApiKeyRequest {
        kind: pb::KeyKind::Sdk as i32,
        name: "app".into(),
        environment: "staging".into(),
        ..Default::default()
    };
    c.create_api_key(authed(&staging, sdk)).await.expect("an SDK key for staging");
    let organization_audit = c.list_audit(authed(&staging, pb::ListAuditRequest::default())).await;
    assert_eq!(organization_audit.expect_err("names an environment").code(), Code::PermissionDenied);

    // Unknown environments in the scope are named.
    let bad = c
        .create_api_key(authed(
            &tenant.admin_key,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Admin as i32,
                name: "typo".into(),
                environments: vec!["staging".into(), "prodution".into()],
                ..Default::default()
            },
        ))
        .await
        .expect_err("an unknown environment");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(format!("{bad:?}").contains("environments[1]"), "{bad:?}");
    server.stop().await;
}

#[tokio::test]
async fn keys_expire_and_record_their_last_use() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let now_ms = cohort_core::time::unix_ms(SystemTime::now());
    let soon = admin_key(
        &mut c,
        &tenant.admin_key,
        pb::CreateApiKeyRequest { expires_at_ms: now_ms + 1_500, ..Default::default() },
    )
    .await;
    // Used once, so the key is cached and its use recorded.
    c.list_entities(authed(&soon, list("production"))).await.expect("works before it expires");
    let keys = c
        .list_api_keys(authed(&tenant.admin_key, pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let listed = keys.keys.iter().find(|k| k.name == "scoped").unwrap();
    assert!(listed.last_used_at_ms >= now_ms - 1_000, "{listed:?}");
    assert!((listed.expires_at_ms - (now_ms + 1_500)).abs() < 1_000, "{listed:?}");

    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let expired = c.list_entities(authed(&soon, list("production"))).await.expect_err("expired");
    assert_eq!(expired.code(), Code::Unauthenticated);

    let past = c
        .create_api_key(authed(
            &tenant.admin_key,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Admin as i32,
                name: "late".into(),
                expires_at_ms: now_ms - 1,
                ..Default::default()
            },
        ))
        .await
        .expect_err("an expiry in the past");
    assert_eq!(past.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_key_works_through_the_overlap_and_then_stops() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let sdk = pb::CreateApiKeyRequest {
        kind: pb::KeyKind::Sdk as i32,
        name: "web".into(),
        environment: "production".into(),
        ..Default::default()
    };
    let old = c.create_api_key(authed(&tenant.admin_key, sdk)).await.unwrap().into_inner();
    let old_id = old.key.unwrap().id;
    let snapshot = || pb::GetSnapshotRequest { environment: String::new() };
    c.get_snapshot(authed(&old.secret, snapshot())).await.expect("the old secret works");

    let rotate = pb::RotateApiKeyRequest { id: old_id.clone(), overlap_ms: 1_500, expires_at_ms: 0 };
    let new = c.rotate_api_key(authed(&tenant.admin_key, rotate)).await.expect("rotates").into_inner();
    let new_key = new.key.unwrap();
    assert_eq!((new_key.name.as_str(), new_key.environment.as_str()), ("web", "production"));
    assert_ne!(new_key.id, old_id);
    c.get_snapshot(authed(&new.secret, snapshot())).await.expect("the new secret works");
    c.get_snapshot(authed(&old.secret, snapshot())).await.expect("the old one too, during the overlap");
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let ended = c.get_snapshot(authed(&old.secret, snapshot())).await.expect_err("the overlap is over");
    assert_eq!(ended.code(), Code::Unauthenticated);
    c.get_snapshot(authed(&new.secret, snapshot())).await.expect("the new secret still works");

    // No overlap: the old secret is revoked at once; a rotated-away key cannot rotate again.
    let at_once = pb::RotateApiKeyRequest { id: new_key.id.clone(), overlap_ms: 0, expires_at_ms: 0 };
    let newest = c.rotate_api_key(authed(&tenant.admin_key, at_once.clone())).await.unwrap().into_inner();
    let revoked = c.get_snapshot(authed(&new.secret, snapshot())).await.expect_err("revoked at once");
    assert_eq!(revoked.code(), Code::Unauthenticated);
    c.get_snapshot(authed(&newest.secret, snapshot())).await.expect("the newest works");
    let again = c.rotate_api_key(authed(&tenant.admin_key, at_once)).await.expect_err("already rotated away");
    assert_eq!(again.code(), Code::NotFound);

    // A key limited to another environment cannot rotate this one, nor an admin key.
    new_environment(&mut c, &tenant.admin_key, "staging").await;
    let staging = admin_key(
        &mut c,
        &tenant.admin_key,
        pb::CreateApiKeyRequest { environments: vec!["staging".into()], ..Default::default() },
    )
    .await;
    let newest_id = newest.key.unwrap().id;
    let out_of_reach = pb::RotateApiKeyRequest { id: newest_id, overlap_ms: 0, expires_at_ms: 0 };
    let refused = c.rotate_api_key(authed(&staging, out_of_reach)).await.expect_err("out of reach");
    assert_eq!(refused.code(), Code::NotFound);
    server.stop().await;
}
