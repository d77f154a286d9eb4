//! Deployer protocol v1 errors: each ends the run as `error` (not `fail`),
//! with a clear message, and leaves no process behind.

mod common;

use raftcert::driver::run_scenario;
use raftcert::report::RunStatus;
use raftcert::subject::SubjectChoice;
use rstest::rstest;
use std::path::PathBuf;
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

const MALFORMED: &str =
    "import sys\nfor line in sys.stdin:\n    print('this is not json', flush=True)\n";
const UNKNOWN_ACTION: &str = "import sys, json\nfor line in sys.stdin:\n    print(json.dumps({'actions': [{'action': 'reboot-the-world'}]}), flush=True)\n";
const SILENT: &str = "import sys, time, json\nsys.stdin.readline()\nprint(json.dumps({'actions': []}), flush=True)\nfor line in sys.stdin:\n    time.sleep(60)\n";
const EXITS: &str = "import sys\nsys.stdin.readline()\nprint('giving up on purpose', file=sys.stderr)\nsys.exit(3)\n";
const WRONG_VERSION: &str = "import sys, json\nfor line in sys.stdin:\n    print(json.dumps({'protocol': 2, 'actions': []}), flush=True)\n";

#[rstest]
#[case::malformed_json("malformed", MALFORMED, "bad reply")]
#[case::unknown_action("unknown", UNKNOWN_ACTION, "unknown variant `reboot-the-world`")]
#[case::timeout("silent", SILENT, "no reply from")]
#[case::deployer_exits("exits", EXITS, "exit status: 3")]
#[case::wrong_protocol("wrong-version", WRONG_VERSION, "speaks protocol 2")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_error_is_an_error_run_with_nothing_left(
    #[case] name: &str,
    #[case] script: &str,
    #[case] message: &str,
) {
    let dir = scratch(&format!("protocol-{name}"));
    let path = dir.join(format!("{name}-deployer.py"));
    std::fs::write(&path, script).expect("write deployer");
    let subject = SubjectChoice::External {
        command: format!("python3 {}", path.display()),
        timeout: Duration::from_secs(2),
    };
    let mut spec = common::builtin_run("bootstrap-3", subject, dir.join("run"), "run", 1).await;
    spec.run_id = format!("protocol-{name}");
    let result = run_scenario(spec, None).await;
    assert_eq!(result.status, RunStatus::Error, "{result:?}");
    let error = result.error.unwrap_or_default();
    assert!(error.contains(message), "{error}");
    let left = processes_mentioning(&path.display().to_string());
    assert!(left.is_empty(), "deployer processes left: {left:?}");
    let trace = std::fs::read_to_string(dir.join("run/trace.jsonl")).expect("trace");
    assert!(
        trace.contains("\"deployer-error\""),
        "the trace records the error"
    );
}
