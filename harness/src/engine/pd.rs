//! PD: start arguments and startup-log parsing.
//!
//! PD logs in pingcap/log's text format, one line per entry:
//! `[time] [LEVEL] [file:line] ["message"] [key=value] [key="quoted value"]`.
//! Its embedded etcd logs through the same logger, so etcd's facts
//! ("starting an etcd server", "added member") keep their field names.

use super::etcd::{LogFact, SlotEndpoints, classify_error, parse_initial_cluster};
use crate::trace::{EngineErrorClass, EventKind, MembershipOp, StartConfig};
use serde_json::Value;
use std::collections::BTreeMap;

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

/// What a PD log line shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PdLogFact {
    /// A fact of the embedded etcd, as for etcd itself.
    Etcd(LogFact),
    /// `"PD config"`: the configuration after PD's own join step, so a
    /// joiner shows the initial cluster PD computed and `existing`.
    EffectiveConfig {
        name: String,
        initial_cluster: BTreeMap<String, Vec<String>>,
        initial_cluster_state: String,
        join: String,
    },
    /// `"existed cluster id"`, or `"init cluster id"`: none was stored when
    /// this start looked, and it ran the create-if-absent transaction
    /// (`pkg/storage/endpoint/cluster_id.go` `InitClusterID`), so several
    /// genesis members may log it with the one ID that won.
    ClusterId { id: u64, existed: bool },
}

impl PdLogFact {
    /// The trace event a fact of `slot`'s log is, if any.
    pub fn into_event(self, slot: &str) -> Option<EventKind> {
        match self {
            PdLogFact::Etcd(fact) => fact.into_event(slot),
            PdLogFact::EffectiveConfig {
                initial_cluster,
                initial_cluster_state,
                join,
                ..
            } => Some(EventKind::PdConfig {
                slot: slot.to_string(),
                initial_cluster,
                initial_cluster_state,
                join,
            }),
            PdLogFact::ClusterId { id, existed } => Some(EventKind::PdClusterId {
                slot: slot.to_string(),
                cluster_id: id.to_string(),
                existed,
            }),
        }
    }
}

/// Parses one log line of `slot` and records what it shows, if anything.
pub fn record_log_line(recorder: &crate::trace::Recorder, slot: &str, line: &str) {
    if let Some(event) = parse_log_line(line).and_then(|fact| fact.into_event(slot)) {
        recorder.record(event);
    }
}

/// PD's raft timings, the same as etcd's members get (PD takes them only
/// from a config file). At PD's defaults (500 ms ticks, 3 s elections) a
/// 1 -> 2 seed join left the cluster without quorum for 15-20 s, measured
/// on 8.5.7: the joiner's embedded etcd first waits out a linearizable
/// read the lone seed cannot serve (5 s + 2 elections), then an election.
pub fn timing_config() -> String {
    format!(
        "# raftcert: loopback timings, as etcd members get them\n\
         tick-interval = \"{}ms\"\n\
         election-interval = \"{}ms\"\n",
        super::etcd::HEARTBEAT_MS,
        super::etcd::ELECTION_MS
    )
}

/// The flags every PD member gets whatever the deployer decides; `config`
/// is a file holding [`timing_config`]. Bootstrap flags (`--initial-cluster`
/// or `--join`) are the deployer's job.
pub fn base_args(slot: &SlotEndpoints, config: Option<&str>) -> Vec<String> {
    let mut args = vec![
        format!("--name={}", slot.name),
        format!("--data-dir={}", slot.data_dir),
        format!("--peer-urls={}", slot.listen_peer_url),
        format!("--advertise-peer-urls={}", slot.peer_url),
        format!("--client-urls={}", slot.listen_client_url),
        format!("--advertise-client-urls={}", slot.client_url),
    ];
    if let Some(config) = config {
        args.push(format!("--config={config}"));
    }
    args
}

/// Splits a line into level, message and fields; `None` for lines in
/// another format (a Go panic, a start script's echo).
pub fn split_line(line: &str) -> Option<LogLine> {
    let mut parts = Vec::new();
    let mut rest = line.trim();
    while let Some(open) = rest.strip_prefix('[') {
        let (part, after) = bracketed(open)?;
        parts.push(part);
        rest = after.trim_start();
    }
    if parts.len() < 4 {
        return None;
    }
    let level = parts[1].clone();
    let message = unquote(&parts[3]);
    let fields = parts[4..]
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect();
    Some(LogLine {
        level,
        message,
        fields,
    })
}

/// The text up to the `]` that closes a bracket, skipping quoted parts.
fn bracketed(s: &str) -> Option<(String, &str)> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ']' if !in_quotes => return Some((s[..i].to_string(), &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// `"a \"b\""` becomes `a "b"`; an unquoted value stays as it is.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        serde_json::from_str::<String>(v).unwrap_or_else(|_| v[1..v.len() - 1].to_string())
    } else {
        v.to_string()
    }
}

/// Refusals PD prints before its embedded etcd starts (`join meet error`),
/// by the substring that identifies each; the embedded etcd's own errors
/// are classified as etcd's.
const PD_ERRORS: &[(&str, EngineErrorClass)] = &[
    (
        "missing data or join a duplicated pd",
        EngineErrorClass::DuplicatedMember,
    ),
    ("join self is forbidden", EngineErrorClass::JoinSelf),
    (
        "that has not joined successfully",
        EngineErrorClass::UnstartedMemberBlocksJoin,
    ),
    ("unhealthy cluster", EngineErrorClass::UnhealthyCluster),
    ("ErrEtcdMemberList", EngineErrorClass::JoinMemberListFailed),
];

/// Reads one log line; `None` for lines that carry nothing tracked.
pub fn parse_log_line(line: &str) -> Option<PdLogFact> {
    let line = split_line(line)?;
    let field = |k: &str| line.fields.get(k).map(String::as_str).unwrap_or("");
    match line.message.as_str() {
        "PD config" => {
            let config: Value = serde_json::from_str(field("config")).ok()?;
            let text = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or("");
            Some(PdLogFact::EffectiveConfig {
                name: text("name").to_string(),
                initial_cluster: parse_initial_cluster(text("initial-cluster")),
                initial_cluster_state: text("initial-cluster-state").to_string(),
                join: text("join").to_string(),
            })
        }
        "init cluster id" | "existed cluster id" => Some(PdLogFact::ClusterId {
            id: field("cluster-id").parse().ok()?,
            existed: line.message == "existed cluster id",
        }),
        "starting an etcd server" => Some(PdLogFact::Etcd(LogFact::Start(StartConfig {
            name: field("name").to_string(),
            member_initialized: field("member-initialized") == "true",
            initial_cluster: parse_initial_cluster(field("initial-cluster")),
            initial_cluster_state: field("initial-cluster-state").to_string(),
            initial_cluster_token: field("initial-cluster-token").to_string(),
        }))),
        "starting local member" | "restarting local member" => {
            Some(PdLogFact::Etcd(LogFact::LocalMember {
                member_id: field("local-member-id").to_string(),
                cluster_id: field("cluster-id").to_string(),
                restarted: line.message == "restarting local member",
            }))
        }
        "added member" => Some(PdLogFact::Etcd(LogFact::Membership {
            op: if field("added-peer-is-learner") == "true" {
                MembershipOp::AddLearner
            } else {
                MembershipOp::Add
            },
            member_id: field("added-peer-id").to_string(),
            peer_urls: url_list(field("added-peer-peer-urls")),
        })),
        "removed member" if !field("removed-remote-peer-id").is_empty() => {
            Some(PdLogFact::Etcd(LogFact::Membership {
                op: MembershipOp::Remove,
                member_id: field("removed-remote-peer-id").to_string(),
                peer_urls: url_list(field("removed-remote-peer-urls")),
            }))
        }
        _ if matches!(line.level.as_str(), "ERROR" | "FATAL" | "PANIC") => {
            let text = format!("{} {}", line.message, field("error"));
            let class = PD_ERRORS
                .iter()
                .find(|(needle, _)| text.contains(needle))
                .map(|(_, class)| *class)
                .or_else(|| classify_error(&text))?;
            Some(PdLogFact::Etcd(LogFact::Error {
                class,
                message: text.trim().chars().take(400).collect(),
            }))
        }
        _ => None,
    }
}

/// `[http://a:2380,http://b:2380]`, as pingcap/log prints a string slice.
fn url_list(v: &str) -> Vec<String> {
    v.trim_start_matches('[')
        .trim_end_matches(']')
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|u| u.trim_matches('"'))
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines from pd-server v8.5.7 built by raftcert, 2026-12-02 (the PD
    // config line cut to the fields read here).
    const JOINER_CONFIG: &str = r#"[2026/12/02 10:51:59.968 +00:00] [INFO] [server.go:257] ["PD config"] [config="{\"client-urls\":\"http://127.0.77.11:2379\",\"name\":\"pd1\",\"initial-cluster\":\"pd1=http://127.0.77.11:2380,pd0=http://127.0.77.10:2380\",\"initial-cluster-state\":\"existing\",\"initial-cluster-token\":\"pd-cluster\",\"join\":\"http://127.0.77.10:2379\",\"lease\":5}"]"#;
    const JOINER_ETCD_START: &str = r#"[2026/12/02 10:52:00.026 +00:00] [INFO] [etcd.go:310] ["starting an etcd server"] [etcd-version=3.5.15] [git-sha="Not provided (use ./build instead of go build)"] [member-initialized=false] [name=pd1] [data-dir=/tmp/pdlog/d1] [initial-cluster="pd0=http://127.0.77.10:2380,pd1=http://127.0.77.11:2380"] [initial-cluster-state=existing] [initial-cluster-token=pd-cluster]"#;
    const ADDED: &str = r#"[2026/12/02 10:52:16.806 +00:00] [INFO] [cluster.go:421] ["added member"] [cluster-id=8b6bfb0889f54917] [local-member-id=a316eb9b33044861] [added-peer-id=a316eb9b33044861] [added-peer-peer-urls="[http://127.0.77.11:2380]"]"#;
    const INIT_ID: &str = r#"[2026/12/02 10:51:59.812 +00:00] [INFO] [cluster_id.go:53] ["init cluster id"] [cluster-id=7714657707498014917]"#;
    const EXISTED_ID: &str = r#"[2026/12/02 10:52:16.817 +00:00] [INFO] [cluster_id.go:43] ["existed cluster id"] [cluster-id=7714657707498014917]"#;
    const DUPLICATE: &str = r#"[2026/12/02 10:52:41.898 +00:00] [FATAL] [main.go:259] ["join meet error"] [error="missing data or join a duplicated pd"] [stack="main.start\n\tgithub.com/tikv/pd/cmd/pd-server/main.go:259"]"#;
    const JOIN_SELF: &str = r#"[2026/12/02 10:52:41.586 +00:00] [FATAL] [main.go:259] ["join meet error"] [error="join self is forbidden"] [stack="main.start"]"#;
    // pd-server v26.3.4, 2026-12-06: a joiner whose seed died right after
    // its MemberAdd (docs/findings.md section 7), the error cut short.
    const MEMBER_LIST_FAILED: &str = r#"[2026/12/06 19:55:42.242 +00:00] [FATAL] [main.go:277] ["join meet error"] [error="[PD:etcd:ErrEtcdMemberList]rpc error: code = DeadlineExceeded desc = context deadline exceeded while waiting for connections to become ready"]"#;
    const NOISE: &str = r#"[2026/12/02 10:52:00.013 +00:00] [WARN] [util.go:55] ["go runtime collectors have already registered"] [error="duplicate metrics collector registration attempted"]"#;
    const UNKNOWN_ERROR: &str = r#"[2026/12/02 10:52:11.031 +00:00] [ERROR] [x.go:1] ["something else failed"] [error="no such thing"]"#;

    #[test]
    fn the_pd_config_line_gives_the_effective_join_result() {
        let Some(PdLogFact::EffectiveConfig {
            name,
            initial_cluster,
            initial_cluster_state,
            join,
        }) = parse_log_line(JOINER_CONFIG)
        else {
            panic!("{:?}", parse_log_line(JOINER_CONFIG));
        };
        assert_eq!(name, "pd1");
        assert_eq!(initial_cluster_state, "existing");
        assert_eq!(join, "http://127.0.77.10:2379");
        assert_eq!(
            initial_cluster.keys().collect::<Vec<_>>(),
            ["pd0", "pd1"],
            "PD's computed initial cluster"
        );
    }

    #[test]
    fn the_embedded_etcd_start_is_a_join() {
        let Some(PdLogFact::Etcd(LogFact::Start(config))) = parse_log_line(JOINER_ETCD_START)
        else {
            panic!("{:?}", parse_log_line(JOINER_ETCD_START));
        };
        assert!(config.is_join(), "{config:?}");
        assert_eq!(config.name, "pd1");
        assert_eq!(config.initial_cluster_token, "pd-cluster");
        assert_eq!(
            config.initial_cluster["pd0"],
            ["http://127.0.77.10:2380".to_string()]
        );
    }

    #[test]
    fn membership_and_cluster_ids_are_read() {
        assert_eq!(
            parse_log_line(ADDED),
            Some(PdLogFact::Etcd(LogFact::Membership {
                op: MembershipOp::Add,
                member_id: "a316eb9b33044861".into(),
                peer_urls: vec!["http://127.0.77.11:2380".into()],
            }))
        );
        assert_eq!(
            parse_log_line(INIT_ID),
            Some(PdLogFact::ClusterId {
                id: 7714657707498014917,
                existed: false
            })
        );
        assert_eq!(
            parse_log_line(EXISTED_ID),
            Some(PdLogFact::ClusterId {
                id: 7714657707498014917,
                existed: true
            })
        );
    }

    #[test]
    fn refusals_are_classified_and_noise_is_not() {
        let class = |line| match parse_log_line(line) {
            Some(PdLogFact::Etcd(LogFact::Error { class, .. })) => Some(class),
            _ => None,
        };
        assert_eq!(class(DUPLICATE), Some(EngineErrorClass::DuplicatedMember));
        assert_eq!(class(JOIN_SELF), Some(EngineErrorClass::JoinSelf));
        assert_eq!(
            class(MEMBER_LIST_FAILED),
            Some(EngineErrorClass::JoinMemberListFailed)
        );
        assert_eq!(parse_log_line(NOISE), None);
        assert_eq!(parse_log_line(UNKNOWN_ERROR), None);
        assert_eq!(parse_log_line("starting pd-server ..."), None);
    }

    #[test]
    fn a_member_with_two_peer_urls_keeps_both() {
        let line = r#"[t] [INFO] [cluster.go:421] ["added member"] [added-peer-id=ab] [added-peer-peer-urls="[http://a:2380,http://b:2380]"]"#;
        let Some(PdLogFact::Etcd(LogFact::Membership { peer_urls, .. })) = parse_log_line(line)
        else {
            panic!("{:?}", parse_log_line(line));
        };
        assert_eq!(peer_urls, ["http://a:2380", "http://b:2380"]);
    }

    #[test]
    fn brackets_inside_quoted_values_do_not_end_a_field() {
        let line = split_line(r#"[t] [INFO] [f.go:1] ["m [x]"] [k="a]b \"c\""] [n=1]"#)
            .expect("a PD line");
        assert_eq!(line.message, "m [x]");
        assert_eq!(line.fields["k"], r#"a]b "c""#);
        assert_eq!(line.fields["n"], "1");
    }

    #[test]
    fn the_timing_config_gives_pd_the_timings_etcd_members_get() {
        let config = timing_config();
        assert!(config.contains(&format!(
            "tick-interval = \"{}ms\"",
            super::super::etcd::HEARTBEAT_MS
        )));
        assert!(config.contains(&format!(
            "election-interval = \"{}ms\"",
            super::super::etcd::ELECTION_MS
        )));
    }

    #[test]
    fn base_args_name_the_member_and_its_urls_only() {
        let slot = SlotEndpoints {
            name: "pd0".into(),
            peer_url: "http://127.1.2.10:2380".into(),
            client_url: "http://127.1.2.10:2379".into(),
            listen_peer_url: "http://127.1.2.10:12380".into(),
            listen_client_url: "http://127.1.2.10:12379".into(),
            data_dir: "/d/pd0".into(),
        };
        let args = base_args(&slot, Some("/run/pd.toml"));
        assert!(args.contains(&"--advertise-peer-urls=http://127.1.2.10:2380".to_string()));
        assert!(args.contains(&"--config=/run/pd.toml".to_string()));
        assert!(args.contains(&"--peer-urls=http://127.1.2.10:12380".to_string()));
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--initial-cluster") || a.starts_with("--join")),
            "bootstrap flags are the deployer's: {args:?}"
        );
    }
}
