//! `apply`: creating a realistic environment, idempotence, single-field updates, dry runs,
//! and errors that point at the file and line.

use cohort_ctl::Outcome;
use cohort_db::testing::TestDb;

use crate::{Server, ctl, line_of, version, write};

const METRICS: &str = "\
kind: metric
key: checkout-conversion
event: purchase
aggregation: conversion
description: Bought something after exposure
";

const CHECKOUT: &str = "\
# The checkout team's flags and experiments.
kind: segment
key: staff
condition:
  op: ends_with
  attribute: email
  value: '@example.com'
include: [qa-1, qa-2]
---
kind: flag
key: new-checkout
type: boolean
salt: new-checkout-1
description: The rewritten checkout
variations:
  - key: on
    value: true
  - key: off
    value: false
off_variation: off
rules:
  - id: staff-first
    condition: {op: in_segment, segment: staff}
    serve: {variation: on}
  - condition: {op: in, attribute: country, values: [NZ, AU]}
    serve:
      split:
        - {variation: on, weight_bp: 5000}
        - {variation: off, weight_bp: 5000}
default:
  variation: off
---
kind: experiment
key: checkout-button
status: running
primary_metrics: [checkout-conversion]
variants:
  - key: control
    weight_bp: 5000
    control: true
    payload: {color: grey}
  - key: green
    weight_bp: 5000
    payload: {color: green}
---
kind: experiment
key: checkout-copy
description: Not started yet
variants:
  - {key: control, weight_bp: 5000, control: true}
  - {key: short, weight_bp: 5000}
---
kind: layer
key: checkout
salt: checkout-layer-1
experiments:
  - {experiment: checkout-button, range: [0, 5000]}
  - {experiment: checkout-copy, range: [5000, 10000]}
";

fn status_of(definition: &serde_json::Value) -> &str {
    definition["definition"]["status"].as_str().unwrap_or("?")
}

#[tokio::test]
async fn apply_creates_everything_is_idempotent_and_updates_only_what_changed() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "metrics.yaml", METRICS);
    let checkout = write(dir.path(), "checkout.yaml", CHECKOUT);
    let dir_arg = dir.path().display().to_string();

    // A dry run plans everything and writes nothing.
    let dry = ctl(&server, key, &["apply", "-f", &dir_arg, "--dry-run"]).await;
    assert!(dry.ok().contains("experiment/checkout-button started"), "{}", dry.out);
    assert!(dry.out.contains("dry run: nothing was written"), "{}", dry.out);
    assert_eq!(version(&server, &tenant.admin_key).await, 0);

    let first = ctl(&server, key, &["apply", "-f", &dir_arg]).await;
    let out = first.ok();
    for line in [
        "metric/checkout-conversion created",
        "segment/staff created",
        "flag/new-checkout created",
        "experiment/checkout-button created",
        "experiment/checkout-copy created",
        "layer/checkout created",
        "experiment/checkout-button started",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Dependency order: the metric before the experiment that names it, the layer before the
    // start of the experiment it holds.
    let at = |s: &str| out.find(s).unwrap();
    assert!(at("metric/checkout-conversion") < at("experiment/checkout-button created"));
    assert!(at("segment/staff") < at("flag/new-checkout"));
    assert!(at("layer/checkout created") < at("experiment/checkout-button started"));
    assert!(out.contains("6 created, 1 started"), "{out}");
    let after_first = version(&server, &tenant.admin_key).await;
    assert_eq!(after_first, 1, "six creates and one start, as one batch: one version");
    assert!(out.contains("experiment/checkout-button started [version 1]"), "{out}");

    let listed = ctl(&server, key, &["list", "experiment", "-o", "json"]).await.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let by_key = |k: &str| listed.iter().find(|e| e["key"] == k).unwrap();
    assert_eq!(status_of(by_key("checkout-button")), "running");
    assert_eq!(status_of(by_key("checkout-copy")), "draft");

    // The same files again: nothing to do, and nothing written.
    let again = ctl(&server, key, &["apply", "-f", &dir_arg]).await;
    assert_eq!(
        again.ok().lines().filter(|l| l.contains('/') && l.ends_with(" unchanged")).count(),
        6,
        "{}",
        again.out
    );
    assert!(again.out.contains("6 unchanged"), "{}", again.out);
    assert!(!again.out.contains("created") && !again.out.contains("updated"), "{}", again.out);
    assert_eq!(version(&server, &tenant.admin_key).await, after_first, "an unchanged apply writes nothing");

    // One field edited: exactly that entity is updated, at one new version.
    let edited = CHECKOUT.replace("description: The rewritten checkout", "description: The new checkout");
    std::fs::write(&checkout, edited).unwrap();
    let third = ctl(&server, key, &["apply", "-f", &dir_arg, "-o", "json"]).await.json();
    let results = third["results"].as_array().unwrap();
    let changed: Vec<_> = results.iter().filter(|r| r["result"] != "unchanged").collect();
    assert_eq!(changed.len(), 1, "{third:#}");
    assert_eq!(changed[0]["kind"], "flag");
    assert_eq!(changed[0]["key"], "new-checkout");
    assert_eq!(changed[0]["result"], "updated");
    assert_eq!(changed[0]["fields"], serde_json::json!(["description"]));
    assert_eq!(version(&server, &tenant.admin_key).await, after_first + 1);

    // The desired status moves a running experiment along the legal path, alone.
    let paused = CHECKOUT.replace("status: running", "status: paused");
    std::fs::write(
        &checkout,
        paused.replace("description: The rewritten checkout", "description: The new checkout"),
    )
    .unwrap();
    let fourth = ctl(&server, key, &["apply", "-f", &checkout]).await;
    assert!(fourth.ok().contains("experiment/checkout-button paused"), "{}", fourth.out);
    assert!(!fourth.out.contains("updated"), "{}", fourth.out);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_weight_sum_names_the_file_line_and_field_and_writes_nothing() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();

    let bad = format!(
        "{METRICS}---\nkind: experiment\nkey: checkout-button\nvariants:\n  - key: control\n    weight_bp: 5000\n  - key: green\n    weight_bp: 4000 # the bad one\n"
    );
    let file = write(dir.path(), "bad.yaml", &bad);
    let line = line_of(&bad, "the bad one");
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)), "{:?}", ran.result);
    let expected = format!(
        "{file}:{line}: experiment checkout-button: variants[1].weight_bp: weights sum to 9000, expected 10000"
    );
    assert!(ran.err.contains(&expected), "expected {expected:?} in:\n{}", ran.err);
    assert!(ran.err.contains("nothing was written"), "{}", ran.err);
    assert_eq!(version(&server, &tenant.admin_key).await, 0, "the metric was not written either");

    // The server says the same, at the same line, when local validation is skipped.
    let alone = bad.split("---\n").nth(1).unwrap().to_owned();
    let file = write(dir.path(), "alone.yaml", &alone);
    let line = line_of(&alone, "the bad one");
    let ran = ctl(&server, key, &["apply", "-f", &file, "--server-validation-only"]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)), "{:?}", ran.result);
    let expected = format!(
        "{file}:{line}: experiment checkout-button: variants[1].weight_bp: weights sum to 9000, expected 10000"
    );
    assert!(ran.err.contains(&expected), "expected {expected:?} in:\n{}", ran.err);
    assert!(ran.out.contains("experiment/checkout-button failed"), "{}", ran.out);
    assert_eq!(version(&server, &tenant.admin_key).await, 0);

    // YAML that does not parse: file and line, nothing sent.
    let broken = "kind: flag\nkey: broken\nvariations:\n  - key: on\n    value: [true\n  - key: off\n";
    let file = write(dir.path(), "broken.yaml", broken);
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)));
    let reported =
        ran.err.lines().find(|l| l.starts_with(&format!("{file}:"))).unwrap_or_else(|| panic!("{}", ran.err));
    assert!(reported.contains("invalid YAML"), "{reported}");
    let line: usize = reported[file.len() + 1..].split(':').next().unwrap().parse().unwrap();
    assert!((5..=6).contains(&line), "the error is at the unclosed list: {reported}");

    // A field the model does not know, in a JSON file.
    let json = "{\n  \"kind\": \"segment\",\n  \"key\": \"staff\",\n  \"members\": [\"a\"]\n}\n";
    let file = write(dir.path(), "segment.json", json);
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(
        ran.err.contains(&format!("{file}:4: segment staff: members: unknown field `members`")),
        "{}",
        ran.err
    );
    assert_eq!(version(&server, &tenant.admin_key).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn impossible_lifecycle_moves_and_conflicts_are_refused_clearly() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let exp = "kind: experiment\nkey: e1\nstatus: completed\nvariants:\n  - {key: a, weight_bp: 5000}\n  - {key: b, weight_bp: 5000}\n";
    let file = write(dir.path(), "e1.yaml", exp);
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    let out = ran.ok();
    assert!(
        out.contains("experiment/e1 created") && out.contains("started") && out.contains("completed"),
        "{out}"
    );

    std::fs::write(&file, exp.replace("completed", "running")).unwrap();
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)));
    assert!(
        ran.err.contains(&format!("{file}:3: experiment e1: status: cannot move from completed to running")),
        "{}",
        ran.err
    );

    // Two files defining the same entity are ambiguous.
    let other = write(dir.path(), "copy.yaml", exp);
    let ran = ctl(&server, key, &["apply", "-f", &file, "-f", &other]).await;
    assert!(
        ran.err.contains(&format!("{other}:1: experiment e1: defined twice; first at {file}:1")),
        "{}",
        ran.err
    );

    // Overlapping live ranges in a layer: the layer's line and field.
    let layered = "\
kind: experiment
key: x
status: running
variants: [{key: a, weight_bp: 5000}, {key: b, weight_bp: 5000}]
---
kind: experiment
key: y
status: running
variants: [{key: a, weight_bp: 5000}, {key: b, weight_bp: 5000}]
---
kind: layer
key: main
salt: main-1
experiments:
  - {experiment: x, range: [0, 6000]}
  - {experiment: y, range: [5000, 10000]}
";
    let file = write(dir.path(), "layer.yaml", layered);
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)));
    let line = line_of(layered, "range: [5000");
    assert!(ran.err.contains(&format!("{file}:{line}: layer main: experiments[1]")), "{}", ran.err);
    server.stop().await;
}

#[tokio::test]
async fn whole_environment_documents_round_trip_through_snapshot() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "metrics.yaml", METRICS);
    write(dir.path(), "checkout.yaml", CHECKOUT);
    ctl(&server, key, &["apply", "-f", &dir.path().display().to_string()]).await.ok();

    // The snapshot is a whole-environment document: applying it changes nothing.
    let snapshot = ctl(&server, key, &["snapshot"]).await;
    let file = write(dir.path(), "snapshot.json", snapshot.ok());
    let before = version(&server, &tenant.admin_key).await;
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(ran.ok().contains("6 unchanged"), "{}", ran.out);
    assert_eq!(version(&server, &tenant.admin_key).await, before);

    // From stdin, as YAML: a new flag in a whole-environment document.
    let doc = "flags:\n  - key: dark-mode\n    type: boolean\n    salt: dm\n    variations: [{key: on, value: true}, {key: off, value: false}]\n    off_variation: off\n    default: {variation: off}\n";
    let ran = crate::ctl_with_input(&server, key, &["apply", "-f", "-"], doc).await;
    assert!(ran.ok().contains("flag/dark-mode created"), "{}", ran.out);
    server.stop().await;
}

#[tokio::test]
async fn a_file_applies_as_one_version_or_not_at_all() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();

    // A metric, a segment, then a flag with a NUL the store cannot hold: refused with the
    // field, locally and by the server, and the metric and segment are not written either.
    let nul = "kind: metric\nkey: m\nevent: buy\naggregation: count\n---\nkind: segment\nkey: s\ninclude: [u1]\n---\nkind: flag\nkey: f\ntype: string\nsalt: f1\nvariations:\n  - {key: a, value: \"x\\0y\"} # the bad one\n  - {key: b, value: \"z\"}\noff_variation: b\ndefault: {variation: a}\n";
    let file = write(dir.path(), "nul.yaml", nul);
    let line = line_of(nul, "the bad one");
    for extra in [None, Some("--server-validation-only")] {
        let mut args = vec!["apply", "-f", &file];
        args.extend(extra);
        let ran = ctl(&server, key, &args).await;
        assert!(matches!(ran.result, Ok(Outcome::Failed)), "{extra:?}: {:?}", ran.result);
        let expected = format!(
            "{file}:{line}: flag f: variations[0].value: contains a NUL character (\\u0000), which cannot be stored"
        );
        assert!(ran.err.contains(&expected), "{extra:?}: expected {expected:?} in:\n{}", ran.err);
        assert!(ran.err.contains("nothing was written"), "{}", ran.err);
        assert_eq!(version(&server, &tenant.admin_key).await, 0, "{extra:?}: nothing was stored");
    }

    // A JSON file with a key written twice: refused with the key and its line.
    let twice = "{\"kind\": \"flag\", \"key\": \"g\", \"type\": \"boolean\", \"salt\": \"g1\",\n \"enabled\": true,\n \"enabled\": false,\n \"variations\": [{\"key\": \"on\", \"value\": true}, {\"key\": \"off\", \"value\": false}],\n \"off_variation\": \"off\", \"default\": {\"variation\": \"on\"}}\n";
    let json = write(dir.path(), "twice.json", twice);
    let ran = ctl(&server, key, &["apply", "-f", &json]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)));
    assert!(ran.err.contains(&format!("{json}:3: enabled: duplicate key \"enabled\"")), "{}", ran.err);
    assert_eq!(version(&server, &tenant.admin_key).await, 0);

    // Fixed: the whole file is one version, and experiments without an id in the file keep
    // the one the server gave them on the next apply.
    let good = format!(
        "{}---\nkind: experiment\nkey: e\nstatus: running\nvariants: [{{key: a, weight_bp: 5000}}, {{key: b, weight_bp: 5000}}]\n",
        nul.replace("\"x\\0y\"", "\"xy\"")
    );
    let file = write(dir.path(), "good.yaml", &good);
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(ran.ok().contains("4 created, 1 started"), "{}", ran.out);
    assert_eq!(version(&server, &tenant.admin_key).await, 1, "four entities and a start: one version");
    let id = ctl(&server, key, &["get", "experiment", "e", "-o", "json"]).await.json()["id"].clone();
    let edited = good.replace("status: running", "status: running\ndescription: edited");
    std::fs::write(&file, edited).unwrap();
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(ran.ok().contains("experiment/e updated (description) [version 2]"), "{}", ran.out);
    assert_eq!(ctl(&server, key, &["get", "experiment", "e", "-o", "json"]).await.json()["id"], id);
    server.stop().await;
}

#[tokio::test]
async fn holdouts_apply_keep_their_id_and_list_and_get() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "metrics.yaml", METRICS);
    write(dir.path(), "checkout.yaml", CHECKOUT);
    // A whole-environment document holding a holdout of the checkout layer.
    let holdouts = "\
holdouts:
  - key: checkout-holdout
    share_bp: 500
    layers: [checkout]
    metrics: [checkout-conversion]
";
    let file = write(dir.path(), "holdouts.yaml", holdouts);
    let dir_arg = dir.path().display().to_string();

    let first = ctl(&server, key, &["apply", "-f", &dir_arg]).await;
    let out = first.ok();
    assert!(out.contains("holdout/checkout-holdout created"), "{out}");
    assert!(out.find("layer/checkout created") < out.find("holdout/checkout-holdout created"), "{out}");
    let got = ctl(&server, key, &["get", "holdout", "checkout-holdout", "-o", "json"]).await.json();
    assert_eq!(got["kind"], "holdout");
    let id = got["id"].as_str().expect("the server assigned an id").to_owned();

    // Again: unchanged, though the file has no id.
    let again = ctl(&server, key, &["apply", "-f", &dir_arg]).await;
    assert!(again.ok().contains("holdout/checkout-holdout unchanged"), "{}", again.out);

    // One field edited: updated, the id kept.
    let described = holdouts.replace("share_bp: 500", "share_bp: 500\n    description: all of checkout");
    std::fs::write(&file, &described).unwrap();
    let edited = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(edited.ok().contains("holdout/checkout-holdout updated (description)"), "{}", edited.out);
    let got = ctl(&server, key, &["get", "holdouts", "checkout-holdout", "-o", "json"]).await.json();
    assert_eq!(
        (got["id"].as_str(), got["description"].as_str()),
        (Some(id.as_str()), Some("all of checkout"))
    );

    // Who is held out does not change while it is enabled.
    std::fs::write(&file, described.replace("share_bp: 500", "share_bp: 1000")).unwrap();
    let refused = ctl(&server, key, &["apply", "-f", &file]).await;
    let said = format!("{:?}\n{}\n{}", refused.result, refused.out, refused.err);
    assert!(
        matches!(refused.result, Ok(Outcome::Failed))
            && said.contains("cannot change share_bp of an enabled holdout"),
        "{said}"
    );

    let listed = ctl(&server, key, &["list", "holdout"]).await;
    assert!(listed.ok().contains("enabled, 500 bp of layers checkout"), "{}", listed.out);

    // A holdout of a layer that does not exist points at the file's line.
    let bad = "kind: holdout\nkey: other\nshare_bp: 100\nlayers: [nope] # the bad one\n";
    let bad_file = write(dir.path(), "bad.yaml", bad);
    let ran = ctl(&server, key, &["apply", "-f", &bad_file]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)), "{:?}", ran.result);
    let expected = format!("{bad_file}:4: holdout other: layers[0]: unknown layer \"nope\"");
    assert!(ran.err.contains(&expected), "expected {expected:?} in:\n{}", ran.err);
    server.stop().await;
}

const FLAGS: &str = "\
kind: flag
key: checkout-v2
type: string
salt: cv2
variations:
  - {key: off, value: old}
  - {key: on, value: new}
rules:
  - condition: {op: in, attribute: country, values: [NZ]}
    serve: {variation: off}
default: {variation: off}
---
kind: flag
key: banner
type: boolean
variations: [{key: on, value: true}, {key: off, value: false}]
default: {variation: on}
";

#[tokio::test]
async fn a_dry_run_shows_each_changed_value_and_writes_nothing() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "flags.yaml", FLAGS);
    ctl(&server, key, &["apply", "-f", &file]).await.ok();
    let before = version(&server, &tenant.admin_key).await;

    let changed = FLAGS
        .replace("    serve: {variation: off}", "    serve: {variation: on}")
        .replace("values: [NZ]", "values: [NZ, AU]")
        .replace("default: {variation: on}", "default: {variation: on}\ndescription: Top banner");
    let segment = "kind: segment\nkey: beta\ninclude: [u-1]\n";
    let file = write(dir.path(), "flags.yaml", &format!("{changed}---\n{segment}"));
    let dry = ctl(&server, key, &["apply", "-f", &file, "--dry-run"]).await;
    let out = dry.ok();
    for line in [
        "flag/checkout-v2 updated (rules)",
        "  flag checkout-v2: rules[0].condition.values[1]: added \"AU\"",
        "  flag checkout-v2: rules[0].serve.variation: \"off\" → \"on\"",
        "flag/banner updated (description)",
        "  flag banner: description: added \"Top banner\"",
        "segment/beta created",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }
    assert!(out.ends_with("1 created, 2 updated (dry run: nothing was written)\n"), "{out}");
    assert_eq!(version(&server, &tenant.admin_key).await, before, "nothing written");

    let json = ctl(&server, key, &["apply", "-f", &file, "--dry-run", "-o", "json"]).await.json();
    let flag = json["results"].as_array().unwrap().iter().find(|r| r["key"] == "checkout-v2").unwrap();
    assert_eq!(
        flag["changes"],
        serde_json::json!([
            {"path": "rules[0].condition.values[1]", "new": "AU"},
            {"path": "rules[0].serve.variation", "old": "off", "new": "on"},
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn prune_deletes_what_the_files_dropped_in_the_same_batch_once_confirmed() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let metric = "kind: metric\nkey: purchase\nevent: purchase\naggregation: conversion\n";
    let running = "kind: experiment\nkey: price\nstatus: running\nprimary_metrics: [purchase]\nvariants:\n  - {key: control, weight_bp: 5000, control: true}\n  - {key: low, weight_bp: 5000}\n";
    let all = write(dir.path(), "all.yaml", &format!("{FLAGS}---\n{metric}---\n{running}"));
    ctl(&server, key, &["apply", "-f", &all]).await.ok();

    // Only checkout-v2 left, changed: banner goes; metrics and experiments are other kinds.
    let one =
        FLAGS.split("---\n").next().unwrap().replace("default: {variation: off}", "default: {variation: on}");
    let flags = write(dir.path(), "flags.yaml", &one);
    let dry = ctl(&server, key, &["apply", "-f", &flags, "--prune", "--dry-run"]).await;
    assert!(dry.ok().lines().any(|l| l == "flag/banner deleted"), "{}", dry.out);
    assert!(!dry.out.contains("metric/") && !dry.out.contains("experiment/"), "{}", dry.out);

    // Not a terminal and no --yes: refused, nothing written.
    let before = version(&server, &tenant.admin_key).await;
    let refused = ctl(&server, key, &["apply", "-f", &flags, "--prune"]).await;
    assert!(
        refused.error().contains("stdin is not a terminal") && refused.error().contains("--yes"),
        "{}",
        refused.error()
    );
    assert!(refused.err.contains("  flag/banner\n"), "listed first: {}", refused.err);
    assert!(matches!(refused.result, Err(cohort_ctl::CtlError::Refused(_))));
    // On a terminal, "n" keeps everything.
    let declined = crate::ctl_on_terminal(&server, key, &["apply", "-f", &flags, "--prune"], "n\n").await;
    assert!(declined.error().contains("not confirmed"), "{}", declined.error());
    assert!(declined.err.contains("Delete it? [y/N]"), "{}", declined.err);
    assert_eq!(version(&server, &tenant.admin_key).await, before);

    // "y" on a terminal: the update and the delete are one batch, one version.
    let done = crate::ctl_on_terminal(&server, key, &["apply", "-f", &flags, "--prune"], "y\n").await;
    let out = done.ok();
    assert!(out.contains(&format!("flag/checkout-v2 updated (default) [version {}]", before + 1)), "{out}");
    assert!(out.contains(&format!("flag/banner deleted [version {}]", before + 1)), "{out}");
    assert!(out.ends_with("1 updated, 1 deleted\n"), "{out}");
    assert_eq!(version(&server, &tenant.admin_key).await, before + 1);
    let listed = ctl(&server, key, &["list", "-o", "json"]).await.json();
    let keys: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(!keys.contains(&"banner") && keys.contains(&"price") && keys.contains(&"purchase"), "{keys:?}");

    // A running experiment the files drop stops the whole run, even with --yes.
    let draft = "kind: experiment\nkey: copy\nvariants:\n  - {key: control, weight_bp: 5000, control: true}\n  - {key: short, weight_bp: 5000}\n";
    let experiments = write(dir.path(), "experiments.yaml", &format!("{metric}---\n{draft}"));
    let live = ctl(&server, key, &["apply", "-f", &experiments, "--prune", "--yes"]).await;
    assert_eq!(live.result.as_ref().ok(), Some(&Outcome::Failed));
    assert!(
        live.err.contains("experiment price: is running and no file defines it: --prune cannot delete it"),
        "{}",
        live.err
    );
    assert_eq!(version(&server, &tenant.admin_key).await, before + 1, "nothing written, not even copy");
    assert!(ctl(&server, key, &["get", "experiment", "copy"]).await.error().contains("does not exist"));
    server.stop().await;
}
