//! Finds PostgreSQL for the local run: the URL given, else the local server (its `cohort_dev`
//! database, kept between runs unless `--fresh`), else a throwaway cluster made with the PostgreSQL binaries on the
//! machine and removed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use tokio_postgres::NoTls;

const LOCAL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) url: String,
    throwaway: Option<Throwaway>,
}

#[derive(Debug)]
struct Throwaway {
    bin: PathBuf,
    dir: PathBuf,
}

impl Database {
    /// `fresh`: on the local server, drop `cohort_dev` first (a given URL's database is used as
    /// is; a throwaway cluster is always new).
    pub(crate) async fn prepare(url: Option<&str>, fresh: bool) -> anyhow::Result<Database> {
        if let Some(url) = url {
            return Ok(Database { url: url.to_owned(), throwaway: None });
        }
        if let Ok((client, conn)) = tokio_postgres::connect(LOCAL, NoTls).await {
            tokio::spawn(conn);
            if fresh {
                client
                    .batch_execute("DROP DATABASE IF EXISTS cohort_dev WITH (FORCE)")
                    .await
                    .context("dropping database cohort_dev on 127.0.0.1:5432")?;
            }
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = 'cohort_dev'", &[])
                .await
                .context("looking for database cohort_dev on 127.0.0.1:5432")?
                .is_some();
            if !exists {
                client
                    .batch_execute("CREATE DATABASE cohort_dev")
                    .await
                    .context("creating database cohort_dev on 127.0.0.1:5432")?;
            }
            return Ok(Database {
                url: "postgres://postgres@127.0.0.1:5432/cohort_dev".into(),
                throwaway: None,
            });
        }
        let throwaway = Throwaway::start()?;
        let url = throwaway.url();
        Ok(Database { url, throwaway: Some(throwaway) })
    }

    /// Whether the database outlives this run (not a throwaway cluster).
    pub(crate) fn persists(&self) -> bool {
        self.throwaway.is_none()
    }

    pub(crate) async fn stop(self) {
        if let Some(t) = self.throwaway {
            t.stop();
        }
    }
}

/// The newest `initdb` under /usr/lib/postgresql/*/bin (Debian's layout), or one on PATH.
fn find_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some(bin) = versions.pop() {
        return Ok(bin);
    }
    let which =
        Command::new("sh").args(["-c", "command -v initdb"]).output().context("looking for initdb")?;
    let path = String::from_utf8_lossy(&which.stdout).trim().to_owned();
    match Path::new(&path).parent() {
        Some(dir) if !path.is_empty() => Ok(dir.to_path_buf()),
        _ => {
            bail!("no PostgreSQL: set DATABASE_URL, start a server on 127.0.0.1:5432, or install PostgreSQL")
        }
    }
}

/// PostgreSQL refuses to run as root; as root, run its tools as the `postgres` user.
fn pg_command(bin: &Path, tool: &str) -> Command {
    let is_root =
        Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

const PORT: u16 = 54329;

impl Throwaway {
    fn start() -> anyhow::Result<Throwaway> {
        let bin = find_bin()?;
        let dir = std::env::temp_dir().join(format!("cohort-dev-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
        let data = dir.join("data");
        let status = pg_command(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed");
        }
        let options = format!("-p {PORT} -k {} -c listen_addresses=127.0.0.1", dir.display());
        let status = pg_command(&bin, "pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-o", &options, "-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running pg_ctl start")?;
        if !status.success() {
            bail!("could not start a throwaway PostgreSQL (see {})", dir.join("log").display());
        }
        Ok(Throwaway { bin, dir })
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{PORT}/postgres")
    }

    fn stop(self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
