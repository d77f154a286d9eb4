//! Deployer protocol v1: a deployer in any language, as a child process
//! speaking JSON lines over stdin and stdout (docs/deployer-protocol.md).

use super::{Deployer, DeployerError};
use crate::model::{Action, Observation, PROTOCOL_VERSION};
use crate::sys::reaper;
use nix::sys::signal::Signal;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The first reply also waits for the interpreter to start, which takes
/// seconds on a loaded machine.
const FIRST_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_GRACE: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    protocol: Option<u32>,
    actions: Vec<Action>,
}

/// A running external deployer.
pub struct ExternalDeployer {
    command: String,
    child: Child,
    pgid: i32,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    timeout: Duration,
    log_path: std::path::PathBuf,
}

/// A short name for a deployer command: the file name of its last path
/// argument (`example.py` and `example.sh` must not share run directories).
pub fn short_name(command: &str) -> String {
    let stem = command
        .split_whitespace()
        .rev()
        .find(|w| w.contains('/') || w.contains('.'))
        .and_then(|w| Path::new(w).file_name())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| {
            command
                .split_whitespace()
                .next()
                .unwrap_or("deployer")
                .to_string()
        });
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("ext-{safe}")
}

impl ExternalDeployer {
    /// Starts `command` with `/bin/sh -c`; its stderr goes to `log_path`.
    pub fn spawn(command: &str, log_path: &Path, timeout: Duration) -> Result<Self, DeployerError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            DeployerError::Failed(format!("cannot start deployer {command:?}: {what}: {e}"))
        };
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed("log directory", &e))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| failed("log file", &e))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .env("RAFTCERT_PROTOCOL", PROTOCOL_VERSION.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0);
        // SAFETY: only an async-signal-safe call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = crate::sys::spawner::on_spawner_thread(move || {
            reaper::start_group(|| cmd.spawn(), |c| Some(c.id()))
        })
        .map_err(|e| failed("spawn", &e))?;
        let pgid = child.id() as i32;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("stdout", &"not piped"))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ExternalDeployer {
            command: command.to_string(),
            stdin: child.stdin.take(),
            child,
            pgid,
            lines: rx,
            timeout,
            log_path: log_path.to_path_buf(),
        })
    }

    /// Why the deployer is gone: its exit status and last stderr line.
    fn gone(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let last = std::fs::read_to_string(&self.log_path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .map(|l| format!("; last stderr line: {}", truncate(&l, 200)))
            .unwrap_or_default();
        match status {
            Some(s) => format!("the deployer exited ({s}){last}"),
            None => format!("the deployer closed its standard output{last}"),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// Parses one reply line against the request's protocol version.
pub fn parse_reply(line: &str) -> Result<Vec<Action>, String> {
    let reply: Reply = serde_json::from_str(line)
        .map_err(|e| format!("bad reply: {e}; the line was {:?}", truncate(line, 200)))?;
    if let Some(p) = reply.protocol
        && p != PROTOCOL_VERSION
    {
        return Err(format!(
            "reply speaks protocol {p}, the request was protocol {PROTOCOL_VERSION}"
        ));
    }
    Ok(reply.actions)
}

impl Deployer for ExternalDeployer {
    fn reconcile(&mut self, observation: &Observation) -> Result<Vec<Action>, DeployerError> {
        let request = serde_json::to_string(observation)
            .map_err(|e| DeployerError::Failed(format!("encoding the request: {e}")))?;
        let written = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{request}").and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        if written.is_err() {
            return Err(DeployerError::Protocol(self.gone()));
        }
        let timeout = if observation.seq <= 1 {
            self.timeout.max(FIRST_REPLY_TIMEOUT)
        } else {
            self.timeout
        };
        match self.lines.recv_timeout(timeout) {
            Ok(line) => parse_reply(&line).map_err(DeployerError::Protocol),
            Err(RecvTimeoutError::Timeout) => Err(DeployerError::Protocol(format!(
                "no reply from {:?} within {:?} (request seq {})",
                self.command, timeout, observation.seq
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(DeployerError::Protocol(self.gone())),
        }
    }
}

impl Drop for ExternalDeployer {
    fn drop(&mut self) {
        // Closing stdin asks it to exit; after the grace, kill its group.
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        reaper::kill_groups_and_wait(&[self.pgid]);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_keep_the_extension_apart() {
        assert_eq!(
            short_name("python3 fixtures/deployers/example.py"),
            "ext-example-py"
        );
        assert_eq!(
            short_name("sh fixtures/deployers/example.sh"),
            "ext-example-sh"
        );
        assert_eq!(short_name("cd /x && sh a/b.sh"), "ext-b-sh");
    }
}
