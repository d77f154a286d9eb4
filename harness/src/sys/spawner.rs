//! Every child process is forked from one long-lived thread.
//!
//! Children get `PR_SET_PDEATHSIG`, which fires when the *thread* that
//! forked them exits, not the process. Runtime threads come and go (idle
//! blocking threads exit, `block_in_place` converts workers), so forking
//! from them would kill members at random. This thread never exits.

use std::sync::mpsc::{Sender, channel, sync_channel};
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

fn sender() -> Sender<Job> {
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            std::thread::Builder::new()
                .name("raftcert-spawner".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .unwrap_or_else(|e| panic!("cannot start the spawner thread: {e}"));
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Runs `f` (a fork) on the spawner thread and returns its result.
pub fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    if sender().send(job).is_err() {
        panic!("the spawner thread is gone");
    }
    rx.recv()
        .unwrap_or_else(|_| panic!("the spawner thread dropped a job"))
}
