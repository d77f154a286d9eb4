use super::*;
use crate::subject::deployer::DeployerError;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Runs at every start of a member and decides its flags then, like
/// tidb-operator's PD start script (`startscript/v1/template.go`): with a
/// WAL, start as is; without, ask the discovery service until it answers.
/// curl where it exists, else busybox wget (in raftcert's member images);
/// Debian's busybox 1.35 wget crashes with its own `-T`, hence `timeout`.
const START_SCRIPT: &str = r#"if [ -d "$DATA_DIR/member/wal" ]; then
  exec "$ETCD_BIN" "$@"
fi
fetch() {
  if command -v curl >/dev/null 2>&1; then curl -sf --max-time 3 "$1"; else timeout 3 wget -q -O - "$1"; fi
}
until flags=$(fetch "$DISCOVERY_URL/new/$MEMBER_NAME"); do
  echo "waiting for discovery service to return start args ..." >&2
  sleep 0.5
done
echo "discovery returned: $flags" >&2
exec "$ETCD_BIN" "$@" $flags
"#;

#[derive(Default)]
struct State {
    observation: Option<Observation>,
    /// Distinct members that asked and were not answered yet; in memory
    /// only, as in tidb-operator, so a restart of the service forgets them.
    askers: BTreeSet<String>,
    /// Askers that need a MemberAdd before they can be answered.
    pending_add: BTreeSet<String>,
}

/// All members start at once and ask a discovery service.
///
/// Follows tidb-operator v1 `pkg/discovery/discovery.go` `Discover`: the
/// last distinct asker, once the askers reach the desired replicas, gets a
/// single-member initial cluster; every other asker joins. For etcd the
/// join needs a MemberAdd first, which this deployer issues from its
/// reconcile loop. Unlike tidb-operator, it never bootstraps while a member
/// answers, so a reset of its memory cannot cause a second genesis.
pub struct Discovery {
    state: Arc<Mutex<State>>,
    url: String,
    server: Option<tokio::task::JoinHandle<()>>,
    bind_error: Option<String>,
}

impl Discovery {
    pub fn start(ctx: &DeployerContext) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let addr = format!("{}:{}", ctx.service_ip, ctx.service_port);
        let url = format!("http://{addr}");
        let bound = addr
            .parse()
            .map_err(|e| format!("{addr}: {e}"))
            .and_then(|sock_addr| {
                let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
                // The service is rebound on the same address after a crash.
                socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
                // The crashed instance's listener may not be dropped yet.
                socket.set_reuseport(true).map_err(|e| e.to_string())?;
                socket.bind(sock_addr).map_err(|e| format!("{addr}: {e}"))?;
                socket.listen(64).map_err(|e| format!("{addr}: {e}"))
            });
        match bound {
            Ok(listener) => {
                let shared = state.clone();
                let server = tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let _ = serve(stream, shared).await;
                        });
                    }
                });
                Discovery {
                    state,
                    url,
                    server: Some(server),
                    bind_error: None,
                }
            }
            Err(e) => Discovery {
                state,
                url,
                server: None,
                bind_error: Some(format!("discovery service cannot listen: {e}")),
            },
        }
    }

    fn script_spec(&self, obs: &Observation, slot: &SlotView) -> Spec {
        let mut args = vec![
            "-c".to_string(),
            START_SCRIPT.to_string(),
            "start-script".to_string(),
        ];
        args.extend(slot.base_args.iter().cloned());
        let env = [
            ("ETCD_BIN", obs.engine.binary.clone()),
            ("DATA_DIR", slot.data_dir.clone()),
            ("MEMBER_NAME", slot.name.clone()),
            ("DISCOVERY_URL", self.url.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Spec {
            command: "/bin/sh".to_string(),
            args,
            env,
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The answer of `GET /new/<name>`: status code and body.
fn discover(state: &mut State, name: &str) -> (u16, String) {
    let Some(obs) = state.observation.clone() else {
        return (503, "no observation yet".into());
    };
    let Some(slot) = obs.slots.iter().find(|s| s.name == name) else {
        return (404, format!("unknown member {name}"));
    };
    state.askers.insert(name.to_string());
    if obs.members.is_none() {
        if state.askers.len() as u32 >= obs.desired_replicas {
            state.askers.remove(name);
            let flags = new_cluster_flags(format!("{}={}", slot.name, slot.peer_url), &obs.token);
            return (200, flags.join(" "));
        }
        return (
            503,
            format!(
                "{} of {} members asked",
                state.askers.len(),
                obs.desired_replicas
            ),
        );
    }
    match obs.member_of(slot) {
        Some(member) if !member.is_started() => {
            state.askers.remove(name);
            state.pending_add.remove(name);
            (200, join_flags(&obs).join(" "))
        }
        Some(_) => (
            500,
            format!("{name} is registered and started: missing data or a duplicated member"),
        ),
        None => {
            state.pending_add.insert(name.to_string());
            (503, format!("member add pending for {name}"))
        }
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (code, body) = match path.strip_prefix("/new/") {
        Some(name) if !name.is_empty() => {
            let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
            discover(&mut guard, name)
        }
        _ => (404, "not found".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

impl Deployer for Discovery {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        if let Some(e) = &self.bind_error {
            return Err(DeployerError::Failed(e.clone()));
        }
        let (pending, askers) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.observation = Some(obs.clone());
            (state.pending_add.clone(), state.askers.clone())
        };
        let mut actions = Vec::new();
        // Every desired pod runs the start script; all start in parallel.
        for slot in obs.desired_slots() {
            if slot.phase == Phase::Empty {
                actions.push(Action::Start {
                    slot: slot.name.clone(),
                    spec: self.script_spec(obs, slot),
                });
            }
        }
        if obs.members.is_none() || !actions.is_empty() {
            return Ok(actions);
        }
        // A pod asking again while its old member is registered lost its
        // data: remove the old member so it can join anew.
        for slot in obs.desired_slots() {
            if !slot.has_data
                && askers.contains(&slot.name)
                && let Some(member) = obs.member_of(slot)
                && member.is_started()
            {
                return Ok(vec![Action::MemberRemove {
                    id: member.id.clone(),
                }]);
            }
        }
        if has_unstarted_member(obs) {
            return Ok(actions);
        }
        if scale_in(obs, &mut actions) || !obs.cluster_version_decided() {
            return Ok(actions);
        }
        if let Some(slot) = obs
            .desired_slots()
            .filter(|s| pending.contains(&s.name) && obs.member_of(s).is_none())
            .min_by_key(|s| s.ordinal)
        {
            actions.push(Action::MemberAdd {
                peer_url: slot.peer_url.clone(),
                learner: false,
            });
        }
        Ok(actions)
    }
}
