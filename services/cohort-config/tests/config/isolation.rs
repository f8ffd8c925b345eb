//! Tenant isolation, RPC by RPC: another organization's keys can neither read, list, watch nor
//! change anything of this one, even when they name its environment by id.

use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::{Experiment, Flag};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::{Server, authed, create, experiment_json, flag_json, http_get};

fn assert_hidden<T: std::fmt::Debug>(rpc: &str, result: Result<tonic::Response<T>, tonic::Status>) {
    match result {
        Err(s) if s.code() == Code::NotFound => {}
        other => panic!("{rpc} with another tenant's environment should be NOT_FOUND, got {other:?}"),
    }
}

#[tokio::test]
async fn one_tenant_cannot_read_or_change_another_tenants_data() {
    let db = TestDb::new().await;
    let a = db.seed_tenant("alpha").await;
    let b = db.seed_tenant("beta").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &a.admin_key, "production", Flag, flag_json("alpha-secret", true)).await;
    create(&mut c, &a.admin_key, "production", Experiment, experiment_json("alpha-test")).await;
    let a_env = a.environment_id.to_string();
    let a_before = c
        .get_snapshot(authed(&a.admin_key, pb::GetSnapshotRequest { environment: a_env.clone() }))
        .await
        .unwrap()
        .into_inner();
    let a_keys = c
        .list_api_keys(authed(&a.admin_key, pb::ListApiKeysRequest { include_revoked: true }))
        .await
        .unwrap()
        .into_inner();

    // Every environment-scoped RPC, with B's admin key naming A's environment by id.
    let k = &b.admin_key;
    assert_hidden(
        "CreateEntity",
        c.create_entity(authed(
            k,
            pb::CreateEntityRequest {
                environment: a_env.clone(),
                kind: Flag as i32,
                definition: cohort_proto::convert::structured::text_struct(&flag_json("x", true)),
                reason: String::new(),
            },
        ))
        .await,
    );
    assert_hidden(
        "GetEntity",
        c.get_entity(authed(
            k,
            pb::GetEntityRequest {
                environment: a_env.clone(),
                kind: Flag as i32,
                key: "alpha-secret".into(),
            },
        ))
        .await,
    );
    assert_hidden(
        "ListEntities",
        c.list_entities(authed(
            k,
            pb::ListEntitiesRequest { environment: a_env.clone(), ..Default::default() },
        ))
        .await,
    );
    assert_hidden(
        "UpdateEntity",
        c.update_entity(authed(
            k,
            pb::UpdateEntityRequest {
                environment: a_env.clone(),
                kind: Flag as i32,
                key: "alpha-secret".into(),
                definition: cohort_proto::convert::structured::text_struct(&flag_json("alpha-secret", false)),
                expected_revision: 1,
                reason: String::new(),
            },
        ))
        .await,
    );
    assert_hidden(
        "DeleteEntity",
        c.delete_entity(authed(
            k,
            pb::DeleteEntityRequest {
                environment: a_env.clone(),
                kind: Flag as i32,
                key: "alpha-secret".into(),
                expected_revision: 1,
                reason: String::new(),
            },
        ))
        .await,
    );
    assert_hidden(
        "TransitionExperiment",
        c.transition_experiment(authed(
            k,
            pb::TransitionExperimentRequest {
                environment: a_env.clone(),
                key: "alpha-test".into(),
                action: pb::ExperimentAction::Start as i32,
                expected_revision: 1,
                reason: String::new(),
            },
        ))
        .await,
    );
    assert_hidden(
        "GetSnapshot",
        c.get_snapshot(authed(k, pb::GetSnapshotRequest { environment: a_env.clone() })).await,
    );
    assert_hidden(
        "ListAudit",
        c.list_audit(authed(k, pb::ListAuditRequest { environment: a_env.clone(), ..Default::default() }))
            .await,
    );
    assert_hidden(
        "GetPropagation",
        c.get_propagation(authed(k, pb::GetPropagationRequest { environment: a_env.clone(), version: 1 }))
            .await,
    );
    assert_hidden(
        "CreateApiKey",
        c.create_api_key(authed(
            k,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Sdk as i32,
                name: "stolen".into(),
                environment: a_env.clone(),
                ..Default::default()
            },
        ))
        .await,
    );
    for key in &a_keys.keys {
        assert_hidden(
            "RevokeApiKey",
            c.revoke_api_key(authed(k, pb::RevokeApiKeyRequest { id: key.id.clone() })).await,
        );
    }
    // B's SDK key is bound to B's environment: naming A's is the same as naming nothing.
    assert_hidden(
        "GetSnapshot (sdk)",
        c.get_snapshot(authed(&b.sdk_key, pb::GetSnapshotRequest { environment: a_env.clone() })).await,
    );
    assert_hidden(
        "ListEntities (sdk)",
        c.list_entities(authed(
            &b.sdk_key,
            pb::ListEntitiesRequest { environment: a_env.clone(), ..Default::default() },
        ))
        .await,
    );

    // Organization-wide listings show only B's own.
    let envs = c.list_environments(authed(k, pb::ListEnvironmentsRequest {})).await.unwrap().into_inner();
    assert_eq!(
        envs.environments.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        [b.environment_id.to_string()]
    );
    let keys = c
        .list_api_keys(authed(k, pb::ListApiKeysRequest { include_revoked: true }))
        .await
        .unwrap()
        .into_inner();
    assert!(keys.keys.iter().all(|bk| a_keys.keys.iter().all(|ak| ak.id != bk.id)));
    let audit = c.list_audit(authed(k, pb::ListAuditRequest::default())).await.unwrap().into_inner();
    assert!(audit.entries.iter().all(|e| !e.key.starts_with("alpha")), "{:?}", audit.entries);
    // Creating an environment lands in B's organization only.
    c.create_environment(authed(
        k,
        pb::CreateEnvironmentRequest { key: "staging".into(), name: "Staging".into(), ..Default::default() },
    ))
    .await
    .unwrap();
    let a_envs =
        c.list_environments(authed(&a.admin_key, pb::ListEnvironmentsRequest {})).await.unwrap().into_inner();
    assert_eq!(a_envs.environments.len(), 1);

    // Watching with B's SDK key yields B's config, never A's.
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::sync_request::Message::Hello(pb::Hello { known_version: 0, client: "isolation".into() });
    tx.send(pb::SyncRequest { message: Some(hello) }).await.unwrap();
    let mut stream = c.sync(authed(&b.sdk_key, ReceiverStream::new(rx))).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let Some(pb::sync_response::Message::Snapshot(s)) = first.message else { panic!("expected a snapshot") };
    assert_eq!(s.environment_id, b.environment_id.to_string());
    assert!(!String::from_utf8_lossy(&s.definitions_json).contains("alpha"));
    drop(tx);
    let (status, _, body) =
        http_get(server.http, "/api/v1/config", &[("Authorization", &format!("Bearer {}", b.sdk_key))]).await;
    assert_eq!(status, 200);
    assert!(!body.contains("alpha") && body.contains(&b.environment_id.to_string()));

    // And A is exactly as it was, its keys still working.
    let a_after =
        c.get_snapshot(authed(&a.sdk_key, pb::GetSnapshotRequest::default())).await.unwrap().into_inner();
    assert_eq!((a_after.version, a_after.definitions), (a_before.version, a_before.definitions));
    server.stop().await;
}
