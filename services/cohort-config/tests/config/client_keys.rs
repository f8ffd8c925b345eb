//! Client-side keys (browsers, mobile apps) read nothing from the config service: no snapshot,
//! no HTTP config, no listing, no Sync of their own. Only a Cohort service holding a service
//! key streams their environment for them, and revoking the client key ends that stream. And
//! environments' allowed browser origins: checked entry by entry, audited, and handed to
//! Cohort's services with the key that belongs to them.

use std::time::Duration;

use cohort_db::keys::{KeyKind, generate};
use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::Flag;
use pb::internal_service_client::InternalServiceClient;
use pb::sync_response::Message as Out;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

use cohort_proto::config::v1::config_service_client::ConfigServiceClient;

use crate::{Server, authed, create, flag_json, http_get};

async fn client_key(c: &mut ConfigServiceClient<Channel>, admin: &str) -> (String, String) {
    let request = pb::CreateApiKeyRequest {
        kind: pb::KeyKind::Client as i32,
        name: "web".into(),
        environment: "production".into(),
        ..Default::default()
    };
    let created = c.create_api_key(authed(admin, request)).await.expect("create client key").into_inner();
    (created.key.unwrap().id, created.secret)
}

/// Opens Sync with `key`, and a service key beside it when given.
async fn sync(
    server: &Server,
    key: &str,
    service_key: Option<&str>,
) -> Result<(mpsc::Sender<pb::SyncRequest>, tonic::Streaming<pb::SyncResponse>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::sync_request::Message::Hello(pb::Hello { known_version: 0, client: "test".into() });
    tx.send(pb::SyncRequest { message: Some(hello) }).await.unwrap();
    let mut request = authed(key, ReceiverStream::new(rx));
    if let Some(service) = service_key {
        request
            .metadata_mut()
            .insert(pb::SERVICE_AUTHORIZATION, format!("Bearer {service}").parse().unwrap());
    }
    let stream = server.client().await.sync(request).await?.into_inner();
    Ok((tx, stream))
}

/// The next snapshot or delta, or how the stream ended.
async fn next_config(stream: &mut tonic::Streaming<pb::SyncResponse>) -> Result<Out, tonic::Status> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message within 10 s")?
            .ok_or_else(|| tonic::Status::ok("the stream ended without a status"))?;
        match message.message {
            Some(Out::Heartbeat(_)) | Some(Out::Pong(_)) | None => continue,
            Some(other) => return Ok(other),
        }
    }
}

#[tokio::test]
async fn a_client_key_reads_nothing_and_streams_only_beside_a_service_key() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let service = generate(KeyKind::Service);
    let entry = format!("cohort-evaluation={}", hex::encode(&service.hash));
    let server = Server::start_with(&db.url, &["--service-keys", &entry]).await;
    let mut c = server.client().await;
    create(&mut c, &tenant.admin_key, "production", Flag, flag_json("checkout", true)).await;
    let (id, key) = client_key(&mut c, &tenant.admin_key).await;
    assert!(key.starts_with("cohort_client_"), "{key}");

    // Nothing to read, by any route.
    let refused = [
        c.get_snapshot(authed(&key, pb::GetSnapshotRequest { environment: "production".into() }))
            .await
            .map(drop),
        c.list_entities(authed(&key, pb::ListEntitiesRequest::default())).await.map(drop),
        c.get_entity(authed(
            &key,
            pb::GetEntityRequest { kind: Flag as i32, key: "checkout".into(), ..Default::default() },
        ))
        .await
        .map(drop),
        c.list_environments(authed(&key, pb::ListEnvironmentsRequest {})).await.map(drop),
        c.list_audit(authed(&key, pb::ListAuditRequest::default())).await.map(drop),
        c.list_api_keys(authed(&key, pb::ListApiKeysRequest::default())).await.map(drop),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        let status = r.expect_err("a client key reads nothing");
        assert_eq!(status.code(), Code::PermissionDenied, "call {i}: {status:?}");
        assert!(status.message().contains("evaluation service"), "call {i}: {status:?}");
    }
    let (code, _, body) =
        http_get(server.http, "/api/v1/config", &[("authorization", &format!("Bearer {key}"))]).await;
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("checkout"), "{body}");

    // Sync: not alone, not with a made-up service key; with the service's key, the config.
    let alone = sync(&server, &key, None).await.map(drop).expect_err("a client key alone");
    assert_eq!(alone.code(), Code::PermissionDenied, "{alone:?}");
    let bogus = generate(KeyKind::Service).secret;
    let forged = sync(&server, &key, Some(&bogus)).await.map(drop).expect_err("an unknown service key");
    assert_eq!(forged.code(), Code::Unauthenticated, "{forged:?}");
    // A service key does not stand in for an unknown client key.
    let unknown = format!("cohort_client_{}", "0".repeat(64));
    let status = sync(&server, &unknown, Some(&service.secret)).await.map(drop).expect_err("unknown key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let (_tx, mut stream) = sync(&server, &key, Some(&service.secret)).await.expect("delegated sync");
    match next_config(&mut stream).await {
        Ok(Out::Snapshot(s)) => assert!(String::from_utf8_lossy(&s.definitions_json).contains("checkout")),
        other => panic!("expected a snapshot, got {other:?}"),
    }

    // Revoking the client key ends the stream opened for it.
    c.revoke_api_key(authed(&tenant.admin_key, pb::RevokeApiKeyRequest { id })).await.expect("revoke");
    let ended = loop {
        match next_config(&mut stream).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    server.stop().await;
}

#[tokio::test]
async fn environments_list_allowed_origins_checked_entry_by_entry_and_audited() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let service = generate(KeyKind::Service);
    let entry = format!("cohort-events={}", hex::encode(&service.hash));
    let server = Server::start_with(&db.url, &["--service-keys", &entry]).await;
    let mut c = server.client().await;
    let admin = tenant.admin_key.as_str();
    let origins = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // None by default.
    let listed =
        c.list_environments(authed(admin, pb::ListEnvironmentsRequest {})).await.unwrap().into_inner();
    assert_eq!(listed.environments[0].cors_origins, Vec::<String>::new());

    let created = c
        .create_environment(authed(
            admin,
            pb::CreateEnvironmentRequest {
                key: "web".into(),
                name: "Web".into(),
                cors_origins: origins(&["https://app.example.com", "http://localhost:5173"]),
            },
        ))
        .await
        .expect("created")
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(created.cors_origins, origins(&["https://app.example.com", "http://localhost:5173"]));

    // An origin no browser sends is refused, naming the entry; nothing changes.
    let update = |list: &[&str]| pb::UpdateEnvironmentRequest {
        environment: "web".into(),
        name: None,
        cors_origins: Some(pb::CorsOrigins { origins: origins(list) }),
    };
    let status = c
        .update_environment(authed(admin, update(&["https://ok.example", "https://app.example.com/"])))
        .await
        .expect_err("a path is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("cors_origins.origins[1]"), "{status:?}");
    let nothing = pb::UpdateEnvironmentRequest { environment: "web".into(), ..Default::default() };
    let status = c.update_environment(authed(admin, nothing)).await.expect_err("nothing to change");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let updated = c
        .update_environment(authed(admin, update(&["https://shop.example"])))
        .await
        .expect("updated")
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.cors_origins.clone()),
        ("Web", origins(&["https://shop.example"]))
    );

    // SDK keys read it; a read-only admin key cannot change it.
    let reader = c
        .create_api_key(authed(
            admin,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Admin as i32,
                name: "reader".into(),
                read_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let status = c.update_environment(authed(&reader, update(&["*"]))).await.expect_err("read-only");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The services learn a key's environment's origins with the key.
    let sdk = c
        .create_api_key(authed(
            admin,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Sdk as i32,
                name: "web app".into(),
                environment: "web".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut internal =
        InternalServiceClient::connect(format!("http://{}", server.grpc)).await.expect("connect internal");
    let verified = internal
        .verify_key(authed(
            &service.secret,
            pb::VerifyKeyRequest { key_hash: cohort_db::keys::hash(&sdk).into() },
        ))
        .await
        .expect("verified")
        .into_inner();
    assert_eq!(verified.cors_origins, origins(&["https://shop.example"]));

    // Cleared: none allowed again.
    let cleared = c
        .update_environment(authed(admin, update(&[])))
        .await
        .expect("cleared")
        .into_inner()
        .environment
        .unwrap();
    assert!(cleared.cors_origins.is_empty());

    let audit = c
        .list_audit(authed(admin, pb::ListAuditRequest { environment: "web".into(), ..Default::default() }))
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let updates: Vec<_> = audit.iter().filter(|e| e.action == "update_environment").collect();
    assert_eq!(updates.len(), 2, "{audit:?}");
    assert!(updates.iter().any(|e| {
        let text = |s: Option<&cohort_proto::convert::structured::Struct>| {
            cohort_proto::convert::structured::to_json(s).unwrap().to_string()
        };
        text(e.before.as_ref()).contains("localhost:5173") && text(e.after.as_ref()).contains("shop.example")
    }));
    server.stop().await;
}
