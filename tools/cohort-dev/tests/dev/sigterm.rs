//! SIGTERM stops `cohort-dev` as Ctrl-C does: services drained, spool removed, exit 0. Needs
//! PostgreSQL on 127.0.0.1:5432 (user postgres).

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_postgres::NoTls;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

async fn admin_sql(sql: &str) {
    let (client, conn) =
        tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls).await.expect("PostgreSQL");
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_stack_cleanly() {
    let name = format!("cohort_dev_sigterm_{:016x}", rand::rng().random::<u64>());
    admin_sql(&format!("CREATE DATABASE {name}")).await;
    let dir = std::env::temp_dir().join(&name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohort-dev"))
        .env("DATABASE_URL", format!("{SERVER}/{name}"))
        .env("COHORT_DEV_STATE_FILE", dir.join("state.json"))
        .env("COHORT_DEV_USERS_PER_SECOND", "20")
        .env_remove("COHORT_DEV_FRESH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting cohort-dev");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !output.iter().any(|l: &String| l.starts_with("sdk key")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => output.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("cohort-dev did not start: {output:#?}");
            }
        }
    }
    let spool = std::env::temp_dir().join(format!("cohort-dev-spool-{}", child.id()));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for cohort-dev") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cohort-dev did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    output.extend(lines.try_iter());
    assert!(status.success(), "{status}: {output:#?}");
    assert!(output.iter().any(|l| l == "stopped."), "{output:#?}");
    assert!(!spool.exists(), "the spool {} is left", spool.display());

    admin_sql(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
    let _ = std::fs::remove_dir_all(&dir);
}
