//! The HTTP discovery service that start scripts ask for their flags, as
//! tidb-operator v1's `discovery` Deployment answers `GET /new/<member>`.

use super::*;
use crate::subject::deployer::DeployerError;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the service answers the member named in the request: status code
/// and body (a future, since an answer may need to ask the cluster).
pub type Answer = Arc<dyn Fn(String) -> BoxFuture<(u16, String)> + Send + Sync>;

pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Defines `fetch URL` for start scripts: curl where it exists, else
/// busybox wget (in raftcert's member images); Debian's busybox 1.35 wget
/// crashes with its own `-T`, hence `timeout`.
const FETCH: &str = r#"fetch() {
  if command -v curl >/dev/null 2>&1; then curl -sf --max-time 3 "$1"; else timeout 3 wget -q -O - "$1"; fi
}
"#;

pub struct DiscoveryService {
    url: String,
    server: Option<tokio::task::JoinHandle<()>>,
    bind_error: Option<String>,
}

impl DiscoveryService {
    /// Listens on the run's service address; a failure to listen is kept
    /// and reported by [`DiscoveryService::check`] at the first reconcile.
    pub fn start(ctx: &DeployerContext, answer: Answer) -> Self {
        let addr = format!("{}:{}", ctx.service_ip, ctx.service_port);
        let url = format!("http://{addr}");
        // After a deployer crash the held listener is gone: rebind, with
        // SO_REUSEPORT, since the crashed instance's may not be dropped yet.
        let bound = ctx
            .service_listener
            .take()
            .map(Ok)
            .unwrap_or_else(|| {
                addr.parse()
                    .map_err(|e| format!("{addr}: {e}"))
                    .and_then(|sock_addr| {
                        crate::sys::HeldListener::listen(sock_addr)
                            .map_err(|e| format!("{addr}: {e}"))?
                            .take()
                            .ok_or_else(|| format!("{addr}: listener already taken"))
                    })
            })
            .and_then(|listener| {
                listener
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpListener::from_std(listener))
                    .map_err(|e| format!("{addr}: {e}"))
            });
        match bound {
            Ok(listener) => {
                let server = tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let answer = answer.clone();
                        tokio::spawn(async move {
                            let _ = serve(stream, answer).await;
                        });
                    }
                });
                DiscoveryService {
                    url,
                    server: Some(server),
                    bind_error: None,
                }
            }
            Err(e) => DiscoveryService {
                url,
                server: None,
                bind_error: Some(format!("discovery service cannot listen: {e}")),
            },
        }
    }

    pub fn check(&self) -> Result<(), DeployerError> {
        match &self.bind_error {
            Some(e) => Err(DeployerError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    /// `/bin/sh -c <script>` with the slot's base flags as `$@` and, in the
    /// environment, the engine binary, data directory, member name and
    /// this service's URL; `fetch` is defined before the script runs.
    pub fn script_spec(&self, script: &str, obs: &Observation, slot: &SlotView) -> Spec {
        let mut args = vec![
            "-c".to_string(),
            format!("{FETCH}{script}"),
            "start-script".to_string(),
        ];
        args.extend(slot.base_args.iter().cloned());
        let env = [
            ("ENGINE_BIN", obs.engine.binary.clone()),
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

impl Drop for DiscoveryService {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn serve(mut stream: TcpStream, answer: Answer) -> std::io::Result<()> {
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
        Some(name) if !name.is_empty() => answer(name.to_string()).await,
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
