//! cohortctl: the operator's command line over the config service's gRPC API. Environments,
//! API keys, definitions (`apply` from YAML or JSON files, declaratively; flagd's
//! flag-definition files too, and `get flags -o flagd` back), experiment lifecycles, flags on
//! and off, the audit log, snapshots and propagation; experiment results from the analysis
//! service; and, offline, `validate` and `eval` over the files, and shell completions.
//!
//! The library is the whole tool, so tests drive it without spawning the binary: parse a
//! [`cli::Cli`] and call [`run`], or call a command function with a [`client::Client`] and a
//! [`console::Console`] that writes into buffers.
//!
//! # Layout
//! - [`cli`]: global options and commands (clap, `COHORT_*` variables).
//! - [`client`]: the connection, the API key, paginated and read-then-write helpers.
//! - [`apply`]: plan, validate locally, and write in dependency order; [`diff`]: what changes.
//! - [`commands`]: every other command but [`results`] (the analysis service's scorecard,
//!   drawn by [`scorecard`]).
//! - [`wire`]: JSON carried in gRPC messages, read into values in one place.
//! - [`offline`]: `validate` and `eval`, over files alone (no server, no key).
//! - [`document`]: definition files in their three shapes, or flagd's, read into typed specs.
//! - [`source`]: YAML parsed into trees that know each node's line; field paths → lines.
//! - [`definition`]: the six kinds and their typed, canonical definitions.
//! - [`lifecycle`]: experiment moves and the legal path between statuses.
//! - [`diagnostic`]: `FILE:LINE: kind key: field: description`, and gRPC statuses read into it.
//! - [`console`]: stdout/stderr/stdin, tables, CSV, YAML, timestamps. [`error`]: [`CtlError`]
//!   and the exit statuses.

// A command-line tool's output is its product. Commands write through `Console` (so tests can
// capture it); printing to stdout is what this crate is for, so the lint does not apply.
#![allow(clippy::print_stdout)]

pub mod apply;
pub mod cli;
pub mod client;
pub mod commands;
pub mod console;
pub mod definition;
pub mod diagnostic;
pub mod diff;
pub mod document;
pub mod error;
pub mod lifecycle;
pub mod offline;
pub mod results;
pub mod scorecard;
pub mod source;
pub mod wire;

pub use error::CtlError;

use cli::{Cli, Command, EnvCommand, FlagCommand, KeysCommand, ServiceKeyCommand};
use client::Client;
use console::{Console, Format};
use definition::Kind;
use lifecycle::Action;

/// How a command ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done.
    Done,
    /// The command ran, but something it tried failed (and was reported).
    Failed,
}

/// Runs one command line to the end. `Err` is a failure that stopped the command; it has not
/// been printed yet.
pub async fn run(cli: Cli, con: &mut Console<'_>) -> Result<Outcome, CtlError> {
    check_output(&cli)?;
    let g = &cli.global;
    // Made offline: no endpoint or key needed.
    if let Command::ServiceKey(ServiceKeyCommand::Create { name }) = &cli.command {
        commands::service_key_create(name, con)?;
        return Ok(Outcome::Done);
    }
    match &cli.command {
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "cohortctl", con.out);
            return Ok(Outcome::Done);
        }
        Command::Results(a) => {
            let mut rpc =
                client::connect_analysis(&g.analysis_endpoint, g.api_key.as_deref(), g.timeout, &g.tls())
                    .await?;
            results::results(&mut rpc, &g.environment, &a.experiment, a.looks, con).await?;
            return Ok(Outcome::Done);
        }
        Command::Validate(a) => return offline::validate(&a.files, a.format, con),
        Command::Eval(a) => {
            let ctx = a.context.clone().unwrap_or_default();
            return offline::eval(&a.files, a.format, &ctx, &a.keys, con);
        }
        _ => {}
    }
    let mut client = Client::connect(&g.endpoint, g.api_key.as_deref(), g.timeout, &g.tls()).await?;
    let env = g.environment.as_str();
    match cli.command {
        Command::Bootstrap(a) => {
            commands::bootstrap(&mut client, &a.organization, env, a.token.as_deref(), con).await?;
        }
        Command::Env(EnvCommand::Create { key, name, cors_origins }) => {
            commands::env_create(&mut client, &key, name.as_deref(), &cors_origins, con).await?;
        }
        Command::Env(EnvCommand::Update { key, name, cors_origins, no_cors_origins }) => {
            let origins = match (no_cors_origins, cors_origins.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, false) => Some(cors_origins),
                (false, true) => None,
            };
            commands::env_update(&mut client, &key, name.as_deref(), origins, con).await?;
        }
        Command::Env(EnvCommand::List) => {
            commands::env_list(&mut client, con).await?;
        }
        Command::Keys(KeysCommand::Rotate { id, overlap, expires_in }) => {
            commands::keys_rotate(&mut client, &id, overlap, expires_in, con).await?;
        }
        Command::Keys(KeysCommand::Create { kind, name, read_only, only_env, expires_in }) => {
            let scope = commands::KeyScope { read_only, environments: only_env, expires_in };
            commands::keys_create(&mut client, kind, &name, env, &scope, con).await?;
        }
        Command::Keys(KeysCommand::List { all }) => {
            commands::keys_list(&mut client, all, con).await?;
        }
        Command::Keys(KeysCommand::Revoke { id }) => {
            commands::keys_revoke(&mut client, &id, con).await?;
        }
        Command::ServiceKey(ServiceKeyCommand::Create { name }) => commands::service_key_create(&name, con)?,
        // Handled before connecting to the config service.
        Command::Validate(_) | Command::Eval(_) | Command::Completion { .. } | Command::Results(_) => {}
        Command::Flag(FlagCommand::Enable(a)) => {
            commands::flag_enable(&mut client, env, &a.key, true, a.reason.as_deref(), con).await?;
        }
        Command::Flag(FlagCommand::Disable(a)) => {
            commands::flag_enable(&mut client, env, &a.key, false, a.reason.as_deref(), con).await?;
        }
        Command::Apply(a) => {
            let opts = apply::ApplyOptions {
                paths: a.files,
                format: a.format,
                dry_run: a.dry_run,
                server_validation_only: a.server_validation_only,
                prune: a.prune,
                yes: a.yes,
            };
            let report = apply::apply(&mut client, env, &opts, con).await?;
            if report.failed() {
                return Ok(Outcome::Failed);
            }
        }
        Command::Get { kind: _, key } if g.output == Format::Flagd => {
            commands::get_flagd(&mut client, env, key.as_deref(), con).await?;
        }
        Command::Get { kind, key } => {
            let key = key.ok_or_else(|| missing_key(kind))?;
            commands::get(&mut client, env, kind, &key, con).await?;
        }
        Command::List { kind } => {
            commands::list(&mut client, env, kind, con).await?;
        }
        Command::Delete { kind, key } => {
            commands::delete(&mut client, env, kind, &key, con).await?;
        }
        Command::Start(a) => {
            commands::transition(&mut client, env, &a.key, Action::Start, a.reason.as_deref(), con).await?;
        }
        Command::Pause(a) => {
            commands::transition(&mut client, env, &a.key, Action::Pause, a.reason.as_deref(), con).await?;
        }
        Command::Resume(a) => {
            commands::transition(&mut client, env, &a.key, Action::Resume, a.reason.as_deref(), con).await?;
        }
        Command::Complete(a) => {
            commands::transition(&mut client, env, &a.key, Action::Complete, a.reason.as_deref(), con)
                .await?;
        }
        Command::Audit(a) => {
            let scope = (!a.all_environments).then_some(env);
            commands::audit(&mut client, scope, a.kind, a.key.as_deref(), a.limit, con).await?;
        }
        Command::Snapshot => {
            commands::snapshot(&mut client, env, con).await?;
        }
        Command::Propagation { version } => {
            commands::propagation(&mut client, env, version, con).await?;
        }
    }
    Ok(Outcome::Done)
}

/// Refuses, before connecting, what the command line allows but means nothing: an output
/// format the command cannot print (`-o flagd` anywhere but `get flag[s]`, `-o yaml` on a
/// command that is not a read, `-o csv` anywhere but `results`), and `get` without a key.
pub fn check_output(cli: &Cli) -> Result<(), CtlError> {
    let format = cli.global.output;
    let command = &cli.command;
    let ok = match format {
        Format::Table => true,
        Format::Json => !matches!(command, Command::Completion { .. }),
        Format::Flagd => matches!(command, Command::Get { kind: Kind::Flag, .. }),
        Format::Csv => matches!(command, Command::Results(_)),
        Format::Yaml => matches!(
            command,
            Command::Get { .. }
                | Command::List { .. }
                | Command::Audit(_)
                | Command::Snapshot
                | Command::Propagation { .. }
                | Command::Keys(KeysCommand::List { .. })
                | Command::Env(EnvCommand::List)
                | Command::Results(_)
        ),
    };
    if !ok {
        let why = match format {
            Format::Flagd => {
                "-o flagd prints flags as a flagd flag-definition file: `get flags -o flagd` or \
                             `get flag KEY -o flagd`"
                    .to_owned()
            }
            Format::Csv => "-o csv is for `results` only".to_owned(),
            Format::Yaml => "-o yaml is for the read commands: get, list, audit, snapshot, propagation, \
                             keys list, env list, results"
                .to_owned(),
            _ => {
                format!("-o {} is not for the completion command: it prints a shell script", format.as_str())
            }
        };
        return Err(CtlError::Usage(why));
    }
    match command {
        Command::Get { kind, key: None } if format != Format::Flagd => Err(missing_key(*kind)),
        _ => Ok(()),
    }
}

fn missing_key(kind: Kind) -> CtlError {
    let all = if kind == Kind::Flag { " (or every flag, as a flagd file: `get flags -o flagd`)" } else { "" };
    CtlError::Usage(format!("get {kind}: give the key of the {kind} to print{all}"))
}
