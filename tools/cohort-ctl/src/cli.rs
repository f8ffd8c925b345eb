//! The command line: global options (flags or `COHORT_*` environment variables) and every
//! command's arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::console::Format;
use crate::definition::{Kind, kind_arg};
use crate::document::FileFormat;

/// The exit statuses, for `--help` (values in `crate::error::exit`; docs/cli.md lists them too).
pub const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  failure: a call refused or failed, invalid files, apply --prune not confirmed
  2  bad command line: unknown option, missing argument or API key, a format the command
     cannot print";

#[derive(Debug, Parser)]
#[command(
    name = "cohortctl",
    version,
    about = "Operate Cohort: environments, API keys, flags and experiments",
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The config service's gRPC endpoint.
    #[arg(long, env = "COHORT_ENDPOINT", default_value = "http://127.0.0.1:50051", global = true)]
    pub endpoint: String,

    /// The analysis service's gRPC endpoint (`results`), reached with the same key and TLS
    /// options as --endpoint.
    #[arg(long, env = "COHORT_ANALYSIS_ENDPOINT", default_value = "http://127.0.0.1:50054", global = true)]
    pub analysis_endpoint: String,

    /// An admin API key (an SDK key can only read).
    #[arg(long, env = "COHORT_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,

    /// The environment to work in (key or id).
    #[arg(short = 'e', long, env = "COHORT_ENVIRONMENT", default_value = "production", global = true)]
    pub environment: String,

    /// `table` for people, `json` for scripts; `yaml` for the read commands (get, list, audit,
    /// snapshot, propagation, keys list, env list, results); `csv` for `results`; `flagd`
    /// for `get flags` (a flagd flag-definition file).
    #[arg(short = 'o', long, env = "COHORT_OUTPUT", value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,

    /// Deadline for connecting and for each call, e.g. `500ms`, `30s`, `2m`.
    #[arg(long, env = "COHORT_TIMEOUT", value_parser = parse_duration, default_value = "30s", global = true)]
    pub timeout: Duration,

    /// For an `https://` endpoint: PEM CA certificates the service's certificate must chain
    /// to, instead of the system's roots.
    #[arg(long, env = "COHORT_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,

    /// A PEM client certificate (with `--client-key`) for a service that asks for one.
    #[arg(long, env = "COHORT_CLIENT_CERT", requires = "client_key", global = true)]
    pub client_cert: Option<std::path::PathBuf>,

    /// The private key of `--client-cert`.
    #[arg(long, env = "COHORT_CLIENT_KEY", requires = "client_cert", global = true)]
    pub client_key: Option<std::path::PathBuf>,
}

impl Global {
    /// TLS for an `https://` endpoint.
    pub fn tls(&self) -> cohort_transport::ClientTls {
        cohort_transport::ClientTls {
            ca_file: self.ca_file.clone(),
            identity: self.client_cert.clone().zip(self.client_key.clone()),
            server_name: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the first organization, its environment (-e) and an admin key; prints the key once.
    Bootstrap(BootstrapArgs),
    /// Environments of the organization.
    #[command(subcommand)]
    Env(EnvCommand),
    /// API keys of the organization.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Keys for Cohort's own services (analysis and events calling the config service).
    #[command(subcommand, name = "service-key")]
    ServiceKey(ServiceKeyCommand),
    /// Make the environment hold the definitions in files (YAML or JSON; Cohort's own or
    /// flagd flag-definition files), idempotently.
    Apply(ApplyArgs),
    /// Check definition files offline, with no server or key: read them as `apply` does, put
    /// them together as one environment and compile it. Prints every problem as
    /// FILE:LINE: field: message; exits 0 when the files are valid, 1 when not.
    Validate(ValidateArgs),
    /// Evaluate the files' flags and experiments offline for one context, as an SDK would,
    /// and explain each answer (the rule that matched, the buckets of splits and experiments).
    Eval(EvalArgs),
    /// Print one definition (YAML, or JSON with -o json), ready to edit and apply; with
    /// -o flagd, the environment's flags (or the one named) as a flagd flag-definition file.
    Get {
        #[arg(value_parser = kind_arg)]
        kind: Kind,
        /// The definition's key (optional with -o flagd: every flag).
        key: Option<String>,
    },
    /// List definitions, of one kind or all.
    List {
        #[arg(value_parser = kind_arg)]
        kind: Option<Kind>,
    },
    /// Delete a definition (live experiments must be completed first).
    Delete {
        #[arg(value_parser = kind_arg)]
        kind: Kind,
        key: String,
    },
    /// Start a draft experiment.
    Start(TransitionArgs),
    /// Pause a running experiment (it keeps its layer range).
    Pause(TransitionArgs),
    /// Resume a paused experiment.
    Resume(TransitionArgs),
    /// Complete a running or paused experiment, for good.
    Complete(TransitionArgs),
    /// The audit log, newest first.
    Audit(AuditArgs),
    /// Print the environment's whole config (cohort-core `Definitions` JSON).
    Snapshot,
    /// How far a config version (default: the current one) has reached connected SDKs.
    Propagation { version: Option<u64> },
    /// An experiment's scorecard from the analysis service: per variant and metric the
    /// units, conversions or mean, lift with its interval and significance; SRM, guardrails
    /// and looks.
    Results(ResultsArgs),
    /// Turn a flag on or off.
    #[command(subcommand)]
    Flag(FlagCommand),
    /// Print a shell completion script, e.g. `cohortctl completion bash > /etc/bash_completion.d/cohortctl`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The experiment's key or id.
    pub experiment: String,
    /// The result of every formal look, newest first, instead of the latest.
    #[arg(long)]
    pub looks: bool,
}

#[derive(Debug, Subcommand)]
pub enum FlagCommand {
    /// Set the flag's `enabled` to true (written at the revision read, like apply).
    Enable(FlagArgs),
    /// Set the flag's `enabled` to false: it serves its off variation.
    Disable(FlagArgs),
}

#[derive(Debug, Args)]
pub struct FlagArgs {
    /// The flag's key.
    pub key: String,
    /// Why: recorded in the audit log with the update.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The organization's name.
    #[arg(long, env = "COHORT_BOOTSTRAP_ORGANIZATION")]
    pub organization: String,
    /// The server's bootstrap token, when it has one.
    #[arg(long, env = "COHORT_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment.
    Create {
        /// 1 to 64 characters of a-z 0-9 - _
        key: String,
        /// A display name (defaults to the key).
        #[arg(long)]
        name: Option<String>,
        /// Browser origins allowed to evaluate with the environment's keys, e.g.
        /// `https://app.example.com` (comma-separated or repeated; `*` for any). None by default.
        #[arg(long = "cors-origin", value_delimiter = ',')]
        cors_origins: Vec<String>,
    },
    /// Rename an environment or replace its allowed browser origins.
    Update {
        /// The environment's key or id.
        key: String,
        #[arg(long)]
        name: Option<String>,
        /// The allowed browser origins, replacing the current ones (comma-separated or repeated).
        #[arg(long = "cors-origin", value_delimiter = ',', conflicts_with = "no_cors_origins")]
        cors_origins: Vec<String>,
        /// Allow no browser origin.
        #[arg(long)]
        no_cors_origins: bool,
    },
    /// List environments with their config versions.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    /// Reaches every environment and may write.
    Admin,
    /// Reads one environment (-e): for servers.
    Sdk,
    /// Evaluates in one environment (-e) through the evaluation service, and nothing else: for
    /// browsers and mobile apps, where anyone can read the key.
    Client,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long, value_enum)]
        kind: KeyKind,
        #[arg(long)]
        name: String,
        /// Admin keys: may read but never write.
        #[arg(long)]
        read_only: bool,
        /// Admin keys: reach only these environments (keys or ids, comma-separated or repeated).
        #[arg(long = "only-env", value_delimiter = ',')]
        only_env: Vec<String>,
        /// The key stops working after this long, e.g. `90d`, `12h`.
        #[arg(long, value_parser = parse_span)]
        expires_in: Option<Duration>,
    },
    /// List active keys (with --all, revoked ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
    /// A new secret for a key (same kind, name, environment and scope), printed once; the old
    /// secret keeps working for the overlap.
    Rotate {
        id: String,
        /// How long the old secret keeps working, e.g. `24h`; `0s` revokes it at once.
        #[arg(long, value_parser = parse_span, default_value = "1h")]
        overlap: Duration,
        /// The new secret stops working after this long.
        #[arg(long, value_parser = parse_span)]
        expires_in: Option<Duration>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceKeyCommand {
    /// Make a service key, offline: prints its secret (for the service's COHORT_SERVICE_KEY)
    /// and the NAME=SHA256 entry for the config service's --service-keys. The config service
    /// stores only the hash; to rotate, list the old and new entries until every replica of
    /// the service uses the new secret, then drop the old one.
    Create {
        /// The service's name, as audit entries will show it (e.g. cohort-analysis).
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A file or directory of .yaml/.yml/.json files; `-` reads stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// How to read the files: `auto` tells them by shape (`flags` as an object of flags by
    /// key is a flagd flag-definition file), `cohort` or `flagd` insists on one.
    #[arg(long, value_enum, default_value_t = FileFormat::Auto)]
    pub format: FileFormat,
    /// Show what would change, and validate it, without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the local validation of the result and let the server judge the batch
    /// (for a cohortctl older than the server). The batch is still all or nothing.
    #[arg(long)]
    pub server_validation_only: bool,
    /// Also delete what the environment holds and the files no longer define, of the kinds
    /// the files define (a file of flags prunes flags only). Lists them and asks first; in
    /// the same batch as the writes, so all or nothing. Refused when a running or paused
    /// experiment would go.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: delete without asking (needed when stdin is not a terminal).
    #[arg(short = 'y', long, requires = "prune")]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A file or directory of .yaml/.yml/.json files; `-` reads stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// How to read the files, as for `apply`: `auto`, `cohort` or `flagd`.
    #[arg(long, value_enum, default_value_t = FileFormat::Auto)]
    pub format: FileFormat,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A file or directory of .yaml/.yml/.json files; `-` reads stdin. Repeat for more
    /// (`-f a.yaml -f flags/`): each `-f` takes one, so the keys can follow.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// How to read the files, as for `apply`: `auto`, `cohort` or `flagd`.
    #[arg(long, value_enum, default_value_t = FileFormat::Auto)]
    pub format: FileFormat,
    /// The evaluation context as OpenFeature JSON: `targetingKey` (the unit) and attributes
    /// (strings, numbers, booleans, lists of strings); nested objects are dotted names
    /// (`{"user": {"plan": "pro"}}` is `user.plan`). Default: no targeting key, no attributes.
    #[arg(long, value_name = "JSON", value_parser = crate::offline::parse_context)]
    pub context: Option<cohort_core::Context>,
    /// The flags and experiments to evaluate (default: every one, flags first).
    pub keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TransitionArgs {
    /// The experiment's key.
    pub key: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long, value_parser = kind_arg)]
    pub kind: Option<Kind>,
    #[arg(long)]
    pub key: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Every environment and the organization's own entries (keys, environments), not only -e.
    #[arg(long)]
    pub all_environments: bool,
}

/// A duration as humantime reads it (`500ms`, `30s`, `2m`, `12h`, `90d`, `1h 30m`), or whole
/// seconds.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration like 500ms, 30s, 2m or 90d: {e}")),
    }
}

/// `--timeout`: more than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d.is_zero() { Err("the timeout must be more than zero".into()) } else { Ok(d) }
}

/// `--expires-in` and `--overlap`: zero to ten years (an overlap of zero revokes at once).
fn parse_span(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d > Duration::from_secs(10 * 365 * 86_400) {
        return Err("at most ten years".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{Cli, Command, parse_duration, parse_span};
    use crate::console::Format;
    use crate::document::FileFormat;

    #[test]
    fn durations_read_as_humantime_or_whole_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err(), "a timeout of zero");
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
        // An overlap of zero revokes at once; expiry in days; no more than ten years.
        assert_eq!(parse_span("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_span("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert!(parse_span("11years").is_err());
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cohortctl").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn apply_reads_either_format_by_shape_unless_told() {
        let format = |args: &[&str]| match parse(args).command {
            Command::Apply(a) => a.format,
            other => panic!("{other:?}"),
        };
        assert_eq!(format(&["apply", "-f", "x.json"]), FileFormat::Auto);
        assert_eq!(format(&["apply", "-f", "x.json", "--format", "flagd"]), FileFormat::Flagd);
        assert_eq!(format(&["apply", "--format", "cohort", "-f", "x.json"]), FileFormat::Cohort);
        assert!(Cli::try_parse_from(["cohortctl", "apply", "-f", "x", "--format", "yaml"]).is_err());
    }

    #[test]
    fn eval_takes_one_file_per_f_so_keys_can_follow() {
        let Command::Eval(a) = parse(&[
            "eval",
            "-f",
            "a.yaml",
            "-f",
            "dir",
            "--context",
            r#"{"targetingKey": "u-1"}"#,
            "x",
            "y",
        ])
        .command
        else {
            panic!("eval")
        };
        assert_eq!(a.files, [std::path::PathBuf::from("a.yaml"), std::path::PathBuf::from("dir")]);
        assert_eq!(a.keys, ["x", "y"]);
        assert_eq!(a.context, Some(cohort_core::Context::new("u-1")));
        let refused = Cli::try_parse_from(["cohortctl", "eval", "-f", "a", "--context", "nope"]).unwrap_err();
        assert!(refused.to_string().contains("--context"), "{refused}");
        let Command::Validate(v) = parse(&["validate", "-f", "a.yaml", "b/", "--format", "flagd"]).command
        else {
            panic!("validate")
        };
        assert_eq!(v.files.len(), 2);
        assert_eq!(v.format, FileFormat::Flagd);
    }

    #[test]
    fn flagd_output_is_for_getting_flags() {
        let check = |args: &[&str]| crate::check_output(&parse(args)).map_err(|e| e.to_string());
        let cli = parse(&["get", "flags", "-o", "flagd"]);
        assert_eq!(cli.global.output, Format::Flagd);
        assert!(matches!(cli.command, Command::Get { key: None, .. }));
        assert_eq!(check(&["get", "flags", "-o", "flagd"]), Ok(()));
        assert_eq!(check(&["get", "flag", "new-welcome", "--output", "flagd"]), Ok(()));
        assert_eq!(check(&["get", "flag", "new-welcome"]), Ok(()));
        let refused = check(&["get", "experiments", "-o", "flagd"]).unwrap_err();
        assert!(refused.starts_with("-o flagd prints flags"), "{refused}");
        assert!(check(&["list", "-o", "flagd"]).unwrap_err().starts_with("-o flagd prints flags"));
        assert!(check(&["apply", "-f", "x", "-o", "flagd"]).is_err());
        let refused = check(&["get", "flag"]).unwrap_err();
        assert!(refused.starts_with("get flag: give the key"), "{refused}");
    }

    #[test]
    fn each_format_is_for_the_commands_that_can_print_it() {
        let check = |args: &[&str]| crate::check_output(&parse(args)).map_err(|e| e.to_string());
        for read in [
            &["get", "flag", "x"][..],
            &["list"],
            &["audit"],
            &["snapshot"],
            &["propagation"],
            &["keys", "list"],
            &["env", "list"],
            &["results", "exp"],
        ] {
            assert_eq!(check(&[read, &["-o", "yaml"]].concat()), Ok(()), "{read:?}");
        }
        assert_eq!(check(&["results", "exp", "--looks", "-o", "csv"]), Ok(()));
        for (args, says) in [
            (&["env", "create", "x", "-o", "yaml"][..], "-o yaml is for the read commands"),
            (&["flag", "enable", "x", "-o", "yaml"], "-o yaml is for the read commands"),
            (&["keys", "create", "--kind", "sdk", "--name", "n", "-o", "yaml"], "-o yaml is for"),
            (&["list", "-o", "csv"], "-o csv is for `results` only"),
            (&["get", "flag", "x", "-o", "csv"], "-o csv is for `results` only"),
            (&["completion", "zsh", "-o", "json"], "-o json is not for the completion command"),
            (&["results", "x", "-o", "flagd"], "-o flagd prints flags"),
        ] {
            let refused = check(args).unwrap_err();
            assert!(refused.starts_with(says), "{args:?}: {refused}");
        }
    }

    #[test]
    fn new_commands_parse_and_yes_needs_prune() {
        let cli = parse(&["results", "exp-1", "--looks", "--analysis-endpoint", "https://a:1"]);
        assert_eq!(cli.global.analysis_endpoint, "https://a:1");
        assert!(matches!(cli.command, Command::Results(ref r) if r.looks && r.experiment == "exp-1"));
        assert_eq!(parse(&["list"]).global.analysis_endpoint, "http://127.0.0.1:50054");
        let Command::Flag(super::FlagCommand::Disable(f)) =
            parse(&["flag", "disable", "k", "--reason", "why"]).command
        else {
            panic!("flag disable")
        };
        assert_eq!((f.key.as_str(), f.reason.as_deref()), ("k", Some("why")));
        let Command::Apply(a) = parse(&["apply", "-f", "x", "--prune", "-y"]).command else {
            panic!("apply")
        };
        assert!(a.prune && a.yes);
        assert!(
            Cli::try_parse_from(["cohortctl", "apply", "-f", "x", "--yes"]).is_err(),
            "--yes without --prune"
        );
        assert!(Cli::try_parse_from(["cohortctl", "completion", "ksh"]).is_err());
        assert!(matches!(parse(&["completion", "elvish"]).command, Command::Completion { .. }));
        assert!(matches!(parse(&["completion", "powershell"]).command, Command::Completion { .. }));
    }
}
