//! The built `cohortctl` binary end to end: exit statuses, stdout and stderr of `apply`.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use cohort_db::testing::TestDb;

use crate::{Server, line_of, write};

/// Runs the binary with a clean `COHORT_*` environment, off the async runtime's threads.
async fn cohortctl(server: &Server, key: &str, args: &[&str], stdin: &str) -> Output {
    let endpoint = server.endpoint();
    let (key, args, stdin) =
        (key.to_owned(), args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), stdin.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cohortctl"))
            .args(&args)
            .env_clear()
            .env("COHORT_ENDPOINT", endpoint)
            .env("COHORT_API_KEY", key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cohortctl runs");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_binary_applies_files_and_exits_with_the_right_status() {
    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let good = "kind: metric\nkey: revenue\nevent: purchase\naggregation: sum\n---\nkind: experiment\nkey: price\nstatus: running\ntraffic_bp: 2000\nprimary_metrics: [revenue]\nvariants:\n  - {key: control, weight_bp: 5000}\n  - {key: cheaper, weight_bp: 5000}\n";
    let file = write(dir.path(), "good.yaml", good);

    let out = cohortctl(&server, &tenant.admin_key, &["apply", "-f", &file], "").await;
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        "metric/revenue created [version 1]\n\
         experiment/price created [version 1]\n\
         experiment/price started [version 1]\n\
         2 created, 1 started\n",
        "one file, one batch, one version"
    );

    let out = cohortctl(&server, &tenant.admin_key, &["apply", "-f", "-", "--output", "json"], good).await;
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"].as_array().unwrap().len(), 2);
    assert!(report["results"].as_array().unwrap().iter().all(|r| r["result"] == "unchanged"), "{report}");

    let bad = good.replace("weight_bp: 5000}\n", "weight_bp: 6000}\n");
    let file = write(dir.path(), "bad.yaml", &bad);
    let out = cohortctl(&server, &tenant.admin_key, &["apply", "-f", &file], "").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    let line = line_of(&bad, "cheaper");
    assert!(
        stderr.contains(&format!(
            "{file}:{line}: experiment price: variants[1].weight_bp: weights sum to 12000"
        )),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty(), "nothing applied, nothing reported as done");

    let out = cohortctl(&server, &tenant.admin_key, &["apply"], "").await;
    assert_eq!(out.status.code(), Some(2), "a bad command line is a usage error");

    let out =
        cohortctl(&server, "cohort_admin_wrong", &["apply", "-f", &file.replace("bad", "good")], "").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: "), "{out:?}");
    server.stop().await;
}

/// Runs the binary with no server behind its endpoint and no key: the offline commands.
fn offline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cohortctl"))
        .args(args)
        .env_clear()
        .env("COHORT_ENDPOINT", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .output()
        .expect("cohortctl runs")
}

#[test]
fn the_binary_validates_and_evaluates_files_with_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let good = "kind: flag\nkey: banner\ntype: string\nvariations: [{key: red, value: red}, {key: blue, value: blue}]\nrules:\n  - condition: {op: in, attribute: country, values: [NZ]}\n    serve: {variation: blue}\ndefault: {variation: red}\n";
    let file = write(dir.path(), "banner.yaml", good);

    let out = offline(&["validate", "-f", &file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "1 file, 1 definition: valid\n");

    let bad = good.replace("variation: blue}", "variation: green}");
    let bad_file = write(dir.path(), "bad.yaml", &bad);
    let out = offline(&["validate", "-f", &bad_file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = line_of(&bad, "green");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{bad_file}:{line}: flag banner: rules[0].serve")), "{stderr}");
    assert!(stderr.contains("unknown variation \"green\""), "{stderr}");

    let out = offline(&[
        "eval",
        "-f",
        &file,
        "--context",
        r#"{"targetingKey": "u-42", "country": "NZ"}"#,
        "banner",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "flag banner: \"blue\" (variant blue, TARGETING_MATCH)\n  rule 0: matched\n  serves blue\n"
    );
    let out = offline(&["eval", "-f", &file, "-o", "json", "--context", r#"{"country": "AU"}"#]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["variant"], "red");
    assert_eq!(results[0]["reason"], "DEFAULT");

    let out = offline(&["eval", "-f", &file, "--context", "{\"targetingKey\": "]);
    assert_eq!(out.status.code(), Some(2), "bad --context is a bad command line: {out:?}");
    assert!(text(&out.stderr).contains("--context"), "{out:?}");
    let out = offline(&["eval", "-f", &file, "no-such-flag"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = offline(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Each documented exit status, through the binary: 0 done, 1 failed (a refused call, an
/// unconfirmed prune), 2 a bad command line (clap's or a format the command cannot print).
#[tokio::test]
async fn the_binary_exits_with_each_documented_status() {
    let help = offline(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{help:?}");
    let usage = text(&help.stdout);
    for line in ["Exit status:", "  0  success", "  1  failure", "  2  bad command line"] {
        assert!(usage.contains(line), "--help lacks {line:?}:\n{usage}");
    }

    // 0: completion scripts, offline.
    for (shell, marker) in
        [("bash", "_cohortctl()"), ("zsh", "#compdef cohortctl"), ("fish", "complete -c cohortctl")]
    {
        let out = offline(&["completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let script = text(&out.stdout);
        assert!(script.contains(marker) && script.contains("results"), "{shell}:\n{script}");
    }

    // 2: clap's own refusals, and formats a command cannot print (one line on stderr).
    for args in
        [&["completion", "tcsh"][..], &["--no-such-flag", "list"], &["list", "-o", "csv"], &["get", "flag"]]
    {
        let out = offline(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let csv = offline(&["snapshot", "-o", "csv"]);
    assert_eq!(text(&csv.stderr), "error: -o csv is for `results` only\n");

    // 1: a call that fails (no server), and a prune that is not confirmed.
    let out = offline(&["--api-key", "cohort_admin_x", "list"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).starts_with("error: cannot connect to http://127.0.0.1:9"), "{out:?}");

    let db = TestDb::new().await;
    let tenant = db.seed_tenant("acme").await;
    let server = Server::start(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let both = "kind: metric\nkey: a\nevent: a\naggregation: count\n---\nkind: metric\nkey: b\nevent: b\naggregation: count\n";
    let file = write(dir.path(), "both.yaml", both);
    let out = cohortctl(&server, &tenant.admin_key, &["apply", "-f", &file], "").await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let one = write(dir.path(), "one.yaml", both.split("---\n").next().unwrap());
    // Piped stdin is no terminal: a prune without --yes is refused, even with "y" on it.
    let out = cohortctl(&server, &tenant.admin_key, &["apply", "-f", &one, "--prune"], "y\n").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("  metric/b\n") && stderr.contains("pass --yes"), "{stderr}");
    let out = cohortctl(&server, &tenant.admin_key, &["apply", "-f", &one, "--prune", "--yes"], "").await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("metric/b deleted [version 2]"), "{out:?}");
    server.stop().await;
}
