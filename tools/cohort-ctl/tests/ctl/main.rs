//! cohortctl against a real config service: started in-process on pre-bound 127.0.0.1:0
//! listeners over a fresh PostgreSQL database per test. Commands run through the library
//! (`Cli::try_parse_from` + `run`, output captured); the binary's tests run the built binary.
//! `results` runs against config, events and analysis, started by cohort-dev's `TestCluster`.

mod apply;
mod binary;
mod commands;
mod flagd;
mod formats;
mod results;
mod tls;

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use cohort_ctl::cli::Cli;
use cohort_ctl::console::Console;
use cohort_ctl::{CtlError, Outcome};
use cohort_dev::stack::{Instance, Ports, Service};

/// One running config service, started as every service is in tests.
#[derive(Debug)]
pub struct Server {
    pub grpc: SocketAddr,
    instance: Instance,
}

impl Server {
    pub async fn start(database_url: &str) -> Server {
        Server::start_with(database_url, &[]).await
    }

    /// With `extra` flags (TLS settings).
    pub async fn start_with(database_url: &str, extra: &[(&str, &str)]) -> Server {
        let mut flags =
            vec![("--database-url", database_url), ("--poll-interval", "1s"), ("--shutdown-grace", "5s")];
        flags.extend_from_slice(extra);
        let instance = Instance::start(Service::Config, &flags, Ports::Any)
            .await
            .unwrap_or_else(|e| panic!("starting the config service: {e}"));
        Server { grpc: instance.addrs().grpc, instance }
    }

    /// `http://` or, when it serves TLS, `https://`.
    pub fn endpoint(&self) -> String {
        self.instance.addrs().grpc_url()
    }

    pub async fn stop(self) {
        self.instance.stop().await.unwrap_or_else(|e| panic!("server ran cleanly: {e}"));
    }
}

/// What one cohortctl command did.
#[derive(Debug)]
pub struct Ran {
    pub result: Result<Outcome, CtlError>,
    pub out: String,
    pub err: String,
}

impl Ran {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            matches!(self.result, Ok(Outcome::Done)),
            "command failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.result,
            self.out,
            self.err
        );
        &self.out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.out))
    }

    /// The error that stopped the command, as it would be printed.
    #[track_caller]
    pub fn error(&self) -> String {
        match &self.result {
            Err(e) => e.to_string(),
            other => panic!("expected an error, got {other:?}\nstdout:\n{}\nstderr:\n{}", self.out, self.err),
        }
    }
}

/// Runs `cohortctl --endpoint … [--api-key KEY] ARGS…` through the library.
pub async fn ctl(server: &Server, key: Option<&str>, args: &[&str]) -> Ran {
    ctl_with_input(server, key, args, "").await
}

pub async fn ctl_with_input(server: &Server, key: Option<&str>, args: &[&str], stdin: &str) -> Ran {
    run_at(&server.endpoint(), key, args, stdin, false).await
}

/// As [`ctl_with_input`], with stdin a terminal: a person who types `stdin`.
pub async fn ctl_on_terminal(server: &Server, key: Option<&str>, args: &[&str], stdin: &str) -> Ran {
    run_at(&server.endpoint(), key, args, stdin, true).await
}

/// Runs `cohortctl --endpoint ENDPOINT [--api-key KEY] ARGS…` through the library.
pub async fn run_at(endpoint: &str, key: Option<&str>, args: &[&str], stdin: &str, terminal: bool) -> Ran {
    let mut argv = vec!["cohortctl", "--endpoint", endpoint];
    if let Some(key) = key {
        argv.extend(["--api-key", key]);
    }
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("command line parses");
    let (mut out, mut err, mut input) =
        (Vec::new(), Vec::new(), std::io::Cursor::new(stdin.as_bytes().to_vec()));
    let format = cli.global.output;
    let result = {
        let mut con = Console { out: &mut out, err: &mut err, input: &mut input, format, terminal };
        cohort_ctl::run(cli, &mut con).await
    };
    Ran { result, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

/// YAML (one document) as the JSON value it spells, to compare `-o yaml` with `-o json`.
pub fn yaml_value(text: &str) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    fn convert(y: &Yaml) -> Value {
        match y {
            Yaml::Real(r) => serde_json::from_str(r).unwrap_or_else(|_| Value::String(r.clone())),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Array(a) => Value::Array(a.iter().map(convert).collect()),
            Yaml::Hash(h) => Value::Object(
                h.iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), convert(v))).collect(),
            ),
            Yaml::Null => Value::Null,
            other => panic!("unexpected YAML node {other:?}"),
        }
    }
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
    assert_eq!(docs.len(), 1, "one document:\n{text}");
    convert(&docs[0])
}

/// Writes `text` to `dir/name` and returns the path as text.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The 1-based line of the first line of `text` that contains `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in the text")) + 1
}

/// The environment's current config version.
pub async fn version(server: &Server, key: &str) -> u64 {
    let mut client = cohort_ctl::client::Client::connect(
        &server.endpoint(),
        Some(key),
        std::time::Duration::from_secs(10),
        &Default::default(),
    )
    .await
    .unwrap();
    client.environment("production").await.unwrap().version
}
