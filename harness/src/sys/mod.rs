//! Process plumbing shared by every substrate and subject: the thread that
//! forks children, the reaper that cleans up after Ctrl-C or a panic, and
//! temporary directories registered with it.

pub mod reaper;
pub mod spawner;

pub use reaper::TempDir;
