//! etcd: start arguments, startup-log parsing and the admin client.

use crate::engine::tls::TlsMaterial;
use crate::trace::{EngineErrorClass, EventKind, MemberInfo, MembershipOp, StartConfig};
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, MemberAddOptions, TlsOptions,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Heartbeat and election timeouts tuned for fast tests on loopback.
pub const HEARTBEAT_MS: u32 = 50;
pub const ELECTION_MS: u32 = 750;

/// Addresses and directories of one member slot.
#[derive(Debug, Clone)]
pub struct SlotEndpoints {
    pub name: String,
    /// Advertised to peers and clients.
    pub peer_url: String,
    pub client_url: String,
    /// Where the member binds (`0.0.0.0` in a container).
    pub listen_peer_url: String,
    pub listen_client_url: String,
    pub data_dir: String,
}

/// The flags every member gets whatever the deployer decides: identity,
/// addresses, logging and TLS. Bootstrap flags are the deployer's job.
pub fn base_args(slot: &SlotEndpoints, tls: Option<&TlsMaterial>) -> Vec<String> {
    let mut args = vec![
        format!("--name={}", slot.name),
        format!("--data-dir={}", slot.data_dir),
        format!("--listen-peer-urls={}", slot.listen_peer_url),
        format!("--initial-advertise-peer-urls={}", slot.peer_url),
        format!("--listen-client-urls={}", slot.listen_client_url),
        format!("--advertise-client-urls={}", slot.client_url),
        format!("--heartbeat-interval={HEARTBEAT_MS}"),
        format!("--election-timeout={ELECTION_MS}"),
        // etcd 3.4 defaults to capnslog, which prints no bootstrap fields.
        "--logger=zap".to_string(),
        "--log-outputs=stderr".to_string(),
    ];
    if let Some(tls) = tls {
        let files = tls.member_files(&slot.name);
        args.extend([
            format!("--cert-file={}", files.cert.display()),
            format!("--key-file={}", files.key.display()),
            format!("--trusted-ca-file={}", files.ca.display()),
            "--client-cert-auth".to_string(),
            format!("--peer-cert-file={}", files.cert.display()),
            format!("--peer-key-file={}", files.key.display()),
            format!("--peer-trusted-ca-file={}", files.ca.display()),
            "--peer-client-cert-auth".to_string(),
        ]);
    }
    args
}

/// Facts read from one line of etcd's zap JSON log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFact {
    Start(StartConfig),
    LocalMember {
        member_id: String,
        cluster_id: String,
        restarted: bool,
    },
    Membership {
        op: MembershipOp,
        member_id: String,
        peer_urls: Vec<String>,
    },
    Error {
        class: EngineErrorClass,
        message: String,
    },
    /// The member can serve clients (it has seen a leader).
    Ready,
}

impl LogFact {
    /// The trace event a fact of `slot`'s log is; `Ready` is none.
    pub fn into_event(self, slot: &str) -> Option<EventKind> {
        let slot = slot.to_string();
        Some(match self {
            LogFact::Start(config) => EventKind::MemberStart { slot, config },
            LogFact::LocalMember {
                member_id,
                cluster_id,
                restarted,
            } => EventKind::LocalMember {
                slot,
                member_id,
                cluster_id,
                restarted,
            },
            LogFact::Membership {
                op,
                member_id,
                peer_urls,
            } => EventKind::MembershipApplied {
                slot,
                op,
                member_id,
                peer_urls,
            },
            LogFact::Error { class, message } => EventKind::EngineError {
                slot,
                class,
                message,
            },
            LogFact::Ready => return None,
        })
    }
}

/// Parses one log line of `slot` and records what it shows, if anything.
pub fn record_log_line(recorder: &crate::trace::Recorder, slot: &str, line: &str) {
    if let Some(event) = parse_log_line(line).and_then(|fact| fact.into_event(slot)) {
        recorder.record(event);
    }
}

/// Parses `a=http://x:2380,b=http://y:2380` into name -> peer URLs.
pub fn parse_initial_cluster(s: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if let Some((name, url)) = entry.split_once('=') {
            map.entry(name.to_string())
                .or_default()
                .push(url.to_string());
        }
    }
    for urls in map.values_mut() {
        urls.sort();
    }
    map
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn url_list(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub(super) fn classify_error(text: &str) -> Option<EngineErrorClass> {
    let classes = [
        (
            "member count is unequal",
            EngineErrorClass::MemberCountUnequal,
        ),
        (
            "has already been bootstrapped",
            EngineErrorClass::AlreadyBootstrapped,
        ),
        (
            "couldn't find local name",
            EngineErrorClass::LocalNameNotFound,
        ),
        ("cluster ID mismatch", EngineErrorClass::ClusterIdMismatch),
        ("permanently removed", EngineErrorClass::MemberRemoved),
        ("Was the raft log corrupted", EngineErrorClass::RaftLogLost),
        (
            "no match found for existing member",
            EngineErrorClass::PeerUrlsMismatch,
        ),
        (
            "unmatched member while checking PeerURLs",
            EngineErrorClass::PeerUrlsMismatch,
        ),
        ("address already in use", EngineErrorClass::AddressInUse),
    ];
    classes
        .iter()
        .find(|(needle, _)| text.contains(needle))
        .map(|(_, class)| *class)
}

/// Reads one log line; `None` for lines that carry nothing we track.
/// Fields are looked up by name: key order differs between 3.4 and 3.5.
pub fn parse_log_line(line: &str) -> Option<LogFact> {
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        // Raft panics are printed as plain text.
        return classify_error(line).map(|class| LogFact::Error {
            class,
            message: line.chars().take(400).collect(),
        });
    }
    let v: Value = serde_json::from_str(trimmed).ok()?;
    let msg = str_field(&v, "msg");
    match msg {
        "starting an etcd server" => Some(LogFact::Start(StartConfig {
            name: str_field(&v, "name").to_string(),
            member_initialized: v
                .get("member-initialized")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            initial_cluster: parse_initial_cluster(str_field(&v, "initial-cluster")),
            initial_cluster_state: str_field(&v, "initial-cluster-state").to_string(),
            initial_cluster_token: str_field(&v, "initial-cluster-token").to_string(),
        })),
        "starting local member" | "restarting local member" => Some(LogFact::LocalMember {
            member_id: str_field(&v, "local-member-id").to_string(),
            cluster_id: str_field(&v, "cluster-id").to_string(),
            restarted: msg == "restarting local member",
        }),
        "added member" => Some(LogFact::Membership {
            op: if v.get("added-peer-is-learner").and_then(Value::as_bool) == Some(true) {
                MembershipOp::AddLearner
            } else {
                MembershipOp::Add
            },
            member_id: str_field(&v, "added-peer-id").to_string(),
            peer_urls: url_list(&v, "added-peer-peer-urls"),
        }),
        "removed member" => Some(LogFact::Membership {
            op: MembershipOp::Remove,
            member_id: str_field(&v, "removed-remote-peer-id").to_string(),
            peer_urls: url_list(&v, "removed-remote-peer-urls"),
        })
        .filter(|f| matches!(f, LogFact::Membership { member_id, .. } if !member_id.is_empty())),
        "promote member" => Some(LogFact::Membership {
            op: MembershipOp::Promote,
            member_id: str_field(&v, "promoted-member-id").to_string(),
            peer_urls: Vec::new(),
        })
        .filter(|f| matches!(f, LogFact::Membership { member_id, .. } if !member_id.is_empty())),
        "ready to serve client requests" => Some(LogFact::Ready),
        _ => {
            let level = str_field(&v, "level");
            if !matches!(level, "error" | "fatal" | "panic" | "warn") {
                return None;
            }
            let text = format!("{msg} {}", str_field(&v, "error"));
            let class = classify_error(&text)?;
            Some(LogFact::Error {
                class,
                message: text.trim().chars().take(400).collect(),
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("etcd {endpoint}: {source}")]
    Etcd {
        endpoint: String,
        source: etcd_client::Error,
    },
    #[error("etcd {endpoint}: timed out after {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("no reachable endpoint")]
    NoEndpoint,
    #[error("GET {url}: {source}")]
    Http { url: String, source: reqwest::Error },
}

/// One member's view of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub cluster_id: String,
    pub member_id: String,
    pub leader: String,
    pub term: u64,
    pub raft_index: u64,
    pub revision: u64,
    pub is_learner: bool,
}

/// The body of etcd's `/version`.
#[derive(Debug, serde::Deserialize)]
struct Versions {
    #[serde(rename = "etcdcluster")]
    cluster: String,
}

/// etcd reports "not_decided" (3.4, 3.5) before the version is set.
fn decided_cluster_version(reported: &str) -> Option<String> {
    match reported {
        "" | "not_decided" | "to_be_decided" => None,
        v => Some(v.to_string()),
    }
}

pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

/// Connection options shared by every client the harness opens.
#[derive(Clone)]
pub struct ClientConfig {
    pub tls: Option<TlsMaterial>,
    pub timeout: Duration,
}

impl ClientConfig {
    fn options(&self) -> ConnectOptions {
        // No channel-wide request timeout: each call sets its own, so that
        // membership calls can wait longer than status polls.
        let mut opts = ConnectOptions::new().with_connect_timeout(self.timeout);
        if let Some(tls) = &self.tls {
            opts = opts.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(tls.ca_pem()))
                    .identity(Identity::from_pem(
                        tls.client_cert_pem(),
                        tls.client_key_pem(),
                    )),
            );
        }
        opts
    }

    /// A plain HTTP(S) client for the endpoints etcd serves outside gRPC.
    fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder().timeout(self.timeout);
        if let Some(tls) = &self.tls {
            let identity = format!("{}{}", tls.client_cert_pem(), tls.client_key_pem());
            builder = builder
                .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem().as_bytes())?])
                .identity(reqwest::Identity::from_pem(identity.as_bytes())?);
        }
        builder.build()
    }
}

/// A client pinned to one endpoint. Never auto-syncs: it must talk to the
/// member it names, not whichever the balancer picks.
#[derive(Clone)]
pub struct MemberClient {
    endpoint: String,
    client: Client,
    http: reqwest::Client,
    timeout: Duration,
}

impl MemberClient {
    pub async fn connect(endpoint: &str, cfg: &ClientConfig) -> Result<Self, ClientError> {
        let fut = Client::connect([endpoint], Some(cfg.options()));
        let client = tokio::time::timeout(cfg.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: endpoint.to_string(),
                timeout: cfg.timeout,
            })?
            .map_err(|source| ClientError::Etcd {
                endpoint: endpoint.to_string(),
                source,
            })?;
        let http = cfg.http_client().map_err(|source| ClientError::Http {
            url: endpoint.to_string(),
            source,
        })?;
        Ok(MemberClient {
            endpoint: endpoint.to_string(),
            client,
            http,
            timeout: cfg.timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The same connection with another per-call timeout.
    pub fn with_call_timeout(&self, timeout: Duration) -> Self {
        MemberClient {
            timeout,
            ..self.clone()
        }
    }

    async fn timed<T, F>(&self, fut: F) -> Result<T, ClientError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ClientError::Etcd {
                endpoint: self.endpoint.clone(),
                source,
            }),
            Err(_) => Err(ClientError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
            }),
        }
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        let mut c = self.client.clone();
        let resp = self.timed(c.status()).await?;
        let header = resp.header();
        Ok(Status {
            cluster_id: header.map(|h| hex_id(h.cluster_id())).unwrap_or_default(),
            member_id: header.map(|h| hex_id(h.member_id())).unwrap_or_default(),
            leader: hex_id(resp.leader()),
            term: resp.raft_term(),
            raft_index: resp.raft_index(),
            revision: header.map(|h| h.revision() as u64).unwrap_or(0),
            is_learner: resp.is_learner(),
        })
    }

    /// The cluster version this member reports on `/version`, or `None`
    /// while it is still undecided: etcd decides it a few seconds after
    /// the first leader, and until then refuses to let new members join
    /// ("incompatible with current running cluster").
    pub async fn cluster_version(&self) -> Result<Option<String>, ClientError> {
        let url = format!("{}/version", self.endpoint);
        let http_err = |source| ClientError::Http {
            url: url.clone(),
            source,
        };
        let versions: Versions = self
            .http
            .get(&url)
            .timeout(self.timeout)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(http_err)?
            .json()
            .await
            .map_err(http_err)?;
        Ok(decided_cluster_version(&versions.cluster))
    }

    /// Returns the cluster ID and the members.
    pub async fn member_list(&self) -> Result<Membership, ClientError> {
        let mut c = self.client.clone();
        let resp = self.timed(c.member_list()).await?;
        let cluster_id = resp
            .header()
            .map(|h| hex_id(h.cluster_id()))
            .unwrap_or_default();
        Ok((cluster_id, members_of(resp.members())))
    }

    /// Returns the new member's ID and the membership after the change.
    pub async fn member_add(
        &self,
        peer_url: &str,
        learner: bool,
    ) -> Result<(String, Membership), ClientError> {
        let mut c = self.client.clone();
        let opts = learner.then(|| MemberAddOptions::new().with_is_learner());
        let resp = self
            .timed(c.member_add([peer_url.to_string()], opts))
            .await?;
        let cluster_id = resp
            .header()
            .map(|h| hex_id(h.cluster_id()))
            .unwrap_or_default();
        let id = resp.member().map(|m| hex_id(m.id())).unwrap_or_default();
        Ok((id, (cluster_id, members_of(resp.member_list()))))
    }

    /// Returns the membership after the change.
    pub async fn member_remove(&self, id: u64) -> Result<Membership, ClientError> {
        let mut c = self.client.clone();
        let resp = self.timed(c.member_remove(id)).await?;
        let cluster_id = resp
            .header()
            .map(|h| hex_id(h.cluster_id()))
            .unwrap_or_default();
        Ok((cluster_id, members_of(resp.members())))
    }

    /// Returns the membership after the change.
    pub async fn member_promote(&self, id: u64) -> Result<Membership, ClientError> {
        let mut c = self.client.clone();
        let resp = self.timed(c.member_promote(id)).await?;
        let cluster_id = resp
            .header()
            .map(|h| hex_id(h.cluster_id()))
            .unwrap_or_default();
        Ok((cluster_id, members_of(resp.members())))
    }

    pub async fn put(&self, key: &str, value: &str) -> Result<(), ClientError> {
        let mut c = self.client.clone();
        self.timed(c.put(key, value, None)).await.map(|_| ())
    }

    /// Linearizable read of every key under `prefix`.
    pub async fn get_prefix(&self, prefix: &str) -> Result<BTreeMap<String, String>, ClientError> {
        let mut c = self.client.clone();
        let resp = self
            .timed(c.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect())
    }
}

/// A cluster ID and its members, sorted by peer URL.
pub type Membership = (String, Vec<MemberInfo>);

fn members_of(members: &[etcd_client::Member]) -> Vec<MemberInfo> {
    let mut out: Vec<MemberInfo> = members
        .iter()
        .map(|m| MemberInfo {
            id: hex_id(m.id()),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        })
        .collect();
    out.sort_by(|a, b| a.peer_urls.cmp(&b.peer_urls));
    out
}

/// Parses a hex member ID as etcd prints it.
pub fn parse_hex_id(id: &str) -> Option<u64> {
    u64::from_str_radix(id, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecided_cluster_versions_are_none() {
        for body in [
            r#"{"etcdserver":"3.5.1","etcdcluster":"not_decided"}"#,
            r#"{"etcdserver":"3.4.23","etcdcluster":"not_decided"}"#,
        ] {
            let v: Versions = serde_json::from_str(body).expect("valid body");
            assert_eq!(decided_cluster_version(&v.cluster), None, "{body}");
        }
        let v: Versions =
            serde_json::from_str(r#"{"etcdserver":"3.5.1","etcdcluster":"3.5.0"}"#).expect("body");
        assert_eq!(
            decided_cluster_version(&v.cluster).as_deref(),
            Some("3.5.0")
        );
    }

    #[test]
    fn parses_start_line_of_3_5() {
        let line = r#"{"level":"info","msg":"starting an etcd server","etcd-version":"3.5.1","member-initialized":false,"name":"m1","initial-cluster":"m0=http://127.0.0.1:2380,m1=http://127.0.0.2:2380","initial-cluster-state":"existing","initial-cluster-token":"t"}"#;
        let Some(LogFact::Start(cfg)) = parse_log_line(line) else {
            panic!("not a start line");
        };
        assert_eq!(cfg.name, "m1");
        assert!(cfg.is_join());
        assert_eq!(cfg.initial_cluster.len(), 2);
        assert_eq!(cfg.initial_cluster["m0"], vec!["http://127.0.0.1:2380"]);
        assert_eq!(cfg.initial_cluster_token, "t");
    }

    #[test]
    fn parses_local_member_and_membership_lines() {
        let restart = r#"{"level":"info","msg":"restarting local member","cluster-id":"985f8e032d20fb4b","local-member-id":"ece53feed95f20cb","commit-index":4}"#;
        assert_eq!(
            parse_log_line(restart),
            Some(LogFact::LocalMember {
                member_id: "ece53feed95f20cb".into(),
                cluster_id: "985f8e032d20fb4b".into(),
                restarted: true
            })
        );
        let added = r#"{"level":"info","msg":"added member","added-peer-id":"abc","added-peer-peer-urls":["http://127.0.0.3:2380"],"added-peer-is-learner":true}"#;
        assert_eq!(
            parse_log_line(added),
            Some(LogFact::Membership {
                op: MembershipOp::AddLearner,
                member_id: "abc".into(),
                peer_urls: vec!["http://127.0.0.3:2380".into()]
            })
        );
    }

    #[test]
    fn classifies_fatal_refusals() {
        let line = r#"{"level":"fatal","msg":"discovery failed","error":"error validating peerURLs {...}: member count is unequal"}"#;
        assert!(matches!(
            parse_log_line(line),
            Some(LogFact::Error {
                class: EngineErrorClass::MemberCountUnequal,
                ..
            })
        ));
        assert_eq!(parse_log_line(r#"{"level":"info","msg":"whatever"}"#), None);
        assert_eq!(parse_log_line("not json at all"), None);
    }
}
