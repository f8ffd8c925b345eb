//! `make dev`'s start-up: the stack on a database, an organization with an admin and an SDK
//! key, and the demo. The keys' secrets (the database stores only their hashes) are kept in a
//! state file, so that a later run on the same database reuses them and the demo, and keeps
//! whatever was created in between.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cohort_proto::config::v1 as pb;
use cohort_proto::config::v1::config_service_client::ConfigServiceClient;
use rand::Rng;
use serde_json::json;
use tonic::transport::Channel;

use crate::demo::{self, Demo, authed};
use crate::stack::{Options, Service, Stack};

/// The demo's environment.
pub const ENVIRONMENT: &str = "production";

/// The organization bootstrapped first; `demo-2`, `demo-3`… when it exists without saved keys.
const ORGANIZATION: &str = "demo";

/// Where `make dev` keeps its keys: `target/cohort-dev/state.json` of this checkout.
pub fn default_state_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cohort-dev/state.json")
}

/// What a run remembers for the next: the database it ran on, the organization and the two
/// keys' secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    database_url: String,
    organization: String,
    environment: String,
    admin_key: String,
    sdk_key: String,
}

impl State {
    fn read(path: &Path) -> Option<State> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let field = |name: &str| v.get(name)?.as_str().map(str::to_owned);
        Some(State {
            database_url: field("database_url")?,
            organization: field("organization")?,
            environment: field("environment")?,
            admin_key: field("admin_key")?,
            sdk_key: field("sdk_key")?,
        })
    }

    /// Written readable by its owner only (0600): it holds an admin key.
    fn write(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = json!({
            "database_url": self.database_url,
            "organization": self.organization,
            "environment": self.environment,
            "admin_key": self.admin_key,
            "sdk_key": self.sdk_key,
        });
        // A fresh file each time, so that the mode applies even to an older, laxer one.
        let _ = std::fs::remove_file(path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(serde_json::to_string_pretty(&text)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// How to start.
#[derive(Debug, Clone)]
pub struct Setup {
    pub database_url: String,
    pub options: Options,
    /// Where the keys are remembered between runs; `None` when nothing can persist (a
    /// throwaway cluster).
    pub state_file: Option<PathBuf>,
    /// Forget the state file first (the caller recreates the database when it owns it).
    pub fresh: bool,
}

/// A started stack: config, events, analysis and evaluation, with the demo applied.
#[derive(Debug)]
pub struct Started {
    pub stack: Stack,
    pub demo: Demo,
    pub organization: String,
    /// Whether the keys came from the state file (an earlier run) rather than a new bootstrap.
    pub reused: bool,
    /// How many of the demo's entities this run created (none when they were all there).
    pub demo_created: usize,
    /// What the user should know about this start (keys or organization replaced), one a line.
    pub notes: Vec<String>,
}

/// Migrates the database (adding only what is missing), starts the four services, reuses the
/// saved keys when they still work (else bootstraps an organization and saves its keys), and
/// applies what is missing of the demo. On an error, the services started are stopped.
pub async fn start(setup: &Setup) -> anyhow::Result<Started> {
    if setup.fresh
        && let Some(path) = &setup.state_file
    {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    let mut stack =
        Stack::new(&setup.database_url, &setup.options).await.context("migrating the database")?;
    // A token of this run, so that an organization can be bootstrapped on a database that
    // already has one (whose keys were lost).
    let token = hex::encode(rand::rng().random::<[u8; 24]>());
    let services: [(Service, &[(&str, &str)]); 4] = [
        (Service::Config, &[("--bootstrap-token", token.as_str())]),
        (Service::Events, &[]),
        (Service::Analysis, &[]),
        (Service::Evaluation, &[]),
    ];
    for (service, flags) in services {
        if let Err(e) = stack.add(service, flags).await {
            let _ = stack.stop().await;
            return Err(e).with_context(|| format!("starting {service}"));
        }
    }
    match keys_and_demo(&stack, setup, &token).await {
        Ok((demo, organization, reused, demo_created, notes)) => {
            Ok(Started { stack, demo, organization, reused, demo_created, notes })
        }
        Err(e) => {
            let _ = stack.stop().await;
            Err(e)
        }
    }
}

type KeysAndDemo = (Demo, String, bool, usize, Vec<String>);

async fn keys_and_demo(stack: &Stack, setup: &Setup, token: &str) -> anyhow::Result<KeysAndDemo> {
    let mut c: ConfigServiceClient<Channel> = ConfigServiceClient::connect(
        stack.addrs(Service::Config).context("config is not running")?.grpc_url(),
    )
    .await
    .context("connecting to config")?;
    let mut notes = Vec::new();
    let saved = setup
        .state_file
        .as_deref()
        .and_then(State::read)
        .filter(|s| s.database_url == setup.database_url && s.environment == ENVIRONMENT);
    let mut reused = false;
    let mut state = None;
    if let Some(mut s) = saved {
        if admin_works(&mut c, &s.admin_key).await? {
            if !sdk_works(&mut c, &s.sdk_key).await? {
                s.sdk_key = create_sdk_key(&mut c, &s.admin_key).await?;
                notes.push("the saved SDK key no longer works: made a new one".into());
            }
            reused = true;
            state = Some(s);
        } else {
            notes.push("the saved admin key no longer works: bootstrapping a new organization".into());
        }
    }
    let state = match state {
        Some(s) => s,
        None => {
            let (organization, admin_key) = bootstrap(&mut c, token).await?;
            if organization != ORGANIZATION {
                notes.push(format!(
                    "organization {ORGANIZATION:?} exists without saved keys: bootstrapped {organization:?} (--fresh starts over)"
                ));
            }
            let sdk_key = create_sdk_key(&mut c, &admin_key).await?;
            State {
                database_url: setup.database_url.clone(),
                organization,
                environment: ENVIRONMENT.into(),
                admin_key,
                sdk_key,
            }
        }
    };
    if let Some(path) = &setup.state_file
        && State::read(path).as_ref() != Some(&state)
    {
        state.write(path)?;
    }
    let demo_created =
        demo::apply(stack, &state.admin_key, ENVIRONMENT).await.context("applying the demo")?;
    let demo = Demo { admin_key: state.admin_key, sdk_key: state.sdk_key };
    Ok((demo, state.organization, reused, demo_created, notes))
}

/// Whether `key` is an admin key of the demo's environment (it may list its entities).
async fn admin_works(c: &mut ConfigServiceClient<Channel>, key: &str) -> anyhow::Result<bool> {
    let request =
        pb::ListEntitiesRequest { environment: ENVIRONMENT.into(), page_size: 1, ..Default::default() };
    match c.list_entities(authed(key, request)).await {
        Ok(_) => Ok(true),
        Err(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
            Ok(false)
        }
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(s).context("checking the saved admin key"),
    }
}

/// Whether `key` still authenticates (an SDK key may read the environment's snapshot).
async fn sdk_works(c: &mut ConfigServiceClient<Channel>, key: &str) -> anyhow::Result<bool> {
    match c.get_snapshot(authed(key, pb::GetSnapshotRequest { environment: ENVIRONMENT.into() })).await {
        Ok(_) => Ok(true),
        Err(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
            Ok(false)
        }
        Err(s) => Err(s).context("checking the saved SDK key"),
    }
}

/// Bootstraps `demo`, or `demo-2`, `demo-3`… when the name is taken; returns its name and
/// admin key.
async fn bootstrap(c: &mut ConfigServiceClient<Channel>, token: &str) -> anyhow::Result<(String, String)> {
    for n in 1..=100 {
        let organization = if n == 1 { ORGANIZATION.to_owned() } else { format!("{ORGANIZATION}-{n}") };
        let request = pb::BootstrapRequest {
            organization: organization.clone(),
            environment: ENVIRONMENT.into(),
            token: token.into(),
        };
        match c.bootstrap(request).await {
            Ok(r) => {
                let key = r.into_inner().admin_key.context("bootstrap returned no key")?.secret;
                return Ok((organization, key));
            }
            Err(s) if s.code() == tonic::Code::AlreadyExists => continue,
            Err(s) => return Err(s).context("bootstrap"),
        }
    }
    anyhow::bail!("organizations demo to demo-100 all exist: start over with --fresh")
}

async fn create_sdk_key(c: &mut ConfigServiceClient<Channel>, admin_key: &str) -> anyhow::Result<String> {
    let request = pb::CreateApiKeyRequest {
        kind: pb::KeyKind::Sdk as i32,
        name: "demo traffic".into(),
        environment: ENVIRONMENT.into(),
        ..Default::default()
    };
    Ok(c.create_api_key(authed(admin_key, request))
        .await
        .context("creating the SDK key")?
        .into_inner()
        .secret)
}
