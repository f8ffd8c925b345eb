//! A throwaway PostgreSQL 15 cluster with `ssl=on`, for the TLS tests: its own data directory
//! in a temporary directory, a free loopback port, and a certificate for `localhost` and
//! `127.0.0.1` from a CA made at test time (plus a second CA that signed nothing).
//!
//! `pg_hba.conf` lets `postgres` in without a password (trust) on 127.0.0.1, over TLS only, and
//! without TLS to database `template1` only: the tests see both a refusal of plain connections
//! and a database where plain would do.
//!
//! The binaries come from `COHORT_TEST_PG_BIN` (default `/usr/lib/postgresql/15/bin`). initdb
//! and postgres refuse to run as root, so as root they run as the `postgres` OS user, which then
//! owns the directory. The tests of a test binary share one cluster (initdb takes a second or
//! two); it is stopped (`pg_ctl stop -m immediate`) and its directory removed once the binary
//! has exited, see [`server`].

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Stdio;
use std::sync::OnceLock;

use cohort_transport::testing::Pki;
use tempfile::TempDir;

/// A running cluster; stopped and removed when dropped.
#[derive(Debug)]
pub(super) struct TlsServer {
    pub(super) port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub(super) ca: PathBuf,
    /// A CA that signed nothing the server has (PEM).
    pub(super) other_ca: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    dir: TempDir,
}

/// The test binary's cluster, started by the first test that asks.
///
/// A static is never dropped, so the cluster is stopped by a reaper instead: a process of its
/// own session (Ctrl-C does not reach it) that waits for this one to exit, however it exits,
/// then does what [`TlsServer`]'s `Drop` does. `Drop` itself runs when a start fails half way.
pub(super) fn server() -> &'static TlsServer {
    static SHARED: OnceLock<TlsServer> = OnceLock::new();
    SHARED.get_or_init(TlsServer::start)
}

impl TlsServer {
    /// `postgres://postgres@{host}:{port}/{database}?{params}`.
    pub(super) fn url(&self, host: &str, database: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/{database}?{params}", self.port)
    }

    fn start() -> TlsServer {
        let dir = tempfile::Builder::new().prefix("cohort-pg-tls-").tempdir().expect("temporary directory");
        let as_postgres = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let root = dir.path().to_owned();
        // From here on, a panic drops the guard: the cluster (if started) stops, the directory goes.
        let server = TlsServer {
            port: 0,
            ca: root.join("ca.pem"),
            other_ca: root.join("other-ca.pem"),
            data: root.join("data"),
            as_postgres,
            dir,
        };
        let (ca_pem, other_ca_pem, cert_pem, key_pem) = certificates();
        fs::write(&server.ca, ca_pem).expect("write ca.pem");
        fs::write(&server.other_ca, other_ca_pem).expect("write other-ca.pem");
        fs::write(root.join("server.crt"), cert_pem).expect("write server.crt");
        // PostgreSQL refuses a key that others may read.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(root.join("server.key"))
            .and_then(|mut f| f.write_all(key_pem.as_bytes()))
            .expect("write server.key");
        if as_postgres {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the cluster directory to postgres");
        }
        server.spawn_reaper();
        server.pg("initdb", |c| {
            c.arg("-D").arg(&server.data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
        });
        append(
            &server.data.join("postgresql.conf"),
            &format!(
                "listen_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{root}'\n\
                 ssl = on\n\
                 ssl_cert_file = '{root}/server.crt'\n\
                 ssl_key_file = '{root}/server.key'\n\
                 fsync = off\n\
                 synchronous_commit = off\n\
                 full_page_writes = off\n\
                 shared_buffers = 16MB\n\
                 max_connections = 30\n",
                root = root.display()
            ),
        );
        // Written over the file initdb made: it keeps its owner.
        fs::write(
            server.data.join("pg_hba.conf"),
            "hostssl all       all 127.0.0.1/32 trust\n\
             host    template1 all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        // A port free a moment ago may be taken by the time the server binds it: try a few.
        let mut server = server;
        for attempt in 1..=3 {
            server.port = free_port();
            let log = root.join("server.log");
            let started = server.try_pg("pg_ctl", |c| {
                c.arg("-D")
                    .arg(&server.data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "30", "-o"])
                    .arg(format!("-p {}", server.port))
                    .arg("start")
            });
            match started {
                Ok(()) => return server,
                Err(e) if attempt < 3 => eprintln!("test cluster did not start ({e}); trying another port"),
                Err(e) => {
                    let log = fs::read_to_string(&log).unwrap_or_default();
                    panic!("test cluster did not start: {e}\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts the process that stops the cluster and removes its directory once this process
    /// has exited.
    #[expect(clippy::zombie_processes, reason = "the reaper outlives this process, which never waits")]
    fn spawn_reaper(&self) {
        const SCRIPT: &str = r#"pid=$1 data=$2 dir=$3; shift 3
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
if [ -f "$data/postmaster.pid" ]; then "$@" -D "$data" stop -m immediate; fi
rm -rf "$dir""#;
        let mut command = Command::new("setsid");
        command
            .args(["sh", "-c", SCRIPT, "cohort-pg-tls-reaper"])
            .arg(std::process::id().to_string())
            .arg(&self.data)
            .arg(self.dir.path());
        let (program, prefix) = self.pg_command("pg_ctl");
        command.args(prefix).arg(program);
        command.current_dir("/").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        command.spawn().expect("start the test cluster's reaper");
    }

    /// The program to run for a PostgreSQL binary, and what goes before it (`runuser` as root).
    fn pg_command(&self, program: &str) -> (PathBuf, Vec<&'static str>) {
        let bin = std::env::var_os("COHORT_TEST_PG_BIN")
            .map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from)
            .join(program);
        (bin, if self.as_postgres { vec!["runuser", "-u", "postgres", "--"] } else { Vec::new() })
    }

    /// Runs a PostgreSQL program (as `postgres` when we are root); panics if it fails.
    fn pg(&self, program: &str, args: impl FnOnce(&mut Command) -> &mut Command) {
        if let Err(e) = self.try_pg(program, args) {
            panic!("{e}");
        }
    }

    fn try_pg(&self, program: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> Result<(), String> {
        let (bin, prefix) = self.pg_command(program);
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        // The postgres user may not be able to enter the directory the tests run in.
        command.current_dir(self.dir.path());
        let output = args(&mut command).output().map_err(|e| format!("{}: {e}", bin.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let stopped =
                self.try_pg("pg_ctl", |c| c.arg("-D").arg(&self.data).args(["stop", "-m", "immediate"]));
            if let Err(e) = stopped {
                eprintln!("stopping the test cluster: {e}");
            }
        }
        // The TempDir field removes the directory after this.
    }
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// PEM: the CA, another CA, the server's certificate (for `localhost` and `127.0.0.1`, signed by
/// the CA) and its key.
fn certificates() -> (String, String, String, String) {
    let (ca, other) = (Pki::new("Cohort test CA"), Pki::new("Cohort other CA"));
    let server = ca.localhost();
    (ca.ca_pem(), other.ca_pem(), server.cert, server.key)
}
