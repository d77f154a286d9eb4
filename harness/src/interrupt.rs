//! A process-wide stop for Ctrl-C and SIGTERM. Runs in flight end early as
//! errors, queued runs do not start, and the caller still writes its report
//! of what finished.

use std::sync::OnceLock;
use tokio::sync::watch;

/// What an interrupted run's result says.
pub const INTERRUPTED: &str = "interrupted before the run finished";

fn channel() -> &'static watch::Sender<bool> {
    static CHANNEL: OnceLock<watch::Sender<bool>> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel(false).0)
}

/// Asks every run in flight to stop.
pub fn request() {
    channel().send_replace(true);
}

/// A receiver that sees the stop; `wait_for(|asked| *asked)` resolves at
/// once if it was already asked for.
pub fn subscribe() -> watch::Receiver<bool> {
    channel().subscribe()
}

/// Whether anything would hear a stop: runs of a matrix are in flight or
/// queued. Otherwise the caller has nothing to wait for.
pub fn heard() -> bool {
    channel().receiver_count() > 0
}
