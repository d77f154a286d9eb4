//! Process plumbing shared by every substrate and subject: the thread that
//! forks children, the reaper that cleans up after Ctrl-C or a panic, and
//! temporary directories registered with it.

pub mod reaper;
pub mod spawner;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

pub use reaper::TempDir;

/// A listening socket made before its user exists, handed over once. The
/// address stays taken in between: a probe by another run cannot slip in.
#[derive(Debug, Clone, Default)]
pub struct HeldListener(Arc<Mutex<Option<TcpListener>>>);

impl HeldListener {
    /// Listens on `addr` with SO_REUSEADDR and SO_REUSEPORT, as the
    /// services that take it over (and rebind after a crash) do.
    pub fn listen(addr: SocketAddr) -> std::io::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(64)?;
        Ok(HeldListener(Arc::new(Mutex::new(Some(socket.into())))))
    }

    /// The listener, to the first caller only.
    pub fn take(&self) -> Option<TcpListener> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
