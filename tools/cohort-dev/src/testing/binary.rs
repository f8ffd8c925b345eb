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
        let mut child = self.command(args, env).stdout(Stdio::piped()).spawn().expect("start the binary");
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

/// A service binary running as a process of its own, as an operator runs it.
#[derive(Debug)]
pub struct Process {
    /// Taken by [`Process::wait`].
    child: Option<std::process::Child>,
}

impl Binary {
    /// Starts the binary with `args` and `env` (and no other `COHORT_*` variable); its stderr
    /// is kept for [`Process::wait`].
    pub fn spawn(self, args: &[&str], env: &[(&str, &str)]) -> Process {
        let child = self.command(args, env).stdout(Stdio::null()).spawn().expect("start the binary");
        Process { child: Some(child) }
    }

    /// The command with `args` and `env` and no other `COHORT_*` variable; stdin closed,
    /// stderr kept.
    fn command(self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(self.0);
        for (name, _) in std::env::vars() {
            if name.starts_with("COHORT_") {
                command.env_remove(name);
            }
        }
        command.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stderr(Stdio::piped());
        command
    }
}

impl Process {
    /// Breaks the process's socket listening on `addr`, as when its interface goes away: a
    /// duplicate of it is taken from the process (`pidfd_getfd`, Linux 5.6) and shut down,
    /// so its next `accept` fails. The process itself is not signalled.
    pub fn break_listener(&self, addr: std::net::SocketAddr) {
        use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
        let raw = self.child.as_ref().expect("running").id();
        let pid = Pid::from_raw(i32::try_from(raw).expect("pid fits")).expect("a pid is not 0");
        let pidfd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open");
        let fds = std::fs::read_dir(format!("/proc/{raw}/fd")).expect("the process's descriptors");
        for entry in fds {
            let Ok(target) = entry.expect("a descriptor").file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(fd) = pidfd_getfd(&pidfd, target, PidfdGetfdFlags::empty()) else { continue };
            let socket = socket2::Socket::from(fd);
            // An accepted connection shares the listener's local address but has a peer.
            let listening = socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr)
                && socket.peer_addr().is_err();
            if listening {
                socket.shutdown(std::net::Shutdown::Both).expect("shut the listener down");
                return;
            }
        }
        panic!("process {raw} has no socket listening on {addr}");
    }

    /// Waits for the process to exit by itself within `timeout` (killed after it, and then the
    /// panic says so), and returns its status and stderr.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        while child.try_wait().expect("wait for the process").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("process output");
                panic!("still running after {timeout:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("process output")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A test that fails midway leaves no service behind.
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback address with a port free right now, for a process that must be told its ports.
pub fn free_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}
