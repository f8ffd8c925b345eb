//! flagd's flag-definition files: applied as they are, exported back equal by
//! `get flags -o flagd`, re-applied as no change; bad targeting refused with the file's path.

use cohort_ctl::Outcome;
use cohort_db::testing::TestDb;
use serde_json::Value;

use crate::{Server, ctl, line_of, version, write};

/// A bakery's flags as a flagd file: `if` + `ends_with`, a `$ref` to a shared evaluator, a
/// `fractional` split, a disabled flag, one flag with `"defaultVariant": null` and one
/// without it, flag and flag-set metadata, and an evaluator no flag uses.
const BAKERY: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": {"flagSetId": "bakery", "team": "web"},
  "$evaluators": {
    "pastry-chefs": {"ends_with": [{"var": "email"}, "@pastry.example.net"]},
    "retired": {"==": [{"var": "plan"}, "legacy"]}
  },
  "flags": {
    "sourdough-beta": {
      "state": "ENABLED",
      "variants": {"yes": true, "no": false},
      "defaultVariant": "no",
      "targeting": {
        "if": [
          {"ends_with": [{"var": "email"}, "@crumb.example.net"]}, "yes",
          {"$ref": "pastry-chefs"}, "yes",
          null
        ]
      },
      "metadata": {"owner": "bread-team", "ticket": 4411}
    },
    "crust-colour": {
      "state": "ENABLED",
      "variants": {"golden": "golden", "dark": "dark", "pale": "pale"},
      "defaultVariant": "golden",
      "targeting": {
        "fractional": [
          {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
          ["golden", 50], ["dark", 30], ["pale", 20]
        ]
      }
    },
    "night-oven": {
      "state": "DISABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off"
    },
    "seasonal-menu": {
      "state": "ENABLED",
      "variants": {"spring": {"pie": "rhubarb"}, "winter": {"pie": "mince"}},
      "defaultVariant": null,
      "targeting": {"if": [{"in": [{"var": "country"}, ["NZ", "AU"]]}, "winter", null]}
    },
    "loaf-size": {
      "state": "ENABLED",
      "variants": {"small": 400, "large": 800}
    }
  }
}
"#;

/// A Cohort flag in the same environment, with rules and an off variation: nothing flagd can
/// express.
const NATIVE: &str = "\
kind: flag
key: legacy-checkout
type: boolean
salt: lc-1
variations: [{key: on, value: true}, {key: off, value: false}]
off_variation: off
rules:
  - condition: {op: in, attribute: country, values: [NZ]}
    serve: {variation: on}
default: {variation: off}
";

/// The file as `get flags -o flagd` writes it: a missing default variant is written null,
/// and evaluators no flag uses are not kept.
fn exported(file: &str) -> Value {
    let mut doc: Value = serde_json::from_str(file).unwrap();
    doc["flags"]["loaf-size"]["defaultVariant"] = Value::Null;
    doc["$evaluators"].as_object_mut().unwrap().remove("retired");
    doc
}

#[tokio::test]
async fn a_flagd_file_applies_exports_back_equal_and_reapplies_as_no_change() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bakery.flagd.json", BAKERY);
    let native = write(dir.path(), "legacy.yaml", NATIVE);

    let first = ctl(&server, key, &["apply", "-f", &file, "-f", &native]).await;
    let out = first.ok();
    for flag in
        ["sourdough-beta", "crust-colour", "night-oven", "seasonal-menu", "loaf-size", "legacy-checkout"]
    {
        assert!(out.contains(&format!("flag/{flag} created [version 1]")), "{flag} in:\n{out}");
    }
    assert!(out.contains("6 created"), "{out}");
    assert_eq!(version(&server, &tenant.admin_key).await, 1);

    // Back as a flagd file equal to the one applied; the Cohort flag is named and left out.
    let got = ctl(&server, key, &["get", "flags", "-o", "flagd"]).await;
    assert_eq!(got.json(), exported(BAKERY), "{}", got.out);
    assert_eq!(got.err, "skipped flag legacy-checkout: flagd has no form for its rules and off variation\n");
    // One flag alone; a flag flagd cannot express, asked for by key, is refused.
    let one = ctl(&server, key, &["get", "flag", "night-oven", "--output", "flagd"]).await.json();
    assert_eq!(one["flags"].as_object().unwrap().keys().collect::<Vec<_>>(), ["night-oven"]);
    assert_eq!(one["flags"]["night-oven"], exported(BAKERY)["flags"]["night-oven"]);
    assert_eq!(one["metadata"], serde_json::json!({"flagSetId": "bakery", "team": "web"}));
    let refused = ctl(&server, key, &["get", "flag", "legacy-checkout", "-o", "flagd"]).await;
    assert_eq!(
        refused.error(),
        "cannot write a flagd file: flag \"legacy-checkout\": flagd has no form for its rules and off variation"
    );

    // The same file again, and the exported file: nothing to do, nothing written.
    for again in [file.clone(), write(dir.path(), "exported.flagd.json", &got.out)] {
        let ran = ctl(&server, key, &["apply", "-f", &again, "--format", "flagd"]).await;
        assert!(ran.ok().contains("5 unchanged"), "{again}: {}", ran.out);
        assert!(!ran.out.contains("created") && !ran.out.contains("updated"), "{}", ran.out);
    }
    assert_eq!(version(&server, &tenant.admin_key).await, 1);

    // One flag edited in the file: that flag, and only its changed fields, are updated.
    std::fs::write(&file, BAKERY.replace("\"state\": \"DISABLED\"", "\"state\": \"ENABLED\"")).unwrap();
    let ran = ctl(&server, key, &["apply", "-f", &file, "-o", "json"]).await.json();
    let changed: Vec<&Value> =
        ran["results"].as_array().unwrap().iter().filter(|r| r["result"] != "unchanged").collect();
    assert_eq!(changed.len(), 1, "{ran:#}");
    assert_eq!(
        (changed[0]["key"].as_str(), changed[0]["result"].as_str()),
        (Some("night-oven"), Some("updated"))
    );
    assert_eq!(changed[0]["fields"], serde_json::json!(["enabled"]));
    assert_eq!(version(&server, &tenant.admin_key).await, 2);

    // Another file defining `pastry-chefs` differently: one flagd file cannot hold both.
    let other = BAKERY
        .replace("@pastry.example.net", "@patisserie.example.net")
        .replace("sourdough-beta", "croissant-beta")
        .replace("\"crust-colour\"", "\"crust-tone\"")
        .replace("night-oven", "night-shift")
        .replace("seasonal-menu", "seasonal-pies")
        .replace("loaf-size", "roll-size");
    let other = write(dir.path(), "patisserie.flagd.json", &other);
    ctl(&server, key, &["apply", "-f", &other]).await.ok();
    let clash = ctl(&server, key, &["get", "flags", "-o", "flagd"]).await;
    assert_eq!(
        clash.error(),
        "cannot write a flagd file: flags \"croissant-beta\" and \"sourdough-beta\" define evaluator \
         \"pastry-chefs\" differently; a flagd file has one"
    );
    assert!(clash.out.is_empty(), "{}", clash.out);
    server.stop().await;
}

#[tokio::test]
async fn a_flagd_file_with_an_unknown_operator_is_refused_with_its_path_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let key = Some(tenant.admin_key.as_str());
    let dir = tempfile::tempdir().unwrap();

    let bad = BAKERY.replace(
        r#"{"ends_with": [{"var": "email"}, "@crumb.example.net"]}"#,
        r#"{"ends_wiht": [{"var": "email"}, "@crumb.example.net"]}"#,
    );
    let file = write(dir.path(), "bakery.flagd.json", &bad);
    let line = line_of(&bad, "ends_wiht");
    let expected = format!(
        "{file}:{line}: flags[\"sourdough-beta\"].targeting.if[0].ends_wiht: unknown operator \"ends_wiht\"; \
         the operators are"
    );
    // Locally, and by the server when local validation is skipped: the same path and line.
    for extra in [None, Some("--server-validation-only")] {
        let mut args = vec!["apply", "-f", &file];
        args.extend(extra);
        let ran = ctl(&server, key, &args).await;
        assert!(matches!(ran.result, Ok(Outcome::Failed)), "{extra:?}: {:?}", ran.result);
        assert!(ran.err.contains(&expected), "{extra:?}: expected {expected:?} in:\n{}", ran.err);
        assert_eq!(version(&server, &tenant.admin_key).await, 0, "{extra:?}: nothing was stored");
    }
    let listed = ctl(&server, key, &["list", "flags", "-o", "json"]).await.json();
    assert_eq!(listed, serde_json::json!([]));

    // A shape error: the file, the line and the path, before anything is sent.
    let bad = BAKERY.replace("\"state\": \"DISABLED\"", "\"state\": \"OFF\"");
    let file = write(dir.path(), "shape.flagd.json", &bad);
    let ran = ctl(&server, key, &["apply", "-f", &file]).await;
    assert!(matches!(ran.result, Ok(Outcome::Failed)), "{:?}", ran.result);
    let expected = format!(
        "{file}:{}: flags[\"night-oven\"].state: \"OFF\" is not ENABLED or DISABLED",
        line_of(&bad, "\"OFF\"")
    );
    assert!(ran.err.contains(&expected), "expected {expected:?} in:\n{}", ran.err);
    assert_eq!(version(&server, &tenant.admin_key).await, 0);
    server.stop().await;
}
