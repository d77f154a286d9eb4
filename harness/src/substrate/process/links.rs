//! The network between members of the process substrate, shaped in the
//! harness, without root. Each member listens on ports of its own loopback
//! address that nobody advertises; raftcert listens on the advertised ports
//! (peer and client) and forwards every connection, as etcd's own e2e tests
//! do with `pkg/proxy`.
//!
//! - A **cut** between two members stalls the connections between them
//!   (nothing is read or written, as if packets were dropped) and holds new
//!   ones unanswered; the heal then closes them (a reset after a long
//!   partition), and the members dial again.
//! - A **disconnect** does the same to every connection of one member,
//!   peers and clients (the harness included) alike.
//! - A **delay** holds each chunk sent on a member's links for a latency
//!   plus a jitter either way, keeping their order, as a slow network does.
//!
//! Every peer connection comes from 127.0.0.1, so the sender of each is
//! found by its socket: the connection's source port leads to a socket
//! inode in `/proc/net/tcp`, and the inode to the member process that
//! holds it. That works with TLS too, where no header can be read.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which of a member's ports a proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Peer,
    Client,
}

/// The rules in force, changed by faults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rules {
    /// (from, to): traffic from `from` to `to` is dropped.
    cuts: BTreeSet<(String, String)>,
    disconnected: BTreeSet<String>,
    /// (from, to) -> latency and jitter of that direction.
    delays: BTreeMap<(String, String), (Duration, Duration)>,
}

impl Rules {
    fn is_clear(&self) -> bool {
        self.cuts.is_empty() && self.disconnected.is_empty() && self.delays.is_empty()
    }
}

/// The member that opened a connection, found only when a rule needs it
/// (reading `/proc` for every connection etcd opens costs too much).
struct Sender {
    peer: SocketAddr,
    local: SocketAddr,
    owners: Arc<Mutex<BTreeMap<String, i32>>>,
    found: std::sync::OnceLock<Option<String>>,
}

impl Sender {
    fn get(&self) -> Option<&str> {
        self.found
            .get_or_init(|| sender_of(self.peer, self.local, &self.owners))
            .as_deref()
    }
}

/// One direction of a proxied connection.
#[derive(Clone)]
struct Link {
    /// The member whose proxy accepted the connection.
    dest: String,
    /// Who opened it: a member found on demand, or `None` for a client
    /// connection (the harness, a deployer), which only a disconnect cuts.
    sender: Option<Arc<Sender>>,
    /// Bytes flow from the sender to `dest` (else back).
    towards_dest: bool,
}

impl Link {
    /// Whether the rules drop this direction's bytes.
    fn blocked(&self, rules: &Rules) -> bool {
        if rules.is_clear() {
            return false;
        }
        if rules.disconnected.contains(&self.dest) {
            return true;
        }
        let Some(sender) = self.sender.as_ref().and_then(|s| s.get()) else {
            return false;
        };
        rules.disconnected.contains(sender) || rules.cuts.contains(&self.ends(sender))
    }

    /// How long this direction's bytes are held, if at all.
    fn delay(&self, rules: &Rules) -> Option<(Duration, Duration)> {
        if rules.delays.is_empty() {
            return None;
        }
        let sender = self.sender.as_ref().and_then(|s| s.get())?;
        rules.delays.get(&self.ends(sender)).copied()
    }

    /// (from, to) of this direction, given the member that opened it.
    fn ends(&self, sender: &str) -> (String, String) {
        let (from, to) = if self.towards_dest {
            (sender, self.dest.as_str())
        } else {
            (self.dest.as_str(), sender)
        };
        (from.to_string(), to.to_string())
    }
}

/// The links of one run: its rules, who owns which process group, and the
/// proxies' tasks.
pub struct Links {
    rules: watch::Sender<Rules>,
    /// Slot -> process group of its running member.
    owners: Arc<Mutex<BTreeMap<String, i32>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for Links {
    fn default() -> Self {
        Self::new()
    }
}

impl Links {
    pub fn new() -> Self {
        Links {
            rules: watch::channel(Rules::default()).0,
            owners: Arc::default(),
            tasks: Mutex::default(),
        }
    }

    /// Drops traffic between every member of `a` and every member of `b`,
    /// both ways, until [`Links::heal`].
    pub fn cut(&self, a: &[String], b: &[String]) {
        self.rules.send_modify(|rules| {
            for x in a {
                for y in b {
                    rules.cuts.insert((x.clone(), y.clone()));
                    rules.cuts.insert((y.clone(), x.clone()));
                }
            }
        });
    }

    pub fn heal(&self) {
        self.rules.send_modify(|rules| rules.cuts.clear());
    }

    pub fn disconnect(&self, slot: &str) {
        self.rules.send_modify(|rules| {
            rules.disconnected.insert(slot.to_string());
        });
    }

    /// Holds traffic between `slot` and each of `peers`, both ways, for
    /// `latency` plus up to `jitter` either way, until [`Links::undelay`].
    pub fn delay(&self, slot: &str, peers: &[String], latency: Duration, jitter: Duration) {
        self.rules.send_modify(|rules| {
            for peer in peers {
                for ends in [(slot, peer.as_str()), (peer.as_str(), slot)] {
                    let ends = (ends.0.to_string(), ends.1.to_string());
                    rules.delays.insert(ends, (latency, jitter));
                }
            }
        });
    }

    pub fn undelay(&self, slot: &str) {
        self.rules
            .send_modify(|rules| rules.delays.retain(|(a, b), _| a != slot && b != slot));
    }

    pub fn reconnect(&self, slot: &str) {
        self.rules.send_modify(|rules| {
            rules.disconnected.remove(slot);
        });
    }

    /// The process group a slot's member runs as, for telling senders
    /// apart; `None` once it exited.
    pub fn set_owner(&self, slot: &str, pgid: Option<i32>) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        match pgid {
            Some(pgid) => owners.insert(slot.to_string(), pgid),
            None => owners.remove(slot),
        };
    }

    /// Listens on `listen` (a member's advertised address) and forwards
    /// every connection to `target` (where the member really listens).
    /// `lease` is held for as long as the listener is open (the run's
    /// address lease: no other run may get these addresses before then).
    pub fn serve(
        &self,
        slot: &str,
        port: Port,
        listen: SocketAddr,
        target: SocketAddr,
        lease: impl Send + 'static,
    ) -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind(listen).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                std::io::Error::new(e.kind(), format!("{e}; held by {}", holders_of(listen)))
            } else {
                e
            }
        })?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let rules = self.rules.subscribe();
        let owners = self.owners.clone();
        let slot = slot.to_string();
        let task = tokio::spawn(async move {
            let _lease = lease;
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((inbound, from)) = accepted else { continue };
                        let sender = (port == Port::Peer).then(|| {
                            Arc::new(Sender {
                                peer: from,
                                local: listen,
                                owners: owners.clone(),
                                found: std::sync::OnceLock::new(),
                            })
                        });
                        let link = Link {
                            dest: slot.clone(),
                            sender,
                            towards_dest: true,
                        };
                        connections.spawn(forward(inbound, target, link, rules.clone()));
                    }
                    // Reap finished connections as they go.
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        Ok(())
    }
}

impl Links {
    /// Stops every proxy and waits until its listener and connections are
    /// closed, so the addresses are free when this returns (an abort alone
    /// closes them later, on the runtime's time).
    pub async fn close(&self) {
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        // Aborting a proxy drops its connections with it.
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// One connection, forwarded to the member at `target` while its links
/// are open.
async fn forward(
    inbound: TcpStream,
    target: SocketAddr,
    there: Link,
    mut rules: watch::Receiver<Rules>,
) {
    let back = Link {
        towards_dest: false,
        ..there.clone()
    };
    let either_way = |r: &Rules| there.blocked(r) || back.blocked(r);
    // A connection made across a cut is held unanswered, then closed.
    if either_way(&rules.borrow_and_update()) {
        let _ = rules.wait_for(|r| !either_way(r)).await;
        return;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (up_read, up_write) = upstream.into_split();
    // Either direction ending (EOF, an error, a cut) ends the connection.
    tokio::select! {
        _ = pump(in_read, up_write, there.clone(), rules.clone()) => {}
        _ = pump(up_read, in_write, back.clone(), rules.clone()) => {}
    }
}

/// Copies bytes one way while the link is open. Once it is cut, nothing
/// more is read or written until the rules open it again, and then the
/// connection ends (its stalled bytes are lost, as on a real cut). A
/// delayed link hands each chunk to the writer with the time it is due,
/// never before an earlier one.
async fn pump(
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    mut rules: watch::Receiver<Rules>,
) {
    let (chunks, mut due_chunks) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(256);
    let writer = async move {
        while let Some((due, bytes)) = due_chunks.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if dst.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_due = Instant::now();
        let mut jitter_state = crate::util::unique_suffix();
        loop {
            if link.blocked(&rules.borrow_and_update()) {
                let _ = rules.wait_for(|r| !link.blocked(r)).await;
                return;
            }
            tokio::select! {
                read = src.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let current = rules.borrow().clone();
                    // A rule that changed while bytes were in flight drops them.
                    if link.blocked(&current) {
                        continue;
                    }
                    let mut due = Instant::now();
                    if let Some((latency, jitter)) = link.delay(&current) {
                        jitter_state = crate::util::splitmix64(jitter_state);
                        due += jittered(latency, jitter, jitter_state);
                    }
                    // Bytes of one stream never overtake each other.
                    last_due = last_due.max(due);
                    if chunks.send((last_due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
                // A cut stalls an idle connection too.
                changed = rules.changed() => if changed.is_err() { return },
            }
        }
    };
    // The writer finishes what the reader queued, unless its end is gone.
    tokio::join!(reader, writer);
}

/// `latency` moved by up to `jitter` either way, by a random value.
fn jittered(latency: Duration, jitter: Duration, random: u64) -> Duration {
    let span = jitter.as_micros() as u64 * 2 + 1;
    let offset = Duration::from_micros(random % span);
    (latency + offset).saturating_sub(jitter)
}

/// The member whose process holds the other end of a connection accepted
/// on `local` from `peer`.
fn sender_of(
    peer: SocketAddr,
    local: SocketAddr,
    owners: &Mutex<BTreeMap<String, i32>>,
) -> Option<String> {
    let inode = socket_inode(&std::fs::read_to_string("/proc/net/tcp").ok()?, peer, local)?;
    let owners: Vec<(String, i32)> = owners
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(s, g)| (s.clone(), *g))
        .collect();
    // The group leader is the member itself unless a start script forked it.
    if let Some((slot, _)) = owners.iter().find(|(_, g)| holds(*g, inode)) {
        return Some(slot.clone());
    }
    let groups = crate::sys::reaper::processes_by_group();
    owners.into_iter().find_map(|(slot, pgid)| {
        groups
            .get(&pgid)?
            .iter()
            .any(|pid| holds(*pid, inode))
            .then_some(slot)
    })
}

/// Who holds sockets whose local address is `addr`: each socket's TCP
/// state and its process, from `/proc` (for an "address in use" error).
fn holders_of(addr: SocketAddr) -> String {
    let Some(local) = proc_addr(addr) else {
        return "unknown".into();
    };
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let sockets: Vec<(String, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The address itself, or a wildcard listener on its port.
            let wildcard = format!("00000000:{}", local.rsplit(':').next().unwrap_or(""));
            let here = fields.get(1).copied();
            (here == Some(local.as_str()) || here == Some(wildcard.as_str())).then(|| {
                let state = fields.get(3).copied().unwrap_or("?").to_string();
                let inode = fields.get(9).and_then(|i| i.parse().ok()).unwrap_or(0);
                (state, inode)
            })
        })
        .collect();
    if sockets.is_empty() {
        return "no socket in /proc/net/tcp any more".into();
    }
    let groups = crate::sys::reaper::processes_by_group();
    sockets
        .iter()
        .map(|(state, inode)| {
            let owner = groups
                .values()
                .flatten()
                .find(|pid| *inode != 0 && holds(**pid, *inode))
                .map(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                        .unwrap_or_default();
                    format!("pid {pid} ({})", cmd.trim())
                })
                .unwrap_or_else(|| "no process".into());
            format!("a socket in TCP state {state} of {owner}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether process `pid` has socket `inode` open.
fn holds(pid: i32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
}

/// The inode of the IPv4 socket whose local end is `local` and remote end
/// `remote`, from the text of `/proc/net/tcp`: found by the exact text of
/// the address pair, so only that line is parsed.
fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let needle = format!(" {} {} ", proc_addr(local)?, proc_addr(remote)?);
    let at = table.find(&needle)?;
    let line = table[at..].lines().next()?;
    line.split_whitespace().nth(8)?.parse().ok()
}

/// A socket address as `/proc/net/tcp` prints it: `0100007F:0950`
/// (address in host byte order, then the port).
fn proc_addr(addr: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let ip = u32::from_le_bytes(v4.ip().octets());
    Some(format!("{ip:08X}:{:04X}", v4.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses_are_written_in_host_byte_order() {
        assert_eq!(
            proc_addr("127.0.0.1:2384".parse().expect("addr")).as_deref(),
            Some("0100007F:0950")
        );
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0A07287F:094C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n   \
            1: 0100007F:D431 0A07287F:094C 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n";
        let client: SocketAddr = "127.0.0.1:54321".parse().expect("addr");
        let proxy: SocketAddr = "127.40.7.10:2380".parse().expect("addr");
        assert_eq!(socket_inode(table, client, proxy), Some(222));
        assert_eq!(socket_inode(table, proxy, client), None);
    }

    fn link(from: Option<&str>, dest: &str, towards_dest: bool) -> Link {
        let sender = from.map(|name| {
            let found = std::sync::OnceLock::new();
            let _ = found.set(Some(name.to_string()));
            Arc::new(Sender {
                peer: "127.0.0.1:1".parse().expect("addr"),
                local: "127.0.0.1:2".parse().expect("addr"),
                owners: Arc::default(),
                found,
            })
        });
        Link {
            dest: dest.to_string(),
            sender,
            towards_dest,
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let latency = Duration::from_millis(100);
        let jitter = Duration::from_millis(20);
        let mut seen = (Duration::MAX, Duration::ZERO);
        let mut x = 1;
        for _ in 0..1000 {
            x = crate::util::splitmix64(x);
            let d = jittered(latency, jitter, x);
            assert!(d >= Duration::from_millis(80) && d <= Duration::from_millis(120));
            seen = (seen.0.min(d), seen.1.max(d));
        }
        assert!(seen.0 < Duration::from_millis(85) && seen.1 > Duration::from_millis(115));
        assert_eq!(jittered(latency, Duration::ZERO, 12345), latency);
    }

    #[test]
    fn a_cut_blocks_its_direction_and_a_disconnect_blocks_everyone() {
        let mut rules = Rules::default();
        rules.cuts.insert(("m0".into(), "m1".into()));
        assert!(link(Some("m0"), "m1", true).blocked(&rules));
        // The way back of that connection is m1 -> m0, not cut here.
        assert!(!link(Some("m0"), "m1", false).blocked(&rules));
        assert!(!link(Some("m0"), "m2", true).blocked(&rules));
        // Anyone else (the harness) still reaches a cut-off member.
        assert!(!link(None, "m1", true).blocked(&rules));
        rules.disconnected.insert("m2".into());
        assert!(link(None, "m2", true).blocked(&rules));
        assert!(link(Some("m2"), "m0", true).blocked(&rules));
        assert!(link(Some("m0"), "m2", false).blocked(&rules));
    }

    /// A server that sends back what it gets; its address.
    async fn echo_server() -> SocketAddr {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        target
    }

    /// A loopback address nobody listens on.
    fn free_address() -> SocketAddr {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    }

    /// A real connection through a proxy: bytes flow, a cut stalls them,
    /// and the heal closes the stalled connection.
    #[tokio::test]
    async fn a_cut_stalls_a_connection_and_the_heal_closes_it() {
        let target = echo_server().await;
        let links = Links::new();
        let listen = free_address();
        links
            .serve("m1", Port::Client, listen, target, ())
            .expect("serve");
        let mut client = TcpStream::connect(listen).await.expect("connect");
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");
        // Disconnecting m1 stalls its client connections...
        links.disconnect("m1");
        client
            .write_all(b"lost")
            .await
            .expect("write into the stall");
        let stalled =
            tokio::time::timeout(std::time::Duration::from_millis(300), client.read(&mut buf))
                .await;
        assert!(stalled.is_err(), "nothing comes back during a disconnect");
        // ... and reconnecting it closes them.
        links.reconnect("m1");
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed after the reconnect");
        assert!(matches!(closed, Ok(0) | Err(_)));
        // A new connection works again.
        let mut again = TcpStream::connect(listen).await.expect("connect");
        again.write_all(b"pong").await.expect("write");
        again.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"pong");
    }

    /// A peer connection through a proxy, its sender found in /proc (this
    /// test's own process group stands for member m0): a delay holds both
    /// ways, and a cut between the two stalls it.
    #[tokio::test]
    async fn a_peer_connection_is_attributed_delayed_and_cut() {
        let target = echo_server().await;
        let links = Links::new();
        links.set_owner("m0", Some(nix::unistd::getpgrp().as_raw()));
        let listen = free_address();
        links
            .serve("m1", Port::Peer, listen, target, ())
            .expect("serve");
        let latency = Duration::from_millis(150);
        links.delay("m0", &["m1".to_string()], latency, Duration::ZERO);
        let mut peer = TcpStream::connect(listen).await.expect("connect");
        let mut buf = [0u8; 4];
        let sent = Instant::now();
        peer.write_all(b"slow").await.expect("write");
        peer.read_exact(&mut buf).await.expect("echo");
        // Held once on the way to m1 and once on the way back.
        assert!(sent.elapsed() >= latency * 2, "{:?}", sent.elapsed());
        links.undelay("m0");
        links.cut(&["m0".to_string()], &["m1".to_string()]);
        peer.write_all(b"lost").await.expect("write into the stall");
        let stalled = tokio::time::timeout(Duration::from_millis(300), peer.read(&mut buf)).await;
        assert!(stalled.is_err(), "nothing crosses the cut");
        // Someone else (no member) still gets through to m1.
        links.set_owner("m0", None);
        let mut other = TcpStream::connect(listen).await.expect("connect");
        other.write_all(b"free").await.expect("write");
        other.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"free");
    }

    /// An address someone else listens on: the error names the holder.
    #[tokio::test]
    async fn an_address_in_use_names_who_holds_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = Links::new()
            .serve("m0", Port::Peer, addr, free_address(), ())
            .expect_err("in use");
        let text = err.to_string();
        assert!(text.contains("held by a socket in TCP state 0A"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
    }
}
