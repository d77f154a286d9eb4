//! The reaper: a process-wide registry of what runs and what was created,
//! so Ctrl-C and panics leave nothing behind. Process groups and temporary
//! directories are registered here directly; a substrate that creates
//! anything else (containers, namespaces) registers its own cleanup hook.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

struct Groups {
    live: BTreeSet<i32>,
    /// Set by [`cleanup_everything`]: from then on nothing new starts in
    /// this process. Only the CLI's exit path calls it.
    closed: bool,
}

static GROUPS: Mutex<Groups> = Mutex::new(Groups {
    live: BTreeSet::new(),
    closed: false,
});
static DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
/// Cleanups registered by substrates, by name; each runs once per
/// [`cleanup_everything`] and must block until its work is done.
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// A substrate's cleanup, by name.
type Hook = (&'static str, fn());

/// Registers a substrate's cleanup for Ctrl-C and the CLI's exit; the same
/// name registered twice is kept once.
pub fn register_hook(name: &'static str, hook: fn()) {
    let mut hooks = HOOKS.lock().unwrap_or_else(|p| p.into_inner());
    if !hooks.iter().any(|(n, _)| *n == name) {
        hooks.push((name, hook));
    }
}

fn groups() -> std::sync::MutexGuard<'static, Groups> {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a process that leads its own group and registers the group, both
/// under the registry's lock. A run's tasks go on for a moment after an
/// interrupt; this way the interrupt's cleanup either kills what they start
/// or stops them from starting it.
pub fn start_group<C>(
    spawn: impl FnOnce() -> std::io::Result<C>,
    pid: impl FnOnce(&C) -> Option<u32>,
) -> std::io::Result<C> {
    groups().start(spawn, pid)
}

impl Groups {
    fn start<C>(
        &mut self,
        spawn: impl FnOnce() -> std::io::Result<C>,
        pid: impl FnOnce(&C) -> Option<u32>,
    ) -> std::io::Result<C> {
        if self.closed {
            return Err(std::io::Error::other(
                "interrupted: no new process may start",
            ));
        }
        let child = spawn()?;
        if let Some(pid) = pid(&child) {
            self.live.insert(pid as i32);
        }
        Ok(child)
    }
}

/// Whether the process is cleaning up to exit: no run may start.
pub fn is_closed() -> bool {
    groups().closed
}

pub fn unregister_group(pgid: i32) {
    groups().live.remove(&pgid);
}

pub fn register_dir(dir: &Path) {
    DIRS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir.to_path_buf());
}

pub fn unregister_dir(dir: &Path) {
    DIRS.lock().unwrap_or_else(|p| p.into_inner()).remove(dir);
}

/// Kills every process group we started and removes every temporary
/// directory; for the Ctrl-C handler, which then exits.
pub fn cleanup_everything() {
    let groups: Vec<i32> = {
        let mut groups = groups();
        groups.closed = true;
        groups.live.iter().copied().collect()
    };
    kill_groups_and_wait(&groups);
    let hooks: Vec<fn()> = HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, hook)| *hook)
        .collect();
    for hook in hooks {
        hook();
    }
    let dirs: Vec<PathBuf> = DIRS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    for dir in dirs {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// State and process group from a `/proc/.../stat` line.
fn state_and_group(stat: &str) -> Option<(&str, i32)> {
    // Fields after the parenthesised command: state, ppid, pgrp, ...
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether any thread of the process still runs. A killed Go program's
/// main thread turns zombie before its other threads have exited, and the
/// sockets close only with the last one.
fn any_thread_alive(process: &std::path::Path) -> bool {
    let Ok(threads) = std::fs::read_dir(process.join("task")) else {
        return false;
    };
    threads.flatten().any(|thread| {
        std::fs::read_to_string(thread.path().join("stat"))
            .ok()
            .and_then(|stat| state_and_group(&stat).map(|(state, _)| state != "Z" && state != "X"))
            .unwrap_or(false)
    })
}

/// Process groups that still have a process with a live thread.
fn live_groups(pgids: &[i32]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, pgrp)) = state_and_group(&stat) else {
            continue;
        };
        if pgids.contains(&pgrp) && !live.contains(&pgrp) && any_thread_alive(&entry.path()) {
            live.push(pgrp);
        }
    }
    live
}

/// Every process of the machine by process group, from `/proc`.
pub fn processes_by_group() -> std::collections::BTreeMap<i32, Vec<i32>> {
    let mut groups: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some((_, pgrp)) = state_and_group(&stat)
        {
            groups.entry(pgrp).or_default().push(pid);
        }
    }
    groups
}

/// SIGKILLs the groups and waits until their processes are gone, so their
/// ports are free when this returns.
pub fn kill_groups_and_wait(pgids: &[i32]) {
    for &pgid in pgids {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGCONT);
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    // Normally milliseconds; the bound only matters on a starved machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut live = live_groups(pgids);
    while !live.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        live = live_groups(pgids);
    }
    // A group still alive stays registered, for the next cleanup to kill.
    for pgid in pgids.iter().filter(|g| !live.contains(g)) {
        unregister_group(*pgid);
    }
}

/// A temporary directory removed on drop, and by [`cleanup_everything`].
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let path = base.join(format!(
                "{prefix}-{}-{}-{attempt}",
                std::process::id(),
                crate::util::unique_suffix()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    register_dir(&path);
                    return Ok(TempDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no unique temporary directory name"))
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        unregister_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(closed: bool) -> Groups {
        Groups {
            live: BTreeSet::new(),
            closed,
        }
    }

    #[test]
    fn stat_lines_are_read_after_the_last_parenthesis() {
        let stat = "4242 (etcd (m0)) S 1 4240 4240 0 -1";
        assert_eq!(state_and_group(stat), Some(("S", 4240)));
        assert_eq!(state_and_group("4242 (etcd) Z"), None);
    }

    #[test]
    fn this_process_has_a_live_thread_and_a_missing_one_has_none() {
        assert!(any_thread_alive(std::path::Path::new("/proc/self")));
        assert!(!any_thread_alive(std::path::Path::new("/proc/no-such-pid")));
    }

    #[test]
    fn an_open_registry_starts_and_registers_the_group() {
        let mut groups = registry(false);
        let started = groups.start(|| Ok(4242u32), |pid| Some(*pid));
        assert_eq!(started.ok(), Some(4242));
        assert!(groups.live.contains(&4242));
    }

    #[test]
    fn after_cleanup_nothing_new_starts() {
        let mut groups = registry(true);
        let mut spawned = false;
        let started = groups.start(
            || {
                spawned = true;
                Ok(4242u32)
            },
            |pid| Some(*pid),
        );
        assert!(started.is_err());
        assert!(!spawned, "the spawn ran after cleanup");
        assert!(groups.live.is_empty());
    }
}
