use super::*;
use crate::trace::{
    EngineErrorClass, Event, EventKind, FaultKind, MemberInfo, MembershipOp, SlotInfo, StartConfig,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir, removed on drop so a
/// failing assertion does not leave it behind.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "raftcert-report-test-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn member_start_event() -> Event {
    let mut cluster = BTreeMap::new();
    cluster.insert("m0".to_string(), vec!["http://127.0.0.1:2380".to_string()]);
    cluster.insert("m2".to_string(), vec!["http://127.0.0.3:2380".to_string()]);
    Event {
        seq: 17,
        t_ms: 1234,
        kind: EventKind::MemberStart {
            slot: "m2".to_string(),
            config: StartConfig {
                name: "m2".to_string(),
                member_initialized: false,
                initial_cluster: cluster,
                initial_cluster_state: "new".to_string(),
                initial_cluster_token: "tok".to_string(),
            },
        },
    }
}

fn member_list_event() -> Event {
    Event {
        seq: 18,
        t_ms: 1500,
        kind: EventKind::MemberList {
            via: "m0".to_string(),
            cluster_id: "cdf818194e3a8c32".to_string(),
            members: vec![
                MemberInfo {
                    id: "8e9e05c52164694d".to_string(),
                    name: "m0".to_string(),
                    peer_urls: vec!["http://127.0.0.1:2380".to_string()],
                    client_urls: vec!["http://127.0.0.1:2379".to_string()],
                    is_learner: false,
                },
                MemberInfo {
                    id: "1234".to_string(),
                    name: String::new(),
                    peer_urls: vec!["http://127.0.0.3:2380".to_string()],
                    client_urls: vec![],
                    is_learner: true,
                },
            ],
        },
    }
}

fn run(scenario: &str, status: RunStatus) -> RunResult {
    RunResult {
        run_id: format!("r1-{scenario}"),
        scenario: scenario.to_string(),
        strategy: "static".to_string(),
        engine: "etcd".to_string(),
        engine_version: "3.5.17".to_string(),
        backend: "local".to_string(),
        replicas: 3,
        tls: false,
        seed: 42,
        status,
        error: None,
        verdicts: Vec::new(),
        must_judge: Vec::new(),
        known_finding: None,
        duration_ms: 30_000,
        ready_ms: None,
        trace: format!("runs/{scenario}/trace.jsonl"),
        logs: format!("runs/{scenario}/logs"),
    }
}

fn sample() -> SuiteReport {
    let mut pass = run("scale-up", RunStatus::Pass);
    pass.ready_ms = Some(1_234);
    let mut metrics = BTreeMap::new();
    metrics.insert("unavailable_ms".to_string(), 2_500.0);
    metrics.insert("zero_ms".to_string(), 0.0);
    pass.verdicts.push(Verdict {
        invariant: "I4".to_string(),
        title: "Quorum kept".to_string(),
        violations: vec![],
        metrics,
        not_applicable: None,
    });

    let mut fail = run("split-brain", RunStatus::Fail);
    fail.strategy = "discovery".to_string();
    fail.tls = true;
    fail.ready_ms = Some(2_000);
    fail.verdicts.push(Verdict {
        invariant: "I1".to_string(),
        title: "Single cluster".to_string(),
        violations: vec![Violation {
            message: "two clusters formed: <m0> and m2".to_string(),
            evidence: vec![member_start_event(), member_list_event()],
        }],
        metrics: BTreeMap::new(),
        not_applicable: None,
    });

    let mut error = run("lose-volume", RunStatus::Error);
    error.error = Some("deployer crashed\nwith exit code 2".to_string());

    SuiteReport {
        format: REPORT_FORMAT,
        run_id: "20240101-abc".to_string(),
        harness_version: "0.1.0".to_string(),
        started_at: "2024-01-01T00:00:00Z".to_string(),
        duration_ms: 95_200,
        runs: vec![pass, fail, error],
        not_covered: Vec::new(),
        certificate: None,
    }
}

#[test]
fn write_all_writes_three_files_that_agree() {
    let dir = TempDir::new();
    let report = sample();
    write_all(&dir.0, &report).expect("write_all");

    let loaded = load_results(&dir.0.join(RESULTS_FILE)).expect("load_results");
    assert_eq!(
        serde_json::to_value(&loaded).expect("encode loaded"),
        serde_json::to_value(&report).expect("encode original")
    );

    let json = std::fs::read_to_string(dir.0.join(RESULTS_FILE)).expect("read json");
    for needle in [
        "\"status\": \"fail\"",
        "\"invariant\": \"I1\"",
        "\"evidence\"",
    ] {
        assert!(json.contains(needle), "results.json lacks {needle}");
    }

    let junit = std::fs::read_to_string(dir.0.join(JUNIT_FILE)).expect("read junit");
    assert_eq!(junit.matches("<failure").count(), 1, "{junit}");
    assert_eq!(junit.matches("<error").count(), 1, "{junit}");
    for name in ["scale-up", "split-brain", "lose-volume"] {
        assert!(junit.contains(&format!("name=\"{name}\"")), "{junit}");
    }
    assert!(junit.contains("name=\"static@etcd-3.5.17\""), "{junit}");
    assert!(
        junit.contains("name=\"discovery@etcd-3.5.17+tls\""),
        "{junit}"
    );
    assert!(
        junit.contains("classname=\"static.etcd-3.5.17\""),
        "{junit}"
    );
    assert!(
        junit.contains("violated I1: two clusters formed"),
        "{junit}"
    );
    assert!(
        junit.contains("&quot;event&quot;:&quot;member-start&quot;"),
        "{junit}"
    );
    assert_junit_structure(&junit);
    assert!(junit.contains("deployer crashed"), "{junit}");

    // report.html has a section per run, linked from the matrix; these runs'
    // traces were never written, and each section says so.
    let page = std::fs::read_to_string(dir.0.join(super::html::HTML_FILE)).expect("read html");
    for run in &report.runs {
        let anchor = super::html::run_anchor(&run.run_id);
        assert!(
            page.contains(&format!("id=\"{anchor}\"")),
            "no section {anchor}"
        );
        assert!(
            page.contains(&format!("href=\"#{anchor}\"")),
            "no link to {anchor}"
        );
    }
    assert_eq!(
        page.matches("class=\"trace-error\"").count(),
        report.runs.len()
    );
    assert!(
        junit.contains("name=\"run-id\" value=\"20240101-abc\""),
        "{junit}"
    );
    assert!(junit.contains("name=\"harness-version\""), "{junit}");
    assert!(junit.contains("time=\"30.000\""), "{junit}");

    let md = std::fs::read_to_string(dir.0.join(MARKDOWN_FILE)).expect("read markdown");
    assert!(
        md.contains("| scenario | static@etcd-3.5.17 | discovery@etcd-3.5.17+tls |"),
        "{md}"
    );
    assert!(md.contains("| scale-up | pass (ready 1.2s) | - |"), "{md}");
    assert!(md.contains("| split-brain | - | FAIL I1 |"), "{md}");
    assert!(md.contains("| lose-volume | ERROR | - |"), "{md}");
    assert!(md.contains("**1 pass**, **1 fail**, **1 error**"), "{md}");
    assert!(md.contains("## Time to ready"), "{md}");
    assert!(
        md.contains("| static@etcd-3.5.17 | 2 | 1 | 1.2s | 1.2s |"),
        "{md}"
    );
    // `<` is escaped so the message survives Markdown rendering.
    assert!(md.contains(r"two clusters formed: \<m0\> and m2"), "{md}");
    assert!(md.contains("#### I1: Single cluster"), "{md}");
    assert!(
        md.contains("- `t=1234ms seq=17 member-start slot=m2 "),
        "{md}"
    );
    assert!(md.contains("(<runs/split-brain/trace.jsonl>)"), "{md}");
    assert!(
        md.contains("- Error: deployer crashed with exit code 2"),
        "{md}"
    );
    assert!(md.contains("| I4 | unavailable\\_ms | 2500 |"), "{md}");
    assert!(!md.contains("zero"), "zero metrics are left out: {md}");
}

/// Parses junit.xml back and checks the failure carries the evidence as
/// JSON lines that decode to the original events.
fn assert_junit_structure(xml: &str) {
    use quick_junit::{NonSuccessKind, TestCaseStatus};
    let junit = quick_junit::Report::deserialize_from_str(xml).expect("parse junit");
    assert_eq!((junit.tests, junit.failures, junit.errors), (3, 1, 1));
    assert_eq!(junit.test_suites.len(), 2);
    let case = junit
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .find(|c| c.name.as_str() == "split-brain")
        .expect("split-brain case");
    let TestCaseStatus::NonSuccess {
        kind: NonSuccessKind::Failure,
        description: Some(description),
        ..
    } = &case.status
    else {
        panic!("split-brain is not a failure: {:?}", case.status);
    };
    let events: Vec<Event> = description
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("evidence line is an event"))
        .collect();
    assert_eq!(events, vec![member_start_event(), member_list_event()]);
    let error = junit
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .find(|c| c.name.as_str() == "lose-volume")
        .expect("lose-volume case");
    let TestCaseStatus::NonSuccess {
        kind: NonSuccessKind::Error,
        message: Some(message),
        ..
    } = &error.status
    else {
        panic!("lose-volume is not an error: {:?}", error.status);
    };
    assert_eq!(message.as_str(), "deployer crashed with exit code 2");
}

#[test]
fn render_table_lists_every_run_and_counts() {
    let table = render_table(&sample());
    for scenario in ["scale-up", "split-brain", "lose-volume"] {
        assert!(table.contains(scenario), "{table}");
    }
    assert!(
        table.ends_with("3 runs: 1 passed, 1 failed, 1 error in 95.2s\n"),
        "{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].starts_with("scenario "), "{table}");
    // Every column after the first starts at the same offset in each row.
    let col = lines[0].find("strategy").expect("strategy header");
    for line in &lines[2..5] {
        assert_eq!(line.as_bytes()[col - 1], b' ', "{table}");
        assert_ne!(line.as_bytes()[col], b' ', "{table}");
    }
    assert!(lines[3].contains("FAIL"), "{table}");
    assert!(lines[3].contains("I1"), "{table}");
    assert!(lines[3].contains("two clusters formed"), "{table}");
    assert!(
        lines[4].contains("deployer crashed with exit code 2"),
        "{table}"
    );
    assert!(lines[2].contains("1.2s"), "{table}");
    assert!(table.is_ascii(), "{table}");
    assert!(lines.iter().all(|l| l == &l.trim_end()), "trailing spaces");
}

#[test]
fn render_table_truncates_long_evidence() {
    let mut report = sample();
    report.runs[2].error = Some("x".repeat(500));
    let table = render_table(&report);
    let line = table.lines().nth(4).expect("error row");
    assert!(line.ends_with("..."), "{line}");
    assert!(!line.contains(&"x".repeat(101)), "{line}");
}

#[test]
fn event_summary_renders_member_lists() {
    assert_eq!(
        event_summary(&member_list_event()),
        "t=1500ms seq=18 member-list via=m0 cluster=cdf818194e3a8c32 \
         [m0:8e9e05c52164694d started, <unstarted>:1234 learner]"
    );
    assert_eq!(
        event_summary(&member_start_event()),
        "t=1234ms seq=17 member-start slot=m2 name=m2 state=new wal=no cluster=[m0 m2] token=tok"
    );
}

#[test]
fn event_summary_covers_every_kind_on_one_line() {
    let s = |v: &str| v.to_string();
    let kinds = vec![
        EventKind::RunStarted {
            format: 1,
            run_id: s("r"),
            scenario: s("sc"),
            strategy: s("st"),
            engine: s("etcd"),
            engine_version: s("3.5.17"),
            backend: s("local"),
            seed: 7,
            tls: true,
            slots: vec![SlotInfo {
                name: s("m0"),
                ordinal: 0,
                peer_url: s("http://a:2380"),
                client_url: s("http://a:2379"),
            }],
            quorum_grace_ms: 15_000,
            member_fronts: vec![s("http://svc:2379")],
        },
        EventKind::StepStarted {
            index: 1,
            name: s("scale to 3"),
            desired_replicas: 3,
            deadline_ms: 60_000,
            expect_unsettled: false,
        },
        EventKind::StepFinished {
            index: 1,
            name: s("scale"),
            settled: false,
            elapsed_ms: 10,
            detail: Some(s("timed out\nafter 60s")),
            desired_slots: None,
        },
        EventKind::FaultInjected {
            fault: FaultKind::LOSE_VOLUME,
            slot: Some(s("m1")),
        },
        EventKind::DeployerActions {
            actions: vec![
                serde_json::json!({"action": "start", "slot": "m0"}),
                serde_json::json!({"AddMember": {"slot": "m2"}}),
                serde_json::json!("wait"),
                serde_json::json!([1, 2]),
            ],
        },
        EventKind::DeployerError {
            message: s("protocol error"),
        },
        EventKind::ProcessStarted {
            slot: s("m0"),
            pid: 99,
            command: s("/opt/etcd/bin/etcd"),
            args: vec![s("--name"), s("m0")],
            had_data: true,
        },
        EventKind::ProcessExited {
            slot: s("m0"),
            code: None,
            signal: Some(9),
        },
        EventKind::SlotDeleted { slot: s("m1") },
        EventKind::DataWiped { slot: s("m1") },
        member_start_event().kind,
        EventKind::LocalMember {
            slot: s("m0"),
            member_id: s("8e9e"),
            cluster_id: s("cdf8"),
            restarted: true,
        },
        EventKind::MembershipApplied {
            slot: s("m0"),
            op: MembershipOp::AddLearner,
            member_id: s("1234"),
            peer_urls: vec![s("http://c:2380")],
        },
        EventKind::EngineError {
            slot: s("m2"),
            class: EngineErrorClass::ClusterIdMismatch,
            message: s("request cluster ID mismatch"),
        },
        EventKind::MembershipCall {
            op: MembershipOp::Remove,
            peer_url: None,
            member_id: Some(s("1234")),
            ok: false,
            error: Some(s("member not found")),
        },
        member_list_event().kind,
        EventKind::MemberStatus {
            slot: s("m0"),
            cluster_id: s("cdf8"),
            member_id: s("8e9e"),
            leader: s("0"),
            term: 2,
            raft_index: 10,
            revision: 4,
            is_learner: false,
        },
        EventKind::ClientWrite {
            key: s("k1"),
            value: s("v1"),
            ok: true,
            error: None,
            latency_ms: None,
        },
        EventKind::FinalRead {
            ok: true,
            error: None,
            values: BTreeMap::new(),
        },
        EventKind::RunFinished { error: None },
    ];
    for (seq, kind) in kinds.into_iter().enumerate() {
        let name = kind.name();
        let line = event_summary(&Event {
            seq: seq as u64,
            t_ms: 5,
            kind,
        });
        assert!(
            line.starts_with(&format!("t=5ms seq={seq} {name}")),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }

    let quoted = kind_summary(&EventKind::StepFinished {
        index: 1,
        name: s("scale"),
        settled: false,
        elapsed_ms: 10,
        detail: Some(s("timed out\nafter 60s")),
        desired_slots: None,
    });
    assert_eq!(
        quoted,
        r#"step-finished #1 scale unsettled elapsed=10ms detail="timed out\nafter 60s""#
    );
    let actions = kind_summary(&EventKind::DeployerActions {
        actions: vec![
            serde_json::json!({"action": "start", "slot": "m0"}),
            serde_json::json!({"AddMember": {"slot": "m2"}}),
            serde_json::json!("wait"),
        ],
    });
    assert_eq!(
        actions,
        "deployer-actions n=3 [start m0, AddMember m2, wait]"
    );
    let call = kind_summary(&EventKind::MembershipCall {
        op: MembershipOp::Remove,
        peer_url: None,
        member_id: Some(s("1234")),
        ok: false,
        error: Some(s("member not found")),
    });
    assert_eq!(
        call,
        r#"membership-call remove member=1234 failed error="member not found""#
    );
    let fault = kind_summary(&EventKind::FaultInjected {
        fault: FaultKind::LOSE_VOLUME,
        slot: Some(s("m1")),
    });
    assert_eq!(fault, "fault-injected lose-volume slot=m1");
}

#[test]
fn load_results_reports_missing_and_malformed_files() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope.json");
    assert!(matches!(
        load_results(&missing),
        Err(ReportError::Io { .. })
    ));
    let bad = dir.0.join("bad.json");
    std::fs::write(&bad, "{ not json").expect("write bad");
    assert!(matches!(load_results(&bad), Err(ReportError::Parse { .. })));

    let mut future = sample();
    future.format = REPORT_FORMAT + 1;
    write_all(&dir.0, &future).expect("write_all");
    assert!(matches!(
        load_results(&dir.0.join(RESULTS_FILE)),
        Err(ReportError::UnsupportedFormat { .. })
    ));
}

#[test]
fn write_all_needs_an_existing_directory() {
    let dir = TempDir::new();
    let missing = dir.0.join("absent");
    assert!(matches!(
        write_all(&missing, &sample()),
        Err(ReportError::NotADirectory(_))
    ));
}

#[test]
fn empty_report_still_renders() {
    let mut report = sample();
    report.runs.clear();
    let table = render_table(&report);
    assert!(table.ends_with("0 runs: 0 passed, 0 failed, 0 errors in 95.2s\n"));
    let md = render_markdown(&report);
    assert!(md.contains("No runs."), "{md}");
    render_junit(&report).expect("junit");
}

#[test]
fn helpers_cut_and_pick_the_middle() {
    assert_eq!(truncate("héllo wörld", 8), "héllo...");
    assert_eq!(one_line("a\n\n b\tc ", 20), "a b c");
    assert_eq!(markdown::median_ms(&[]), None);
    assert_eq!(markdown::median_ms(&[3]), Some(3));
    assert_eq!(markdown::median_ms(&[1, 4]), Some(2));
    assert_eq!(markdown::median_ms(&[1, 2, 9]), Some(2));
    assert_eq!(
        markdown::median_ms(&[u64::MAX - 1, u64::MAX]),
        Some(u64::MAX - 1)
    );
}

#[test]
fn story_keeps_the_lifecycle_and_folds_retries() {
    let refused_add = || EventKind::MembershipCall {
        op: MembershipOp::Add,
        peer_url: Some("http://m2:2380".to_string()),
        member_id: None,
        ok: false,
        error: Some("etcdserver: unhealthy cluster".to_string()),
    };
    let kinds = vec![
        member_list_event().kind,
        EventKind::ProcessExited {
            slot: "m0".to_string(),
            code: None,
            signal: Some(9),
        },
        refused_add(),
        refused_add(),
        refused_add(),
        member_start_event().kind,
        EventKind::NetworkHealed,
    ];
    let trace = crate::trace::Trace::new(
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                seq: i as u64 + 1,
                t_ms: 1000 * (i as u64 + 1),
                kind,
            })
            .collect(),
    );
    let lines = story(&trace, 10);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("t=2000ms process-exited"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("t=3000ms membership-call"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with("(x3, the last at t=5000ms)"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "t=7000ms network-healed");
    assert_eq!(
        story(&trace, 1),
        vec!["t=7000ms network-healed".to_string()]
    );
}
