//! What every service's settings tests check of its binary: bad settings exit 64 with one
//! line naming the setting, before anything is bound; `--help` and `--version` still exit 0.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A duration whose seconds overflow `Duration`.
pub const HUGE_DURATION: &str = "99999999999999999999s";

/// Flags, environment variables, and the setting the error must name.
pub type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// A service binary under test, by path (`env!("CARGO_BIN_EXE_<name>")`).
#[derive(Debug, Clone, Copy)]
pub struct Binary(pub &'static str);

impl Binary {
    /// Runs the binary with `args` and `env` (and no other `COHORT_*` variable), killed after
    /// 30 s.
    pub fn run(self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(self.0);
        for (name, _) in std::env::vars() {
            if name.starts_with("COHORT_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("wait for the binary").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("binary output")
    }

    /// Exit 64, no panic, one line on stderr naming `setting`.
    pub fn assert_usage_error(self, args: &[&str], env: &[(&str, &str)], setting: &str) {
        let out = self.run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} {env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?} {env:?}: not one line: {stderr}");
        assert!(lines[0].contains(setting), "{args:?} {env:?}: {setting} is not named: {stderr}");
    }

    /// Every case is a usage error naming its setting.
    pub fn assert_usage_errors(self, cases: &[Case<'_>]) {
        for (args, env, setting) in cases {
            self.assert_usage_error(args, env, setting);
        }
    }

    /// `--help` and `--version` print something and exit 0.
    pub fn assert_help_and_version(self) {
        for flag in ["--help", "--version"] {
            let out = self.run(&[flag], &[]);
            assert_eq!(out.status.code(), Some(0), "{flag}");
            assert!(!out.stdout.is_empty(), "{flag}");
        }
    }

    /// A bad setting is reported before the gRPC address is bound: with the address taken,
    /// binding first would fail differently.
    pub fn assert_settings_checked_before_binding(self) {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = taken.local_addr().expect("its address").to_string();
        self.assert_usage_error(
            &["--grpc-addr", &addr, "--shutdown-grace", HUGE_DURATION],
            &[],
            "--shutdown-grace",
        );
    }
}
