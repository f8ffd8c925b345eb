//! Every command other than `apply`: bootstrap, environments, keys, get/list/delete, the
//! lifecycle, audit, snapshot and propagation.

use cohort_db::testing::TestDb;

use crate::{Server, ctl, write};

const EXPERIMENT: &str = "\
kind: experiment
key: checkout-button
variants:
  - {key: control, weight_bp: 5000, control: true}
  - {key: green, weight_bp: 5000}
";

const FLAG: &str = "\
kind: flag
key: new-checkout
type: string
salt: nc-1
variations:
  - {key: a, value: alpha}
  - {key: b, value: beta}
off_variation: a
rules:
  - condition: {op: semver_gte, attribute: app_version, value: 2.1.0}
    serve: {variation: b}
default: {variation: a}
";

#[tokio::test]
async fn bootstrap_then_environments_snapshot_and_propagation() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url).await;

    let boot = ctl(&server, None, &["bootstrap", "--organization", "acme", "-e", "production"]).await;
    let out = boot.ok();
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("cohort_admin_"), "{out}");
    assert!(boot.err.contains("shown once"), "{}", boot.err);
    assert!(out.contains("organization acme created"), "{out}");
    let key = Some(secret.as_str());

    // A second bootstrap is refused, with the server's reason.
    let again = ctl(&server, None, &["bootstrap", "--organization", "evil"]).await;
    assert!(again.error().contains("permission denied: already bootstrapped"), "{}", again.error());

    // Commands that need a key say so before calling.
    assert!(ctl(&server, None, &["env", "list"]).await.error().contains("no API key"));

    let created = ctl(&server, key, &["env", "create", "staging", "--name", "Staging"]).await;
    assert!(created.ok().contains("environment staging created"), "{}", created.out);
    let listed = ctl(&server, key, &["env", "list"]).await;
    let out = listed.ok();
    assert!(out.starts_with("KEY"), "{out}");
    assert!(out.contains("production") && out.contains("Staging"), "{out}");
    let envs = ctl(&server, key, &["env", "list", "-o", "json"]).await.json();
    assert_eq!(envs.as_array().unwrap().len(), 2);
    assert_eq!(envs[0]["cors_origins"], serde_json::json!([]));
    let bad = ctl(&server, key, &["env", "create", "Not Valid"]).await;
    assert!(bad.error().contains("key: must be 1 to 64 characters"), "{}", bad.error());

    // Browser origins: set on create, replaced and cleared on update, checked by the server.
    let web = ctl(&server, key, &["env", "create", "web", "--cors-origin", "https://app.example.com"]).await;
    assert!(web.ok().contains("browser origins: https://app.example.com"), "{}", web.out);
    let updated = ctl(
        &server,
        key,
        &["env", "update", "web", "--cors-origin", "https://a.example,http://localhost:5173", "-o", "json"],
    )
    .await
    .json();
    assert_eq!(updated["cors_origins"], serde_json::json!(["https://a.example", "http://localhost:5173"]));
    let bad = ctl(&server, key, &["env", "update", "web", "--cors-origin", "https://a.example/"]).await;
    assert!(bad.error().contains("cors_origins.origins[0]"), "{}", bad.error());
    let cleared = ctl(&server, key, &["env", "update", "web", "--no-cors-origins"]).await;
    assert!(cleared.ok().contains("browser origins: none"), "{}", cleared.out);
    assert!(ctl(&server, key, &["env", "update", "web"]).await.error().contains("give --name"));
    let client =
        ctl(&server, key, &["keys", "create", "--kind", "client", "--name", "site", "-e", "web"]).await;
    assert!(client.ok().contains("cohort_client_"), "{}", client.out);

    // Snapshot of an empty environment parses as Definitions; then with one flag.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "flag.yaml", FLAG);
    ctl(&server, key, &["apply", "-f", &file, "-e", "staging"]).await.ok();
    let snap = ctl(&server, key, &["snapshot", "-e", "staging"]).await.json();
    let defs: cohort_core::model::Definitions = serde_json::from_value(snap).unwrap();
    assert_eq!(defs.version, 1);
    assert_eq!(defs.flags[0].key, "new-checkout");
    let empty = ctl(&server, key, &["snapshot"]).await.json();
    assert_eq!(empty["flags"], serde_json::json!([]));

    let prop = ctl(&server, key, &["propagation", "-e", "staging", "-o", "json"]).await.json();
    assert_eq!(prop["version"], 1);
    assert_eq!(prop["connected"], 0);
    let table = ctl(&server, key, &["propagation", "1", "-e", "staging"]).await;
    assert!(table.ok().contains("acknowledged"), "{}", table.out);
    server.stop().await;
}

#[tokio::test]
async fn keys_create_list_and_revoke() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());

    let sdk = ctl(
        &server,
        key,
        &["keys", "create", "--kind", "sdk", "--name", "web", "--environment", "production"],
    )
    .await;
    let out = sdk.ok();
    assert!(out.contains("sdk key \"web\" created for environment production"), "{out}");
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("cohort_sdk_"), "{out}");
    assert!(sdk.err.contains("shown once"));

    let admin =
        ctl(&server, key, &["keys", "create", "--kind", "admin", "--name", "ci", "-o", "json"]).await.json();
    assert_eq!(admin["kind"], "admin");
    assert!(admin["secret"].as_str().unwrap().starts_with("cohort_admin_"));
    assert!(admin["environment"].is_null());

    // A scoped admin key: read-only, one environment, expiring.
    let scoped = ctl(
        &server,
        key,
        &[
            "keys",
            "create",
            "--kind",
            "admin",
            "--name",
            "auditor",
            "--read-only",
            "--only-env",
            "production",
            "--expires-in",
            "90d",
        ],
    )
    .await;
    assert!(scoped.ok().contains("created for only production, read-only, expires 20"), "{}", scoped.out);
    let auditor = scoped.out.lines().last().unwrap().to_owned();
    let refused = ctl(&server, Some(&auditor), &["env", "create", "staging"]).await;
    assert!(refused.error().contains("read-only"), "{}", refused.error());
    let bad =
        ctl(&server, key, &["keys", "create", "--kind", "admin", "--name", "x", "--only-env", "nowhere"])
            .await;
    assert!(bad.error().contains("environments[0]"), "{}", bad.error());

    let list = ctl(&server, key, &["keys", "list", "-o", "json"]).await.json();
    let listed = list.as_array().unwrap().iter().find(|k| k["name"] == "auditor").unwrap().clone();
    assert_eq!(
        (listed["read_only"].as_bool(), listed["environments"][0].as_str()),
        (Some(true), Some("production"))
    );
    assert!(listed["expires_at_ms"].as_i64().unwrap() > 0);
    let web =
        list.as_array().unwrap().iter().find(|k| k["name"] == "web").expect("the new key is listed").clone();
    assert_eq!(web["environment"], "production");
    assert!(!secret.is_empty() && !list.to_string().contains(&secret), "secrets are never listed");
    let table = ctl(&server, key, &["keys", "list"]).await;
    assert!(table.ok().contains("web") && table.out.starts_with("ID"), "{}", table.out);

    // The SDK key reads; it may not write.
    let read = ctl(&server, Some(&secret), &["list"]).await;
    read.ok();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "flag.yaml", FLAG);
    let denied = ctl(&server, Some(&secret), &["apply", "-f", &file]).await;
    assert!(denied.error().contains("permission denied"), "{}", denied.error());

    let id = web["id"].as_str().unwrap();
    let revoked = ctl(&server, key, &["keys", "revoke", id]).await;
    assert!(revoked.ok().contains("revoked"), "{}", revoked.out);
    let active = ctl(&server, key, &["keys", "list", "-o", "json"]).await.json();
    assert!(!active.as_array().unwrap().iter().any(|k| k["id"] == id));
    let all = ctl(&server, key, &["keys", "list", "--all", "-o", "json"]).await.json();
    let gone = all.as_array().unwrap().iter().find(|k| k["id"] == id).unwrap().clone();
    assert!(gone["revoked_at_ms"].as_i64().unwrap() > 0);
    // The server trusts a verified key for up to 5 s (its auth cache) before it sees a revocation.
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    let rejected = ctl(&server, Some(&secret), &["list"]).await;
    assert!(rejected.error().contains("unauthenticated"), "{}", rejected.error());
    server.stop().await;
}

#[tokio::test]
async fn get_list_delete_and_the_audit_log() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "both.yaml", &format!("{FLAG}---\n{EXPERIMENT}"));
    ctl(&server, key, &["apply", "-f", &file]).await.ok();

    // `get` prints YAML with `kind:` first, which applies back unchanged.
    let got = ctl(&server, key, &["get", "flag", "new-checkout"]).await;
    let yaml = got.ok();
    assert!(yaml.starts_with("# flag new-checkout in production: revision 1"), "{yaml}");
    assert!(yaml.contains("\nkind: flag\nkey: new-checkout\ntype: string\n"), "{yaml}");
    let round = write(dir.path(), "round.yaml", yaml);
    let again = ctl(&server, key, &["apply", "-f", &round]).await;
    assert!(again.ok().contains("flag/new-checkout unchanged"), "{}", again.out);
    let json = ctl(&server, key, &["get", "experiment", "checkout-button", "-o", "json"]).await.json();
    assert_eq!(json["kind"], "experiment");
    assert_eq!(json["status"], "draft");
    assert!(json["id"].as_str().unwrap().len() == 36, "the server assigned an id");

    let listed = ctl(&server, key, &["list"]).await;
    let out = listed.ok();
    assert!(out.starts_with("KIND"), "{out}");
    assert!(out.contains("string, enabled, 1 rule"), "{out}");
    assert!(out.contains("draft, 2 variants"), "{out}");
    let flags = ctl(&server, key, &["list", "flags", "-o", "json"]).await.json();
    assert_eq!(flags.as_array().unwrap().len(), 1);

    let deleted = ctl(&server, key, &["delete", "flag", "new-checkout"]).await;
    // The apply above wrote both entities as one version.
    assert!(deleted.ok().contains("flag/new-checkout deleted [version 2]"), "{}", deleted.out);
    let missing = ctl(&server, key, &["get", "flag", "new-checkout"]).await;
    assert!(missing.error().contains("flag \"new-checkout\" does not exist"), "{}", missing.error());
    let missing = ctl(&server, key, &["delete", "segment", "nope"]).await;
    assert!(missing.error().contains("does not exist"), "{}", missing.error());

    let audit = ctl(&server, key, &["audit", "--kind", "flag", "-o", "json"]).await.json();
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "create"], "newest first");
    assert_eq!(audit[1]["after"]["key"], "new-checkout");
    let table = ctl(&server, key, &["audit"]).await;
    let out = table.ok();
    assert!(out.starts_with("TIME"), "{out}");
    assert!(out.contains("experiment/checkout-button"), "{out}");
    let limited = ctl(&server, key, &["audit", "--limit", "1", "-o", "json"]).await.json();
    assert_eq!(limited.as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn lifecycle_commands_move_experiments_and_refuse_illegal_moves() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "exp.yaml", EXPERIMENT);
    ctl(&server, key, &["apply", "-f", &file]).await.ok();

    let started = ctl(&server, key, &["start", "checkout-button"]).await;
    assert!(started.ok().contains("experiment/checkout-button started"), "{}", started.out);
    let twice = ctl(&server, key, &["start", "checkout-button"]).await;
    let e = twice.error();
    assert!(e.contains("failed precondition") && e.contains("it is running"), "{e}");
    ctl(&server, key, &["pause", "checkout-button", "--reason", "guardrail breached"]).await.ok();
    ctl(&server, key, &["resume", "checkout-button"]).await.ok();
    let done = ctl(&server, key, &["complete", "checkout-button", "--reason", "shipped green", "-o", "json"])
        .await
        .json();
    assert_eq!(done["result"], "completed");
    let again = ctl(&server, key, &["resume", "checkout-button"]).await;
    assert!(again.error().contains("it is completed"), "{}", again.error());
    let missing = ctl(&server, key, &["start", "nope"]).await;
    assert!(missing.error().contains("experiment \"nope\" does not exist"), "{}", missing.error());

    let audit = ctl(&server, key, &["audit", "--key", "checkout-button", "-o", "json"]).await.json();
    let entries = audit.as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["complete", "resume", "pause", "start", "create"]);
    assert_eq!(entries[2]["reason"], "guardrail breached");
    assert_eq!(entries[0]["reason"], "shipped green");
    assert_eq!(entries[0]["after"]["status"], "completed");

    // Live experiments cannot be deleted; completed ones can.
    let deleted = ctl(&server, key, &["delete", "experiment", "checkout-button"]).await;
    deleted.ok();
    server.stop().await;
}

#[tokio::test]
async fn service_key_create_makes_a_key_the_config_service_accepts_from_its_hash() {
    use cohort_dev::stack::{Instance, Ports, Service};
    use cohort_proto::config::v1 as pb;
    use cohort_proto::config::v1::internal_service_client::InternalServiceClient;

    let db = TestDb::new().await;
    let server = Server::start(&db.url).await;
    // Offline: no API key, and the endpoint is not used.
    let made = ctl(&server, None, &["-o", "json", "service-key", "create", "cohort-analysis"]).await.json();
    let (secret, entry) = (made["secret"].as_str().unwrap(), made["service_keys_entry"].as_str().unwrap());
    assert!(secret.starts_with("cohort_service_"), "{made}");
    assert!(entry.starts_with("cohort-analysis=") && !entry.contains(secret), "{made}");
    let bad = ctl(&server, None, &["service-key", "create", "no/slashes"]).await;
    assert!(bad.error().contains("service-key name"), "{}", bad.error());

    let config = Instance::start(
        Service::Config,
        &[("--database-url", &db.url), ("--service-keys", entry)],
        Ports::Any,
    )
    .await
    .unwrap();
    let mut internal = InternalServiceClient::connect(config.addrs().grpc_url()).await.unwrap();
    let as_service = cohort_dev::testing::authed(secret, pb::ListRunningRequest {});
    internal.list_running(as_service).await.expect("the new key is a service key");
    let other = cohort_db::keys::generate(cohort_db::keys::KeyKind::Service).secret;
    let refused = internal.list_running(cohort_dev::testing::authed(&other, pb::ListRunningRequest {})).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    config.stop().await.unwrap();
    server.stop().await;
}
