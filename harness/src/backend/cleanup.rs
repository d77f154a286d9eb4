//! Process-wide registry of what runs and what was created, so Ctrl-C and
//! panics leave nothing behind.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub fn register_group(pgid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(pgid);
}

pub fn unregister_group(pgid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&pgid);
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
    let groups: Vec<i32> = GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect();
    kill_groups_and_wait(&groups);
    super::docker::cleanup_live_runs_blocking();
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

/// Process groups that still have a live (non-zombie) member.
fn live_groups(pgids: &[i32]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp: i32 = fields.nth(1).and_then(|f| f.parse().ok()).unwrap_or(0);
        if state != "Z" && state != "X" && pgids.contains(&pgrp) && !live.contains(&pgrp) {
            live.push(pgrp);
        }
    }
    live
}

/// SIGKILLs the groups and waits until their processes are gone, so their
/// ports are free when this returns.
pub fn kill_groups_and_wait(pgids: &[i32]) {
    for &pgid in pgids {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGCONT);
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        unregister_group(pgid);
    }
    // Normally milliseconds; the bound only matters on a starved machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !live_groups(pgids).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
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
