//! `-o yaml` on every read command (the same document as `-o json`), formats a command cannot
//! print refused as a bad command line, and `flag enable|disable`.

use cohort_db::testing::TestDb;
use serde_json::Value;

use crate::{Server, ctl, version, write, yaml_value};

const DEFS: &str = "\
kind: metric
key: purchase
event: purchase
aggregation: conversion
---
kind: flag
key: new-checkout
type: string
salt: nc-1
description: \"Checkout: the rewrite\"
variations:
  - {key: a, value: alpha}
  - {key: b, value: beta}
off_variation: a
default: {variation: b}
";

#[tokio::test]
async fn every_read_command_prints_yaml_that_reads_as_its_json() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "defs.yaml", DEFS);
    ctl(&server, key, &["apply", "-f", &file]).await.ok();

    for command in [
        &["get", "flag", "new-checkout"][..],
        &["list"],
        &["list", "metrics"],
        &["audit"],
        &["snapshot"],
        &["env", "list"],
    ] {
        let json = ctl(&server, key, &[command, &["-o", "json"]].concat()).await.json();
        let yaml = ctl(&server, key, &[command, &["-o", "yaml"]].concat()).await;
        assert!(
            serde_json::from_str::<Value>(yaml.ok()).is_err(),
            "{command:?}: YAML, not JSON:\n{}",
            yaml.out
        );
        assert_eq!(yaml_value(yaml.ok()), json, "{command:?}:\n{}", yaml.out);
    }
    // The YAML of `get` reads back through apply, unchanged.
    let yaml = ctl(&server, key, &["get", "flag", "new-checkout", "-o", "yaml"]).await;
    assert!(yaml.ok().starts_with("kind: flag\nkey: new-checkout\n"), "{}", yaml.out);
    let again = write(dir.path(), "again.yaml", yaml.ok());
    assert!(ctl(&server, key, &["apply", "-f", &again]).await.ok().contains("flag/new-checkout unchanged"));

    // Keys are used as they are listed (last used), propagation moves: compare the stable parts.
    let keys = yaml_value(ctl(&server, key, &["keys", "list", "-o", "yaml"]).await.ok());
    let json = ctl(&server, key, &["keys", "list", "-o", "json"]).await.json();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|k| k["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&keys), ids(&json));
    assert_eq!(keys[0]["kind"], json[0]["kind"]);
    let p = yaml_value(ctl(&server, key, &["propagation", "-o", "yaml"]).await.ok());
    assert_eq!(p["environment"], "production");
    assert_eq!(p["version"], version(&server, &tenant.admin_key).await);
    server.stop().await;
}

#[tokio::test]
async fn a_format_the_command_cannot_print_is_a_bad_command_line() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    for (args, says) in [
        (&["list", "-o", "csv"][..], "-o csv is for `results` only"),
        (&["env", "create", "x", "-o", "yaml"], "-o yaml is for the read commands"),
        (&["apply", "-f", "x.yaml", "-o", "yaml"], "-o yaml is for the read commands"),
        (&["flag", "enable", "x", "-o", "csv"], "-o csv is for `results` only"),
        (&["completion", "bash", "-o", "json"], "-o json is not for the completion command"),
        (&["list", "-o", "flagd"], "-o flagd prints flags"),
    ] {
        let ran = ctl(&server, key, args).await;
        let error = ran.error();
        assert!(error.starts_with(says), "{args:?}: {error}");
        assert!(!error.contains('\n'), "one line: {error}");
        assert_eq!(ran.result.as_ref().unwrap_err().exit_code(), 2, "{args:?}");
        assert!(ran.out.is_empty(), "{args:?}");
    }
    assert_eq!(version(&server, &tenant.admin_key).await, 0, "nothing was done");
    server.stop().await;
}

#[tokio::test]
async fn flags_are_enabled_and_disabled_at_the_revision_read() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "defs.yaml", DEFS);
    ctl(&server, key, &["apply", "-f", &file]).await.ok();
    let get = || async { ctl(&server, key, &["get", "flag", "new-checkout", "-o", "json"]).await.json() };
    assert_eq!(get().await["enabled"], true);
    let v = version(&server, &tenant.admin_key).await;

    let off = ctl(&server, key, &["flag", "disable", "new-checkout", "--reason", "checkout errors"]).await;
    assert_eq!(off.ok(), format!("flag/new-checkout disabled [version {}]\n", v + 1));
    assert!(off.err.is_empty(), "{}", off.err);
    let flag = get().await;
    assert_eq!(flag["enabled"], false);
    assert_eq!(flag["description"], "Checkout: the rewrite", "everything else kept");
    let audit =
        ctl(&server, key, &["audit", "--kind", "flag", "--key", "new-checkout", "-o", "json"]).await.json();
    assert_eq!(audit[0]["action"], "update");
    assert_eq!(audit[0]["after"]["enabled"], false);
    assert_eq!(audit[0]["reason"], "checkout errors");

    let again = ctl(&server, key, &["flag", "disable", "new-checkout"]).await;
    assert_eq!(again.ok(), "flag/new-checkout already disabled\n");
    assert!(again.err.is_empty(), "{}", again.err);
    assert_eq!(version(&server, &tenant.admin_key).await, v + 1, "no write for no change");

    let on = ctl(&server, key, &["flag", "enable", "new-checkout", "-o", "json"]).await.json();
    assert_eq!((on["result"].as_str(), on["version"].as_u64()), (Some("enabled"), Some(v + 2)));
    assert_eq!(get().await["enabled"], true);

    let missing = ctl(&server, key, &["flag", "enable", "nope"]).await;
    assert!(missing.error().contains("flag \"nope\" does not exist"), "{}", missing.error());
    assert!(ctl(&server, key, &["flag", "disable", "purchase"]).await.error().contains("does not exist"));
    server.stop().await;
}
