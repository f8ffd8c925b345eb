//! Every RPC's happy path and its bad inputs, revisions under concurrency, lifecycle,
//! bootstrap rules, HTTP caching headers, and durability across a restart.

use cohort_db::testing::TestDb;
use cohort_proto::config::v1 as pb;
use pb::EntityKind::{Experiment, Flag, Layer, Segment};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{Server, authed, create, experiment_json, flag_json, http_get};

async fn bootstrapped(db: &TestDb) -> (Server, String) {
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    let r = c
        .bootstrap(pb::BootstrapRequest {
            organization: "acme".into(),
            environment: "production".into(),
            token: String::new(),
        })
        .await
        .expect("bootstrap on an empty database")
        .into_inner();
    let secret = r.admin_key.unwrap().secret;
    assert!(secret.starts_with("cohort_admin_"));
    (server, secret)
}

#[tokio::test]
async fn bootstrap_is_once_without_a_token_and_guarded_with_one() {
    let db = TestDb::new().await;
    let (server, _) = bootstrapped(&db).await;
    let err = server
        .client()
        .await
        .bootstrap(pb::BootstrapRequest {
            organization: "evil".into(),
            environment: "production".into(),
            token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;

    let guarded = Server::start_with(&db.url, &["--bootstrap-token", "a-long-enough-token"]).await;
    let mut c = guarded.client().await;
    let wrong = pb::BootstrapRequest {
        organization: "second".into(),
        environment: "prod".into(),
        token: "nope".into(),
    };
    assert_eq!(c.bootstrap(wrong.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    // Same length but one byte off, and a prefix: both refused.
    for token in ["a-long-enough-tokeN", "a-long-enough-toke"] {
        let wrong = pb::BootstrapRequest { token: token.into(), ..wrong.clone() };
        assert_eq!(c.bootstrap(wrong).await.unwrap_err().code(), Code::PermissionDenied, "{token}");
    }
    let right = pb::BootstrapRequest {
        organization: "second".into(),
        environment: "prod".into(),
        token: "a-long-enough-token".into(),
    };
    assert!(c.bootstrap(right.clone()).await.is_ok());
    assert_eq!(c.bootstrap(right).await.unwrap_err().code(), Code::AlreadyExists);
    guarded.stop().await;
}

#[tokio::test]
async fn entities_crud_with_pagination_revisions_and_audit() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;

    for i in 0..5 {
        let w = create(&mut c, &admin, "production", Flag, flag_json(&format!("flag-{i}"), true)).await;
        assert_eq!(w.version, i + 1, "each write bumps the version by one");
        assert_eq!(w.entity.unwrap().revision, 1);
    }
    // Pages of two, in key order, until the token runs out.
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_entities(authed(
                &admin,
                pb::ListEntitiesRequest {
                    environment: "production".into(),
                    kind: Flag as i32,
                    page_size: 2,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        keys.extend(page.entities.into_iter().map(|e| e.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(keys, ["flag-0", "flag-1", "flag-2", "flag-3", "flag-4"]);

    let got = c
        .get_entity(authed(
            &admin,
            pb::GetEntityRequest {
                environment: "production".into(),
                kind: Flag as i32,
                key: "flag-2".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entity
        .unwrap();
    let updated = c
        .update_entity(authed(
            &admin,
            pb::UpdateEntityRequest {
                environment: "production".into(),
                kind: Flag as i32,
                key: "flag-2".into(),
                definition: cohort_proto::convert::structured::text_struct(&flag_json("flag-2", false)),
                expected_revision: got.revision,
                reason: "the new flow broke checkout".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.version, updated.entity.as_ref().unwrap().revision), (6, 2));

    let deleted = c
        .delete_entity(authed(
            &admin,
            pb::DeleteEntityRequest {
                environment: "production".into(),
                kind: Flag as i32,
                key: "flag-4".into(),
                expected_revision: 1,
                reason: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.version, 7);
    let missing = c
        .get_entity(authed(
            &admin,
            pb::GetEntityRequest {
                environment: "production".into(),
                kind: Flag as i32,
                key: "flag-4".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let audit = c
        .list_audit(authed(
            &admin,
            pb::ListAuditRequest {
                environment: "production".into(),
                key: "flag-2".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["update", "create"], "newest first");
    let update = &audit.entries[0];
    assert_eq!(update.actor_name, "bootstrap admin");
    assert_eq!(update.reason, "the new flow broke checkout");
    assert_eq!(update.version, 6);
    let (before, after) = (
        cohort_proto::convert::structured::to_json(update.before.as_ref()).unwrap(),
        cohort_proto::convert::structured::to_json(update.after.as_ref()).unwrap(),
    );
    assert_eq!(
        (&before["default"]["variation"], &after["default"]["variation"]),
        (&serde_json::json!("on"), &serde_json::json!("off")),
        "{before} → {after}"
    );

    let snapshot = c
        .get_snapshot(authed(&admin, pb::GetSnapshotRequest { environment: "production".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snapshot.version, 7);
    let defs: cohort_core::Definitions = serde_json::from_value(
        cohort_proto::convert::structured::to_json(snapshot.definitions.as_ref()).unwrap(),
    )
    .unwrap();
    assert_eq!(defs.flags.len(), 4);
    cohort_core::compile(&defs).expect("a snapshot always compiles");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_field_violations_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;
    let bad_weights = serde_json::json!({
        "key": "e", "variants": [{"key": "a", "weight_bp": 5000}, {"key": "b", "weight_bp": 4900}],
    });
    let err = c
        .create_entity(authed(
            &admin,
            pb::CreateEntityRequest {
                environment: "production".into(),
                kind: Experiment as i32,
                definition: cohort_proto::convert::structured::json_struct(&bad_weights),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let details = err.get_error_details();
    let violations = &details.bad_request().expect("bad request details").field_violations;
    assert_eq!(violations[0].field, "definition.variants[1].weight_bp");
    assert_eq!(violations[0].description, "weights sum to 9900, expected 10000");

    let mut not_a_number = cohort_proto::convert::structured::text_struct(&flag_json("f", true)).unwrap();
    not_a_number.fields.insert(
        "weight".into(),
        cohort_proto::convert::structured::Value {
            kind: Some(cohort_proto::convert::structured::Kind::NumberValue(f64::NAN)),
        },
    );
    for (kind, definition, field) in [
        (Flag as i32, None, "definition"),
        (Flag as i32, Some(not_a_number), "definition.weight"),
        (0, cohort_proto::convert::structured::text_struct(&flag_json("f", true)), "kind"),
        (
            Flag as i32,
            cohort_proto::convert::structured::text_struct(r#"{"key": "f", "type": "boolean"}"#),
            "definition",
        ),
    ] {
        let err = c
            .create_entity(authed(
                &admin,
                pb::CreateEntityRequest {
                    environment: "production".into(),
                    kind,
                    definition,
                    reason: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let details = err.get_error_details();
        let v = &details.bad_request().unwrap().field_violations[0];
        assert!(v.field.starts_with(field), "{} should start with {field}", v.field);
    }
    let snapshot = c
        .get_snapshot(authed(&admin, pb::GetSnapshotRequest { environment: "production".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snapshot.version, 0, "nothing was stored");
    assert_eq!(
        c.get_snapshot(authed("cohort_admin_bogus", pb::GetSnapshotRequest::default()))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.get_snapshot(pb::GetSnapshotRequest::default()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_writers_with_the_same_revision_one_wins() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;
    create(&mut c, &admin, "production", Flag, flag_json("contested", true)).await;
    let attempts = (0..8).map(|i| {
        let mut c = c.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            c.update_entity(authed(
                &admin,
                pb::UpdateEntityRequest {
                    environment: "production".into(),
                    kind: Flag as i32,
                    key: "contested".into(),
                    definition: cohort_proto::convert::structured::text_struct(&flag_json(
                        "contested",
                        i % 2 == 0,
                    )),
                    expected_revision: 1,
                    reason: String::new(),
                },
            ))
            .await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    let stale = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(s) if s.code() == Code::FailedPrecondition))
        .count();
    assert_eq!((ok, stale), (1, 7));
    let envs =
        c.list_environments(authed(&admin, pb::ListEnvironmentsRequest {})).await.unwrap().into_inner();
    assert_eq!(envs.environments[0].version, 2, "one create and one update: no gaps, no extra versions");
    server.stop().await;
}

#[tokio::test]
async fn experiment_lifecycle_refuses_illegal_moves() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;
    let created = create(&mut c, &admin, "production", Experiment, experiment_json("checkout")).await;
    let mut revision = created.entity.unwrap().revision;
    let move_to = |action: pb::ExperimentAction, expected_revision| {
        let mut c = c.clone();
        let admin = admin.clone();
        async move {
            c.transition_experiment(authed(
                &admin,
                pb::TransitionExperimentRequest {
                    environment: "production".into(),
                    key: "checkout".into(),
                    action: action as i32,
                    expected_revision,
                    reason: "test".into(),
                },
            ))
            .await
        }
    };
    assert_eq!(
        move_to(pb::ExperimentAction::Pause, revision).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    for action in [
        pb::ExperimentAction::Start,
        pb::ExperimentAction::Pause,
        pb::ExperimentAction::Resume,
        pb::ExperimentAction::Complete,
    ] {
        let w = move_to(action, revision).await.unwrap().into_inner();
        revision = w.entity.unwrap().revision;
    }
    assert_eq!(
        move_to(pb::ExperimentAction::Start, revision).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // A running experiment keeps its variants.
    let second =
        create(&mut c, &admin, "production", Experiment, experiment_json("second")).await.entity.unwrap();
    let started = c
        .transition_experiment(authed(
            &admin,
            pb::TransitionExperimentRequest {
                environment: "production".into(),
                key: "second".into(),
                action: pb::ExperimentAction::Start as i32,
                expected_revision: second.revision,
                reason: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entity
        .unwrap();
    let mut def: serde_json::Value =
        cohort_proto::convert::structured::to_json(started.definition.as_ref()).unwrap();
    def["variants"][0]["weight_bp"] = 6000.into();
    def["variants"][1]["weight_bp"] = 4000.into();
    let err = c
        .update_entity(authed(
            &admin,
            pb::UpdateEntityRequest {
                environment: "production".into(),
                kind: Experiment as i32,
                key: "second".into(),
                definition: cohort_proto::convert::structured::json_struct(&def),
                expected_revision: started.revision,
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("variants"), "{}", err.message());
    server.stop().await;
}

#[tokio::test]
async fn overlapping_layer_ranges_cannot_both_run() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;
    create(&mut c, &admin, "production", Experiment, experiment_json("first")).await;
    create(&mut c, &admin, "production", Experiment, experiment_json("second")).await;
    let layer = serde_json::json!({"key": "checkout-layer", "salt": "checkout-layer", "experiments": [
        {"experiment": "first", "range": [0, 6000]}, {"experiment": "second", "range": [5000, 10000]},
    ]});
    create(&mut c, &admin, "production", Layer, layer.to_string()).await;
    let start = |key: &'static str| {
        let mut c = c.clone();
        let admin = admin.clone();
        async move {
            c.transition_experiment(authed(
                &admin,
                pb::TransitionExperimentRequest {
                    environment: "production".into(),
                    key: key.into(),
                    action: pb::ExperimentAction::Start as i32,
                    expected_revision: 1,
                    reason: String::new(),
                },
            ))
            .await
        }
    };
    start("first").await.expect("the first one starts");
    let err = start("second").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("overlaps"), "{}", err.message());
    server.stop().await;
}

#[tokio::test]
async fn keys_are_created_once_listed_without_secrets_and_revoked() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;
    let created = c
        .create_api_key(authed(
            &admin,
            pb::CreateApiKeyRequest {
                kind: pb::KeyKind::Sdk as i32,
                name: "web".into(),
                environment: "production".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let sdk = created.secret.clone();
    assert!(sdk.starts_with("cohort_sdk_"));
    let listed = c
        .list_api_keys(authed(&admin, pb::ListApiKeysRequest { include_revoked: false }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys.len(), 2);
    let web = listed.keys.iter().find(|k| k.name == "web").unwrap();
    assert!(sdk.starts_with(&web.prefix) && web.prefix.len() < 24, "only a short prefix is listed");
    let stored: i64 = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM api_keys WHERE key_hash = sha256($1::text::bytea)", &[&sdk])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the key is stored as its SHA-256 only");

    // SDK keys read; they never write.
    let read = c.get_snapshot(authed(&sdk, pb::GetSnapshotRequest::default())).await;
    assert!(read.is_ok());
    let write = c
        .create_entity(authed(
            &sdk,
            pb::CreateEntityRequest {
                environment: "production".into(),
                kind: Flag as i32,
                definition: cohort_proto::convert::structured::text_struct(&flag_json("f", true)),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);

    c.revoke_api_key(authed(&admin, pb::RevokeApiKeyRequest { id: created.key.unwrap().id })).await.unwrap();
    // The auth cache trusts a verified key for a few seconds at most.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let after = c.get_snapshot(authed(&sdk, pb::GetSnapshotRequest::default())).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn http_config_has_etags_and_cache_headers() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let mut c = server.client().await;
    create(&mut c, &tenant.admin_key, "production", Segment, r#"{"key": "beta", "include": ["u1"]}"#.into())
        .await;
    let auth = format!("Bearer {}", tenant.sdk_key);
    let (status, headers, body) = http_get(server.http, "/api/v1/config", &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    let header =
        |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let etag = header("etag");
    assert_eq!(etag, format!("\"{}-1\"", tenant.environment_id));
    assert!(header("cache-control").starts_with("public, max-age="));
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["definitions"]["segments"][0]["key"], "beta");

    let (status, _, body) =
        http_get(server.http, "/api/v1/config", &[("Authorization", &auth), ("If-None-Match", &etag)]).await;
    assert_eq!((status, body.as_str()), (304, ""));
    create(&mut c, &tenant.admin_key, "production", Flag, flag_json("f", true)).await;
    // The hub learns of the change through LISTEN/NOTIFY.
    let mut fresh = (0, String::new());
    for _ in 0..50 {
        let (status, headers, _) =
            http_get(server.http, "/api/v1/config", &[("Authorization", &auth), ("If-None-Match", &etag)])
                .await;
        fresh =
            (status, headers.iter().find(|(k, _)| k == "etag").map(|(_, v)| v.clone()).unwrap_or_default());
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(fresh, (200, format!("\"{}-2\"", tenant.environment_id)));
    let (status, _, _) = http_get(server.http, "/api/v1/config", &[]).await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_loses_no_committed_change() {
    let db = TestDb::new().await;
    let (server, admin) = bootstrapped(&db).await;
    let mut c = server.client().await;
    create(&mut c, &admin, "production", Flag, flag_json("durable", true)).await;
    server.stop().await;
    let again = Server::start(&db.url).await;
    let snapshot = again
        .client()
        .await
        .get_snapshot(authed(&admin, pb::GetSnapshotRequest { environment: "production".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snapshot.version, 1);
    let defs = cohort_proto::convert::structured::to_json(snapshot.definitions.as_ref()).unwrap();
    assert!(defs.to_string().contains("\"durable\""), "{defs}");
    again.stop().await;
}

#[tokio::test]
async fn registers_with_consul_while_serving_and_deregisters_on_shutdown() {
    let db = TestDb::new().await;
    let consul = cohort_discovery::testing::FakeConsul::start().await;
    let server = Server::start_with(&db.url, &["--consul-http-addr", &consul.url()]).await;
    let mut registered = Vec::new();
    for _ in 0..50 {
        registered = consul.services();
        if !registered.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(registered.len(), 1, "registered once ready");
    let r = &registered[0];
    assert_eq!((r.name.as_str(), r.port), ("cohort-config", server.grpc.port()));
    assert_eq!(
        r.check.as_ref().unwrap().grpc,
        format!("127.0.0.1:{}/cohort.config.v1.ConfigService", server.grpc.port())
    );
    server.stop().await;
    assert!(consul.services().is_empty(), "deregistered on shutdown");
}
