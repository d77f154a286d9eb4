//! The JSON Schema in docs/ describes what raftcert really sends and
//! accepts: real requests and replies of a run are validated against it
//! with a real validator (Python's `jsonschema`).

use raftcert::driver::{RunSpec, run_scenario};
use raftcert::engine::EngineChoice;
use raftcert::engine::EngineKind;
use raftcert::engine::provision;
use raftcert::model::{Action, Observation};
use raftcert::report::RunStatus;
use raftcert::scenario::model::Suite;
use raftcert::subject::SubjectChoice;
use raftcert::subject::deployer::strategies;
use raftcert::subject::deployer::{Deployer, DeployerError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Passes everything through to a built-in strategy, keeping every request
/// and reply as JSON.
struct Recording {
    inner: Box<dyn Deployer>,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Deployer for Recording {
    fn reconcile(&mut self, obs: &Observation) -> Result<Vec<Action>, DeployerError> {
        let actions = self.inner.reconcile(obs)?;
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push(serde_json::to_value(obs).map_err(|e| DeployerError::Failed(e.to_string()))?);
        log.push(serde_json::json!({ "actions": actions }));
        Ok(actions)
    }
}

/// A PYTHONPATH under which `import jsonschema` works, installing the
/// package from PyPI into raftcert's cache when the system lacks it.
fn jsonschema_path() -> String {
    let works = |path: &str| {
        Command::new("python3")
            .args(["-c", "import jsonschema"])
            .env("PYTHONPATH", path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("") {
        return String::new();
    }
    let target = provision::cache_dir().join("python");
    let target = target.display().to_string();
    if !works(&target) {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--target", &target, "jsonschema"])
            .status()
            .expect("pip runs");
        assert!(status.success(), "installing jsonschema from PyPI failed");
    }
    target
}

fn validate_with_python(schema: &Path, documents: &Path) -> std::process::Output {
    let program = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
count = 0
for line in open(sys.argv[2]):
    doc = json.loads(line)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        print("INVALID:", errors[0].message, list(errors[0].path), json.dumps(doc)[:400])
        sys.exit(1)
    count += 1
print("valid", count)
"#;
    Command::new("python3")
        .env("PYTHONPATH", jsonschema_path())
        .arg("-c")
        .arg(program)
        .arg(schema)
        .arg(documents)
        .output()
        .expect("python3 runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_requests_and_replies_match_the_published_schema() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let factory_log = log.clone();
    let suite = Arc::new(Suite::builtin().expect("built-in suite"));
    let scenario = suite
        .scenarios
        .iter()
        .find(|s| s.name == "volume-loss")
        .cloned()
        .expect("volume-loss");
    let engine = provision::provision(EngineKind::Etcd, "3.5.1")
        .await
        .expect("etcd 3.5.1");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schema-run");
    let _ = std::fs::remove_dir_all(&dir);
    let spec = RunSpec {
        suite,
        scenario,
        subject: SubjectChoice::Custom {
            name: "recording-seed-join".into(),
            factory: Arc::new(move |ctx| {
                Box::new(Recording {
                    inner: strategies::find("seed-join").expect("seed-join").build(ctx),
                    log: factory_log.clone(),
                })
            }),
        },
        engine: EngineChoice::Installed(engine),
        substrate: Default::default(),
        tls: false,
        seed: 3,
        dir: dir.clone(),
        rel_dir: "schema-run".into(),
        run_id: "schema".into(),
    };
    let result = run_scenario(spec, None).await;
    assert_eq!(result.status, RunStatus::Pass, "{:?}", result.error);
    let documents = dir.join("protocol.jsonl");
    let lines: Vec<String> = log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|v| v.to_string())
        .collect();
    // The run went through add, remove and start actions and their results.
    let all = lines.join("\n");
    for needle in [
        "\"member-add\"",
        "\"member-remove\"",
        "\"start\"",
        "\"results\":[{",
    ] {
        assert!(all.contains(needle), "no {needle} in the recorded protocol");
    }
    std::fs::write(&documents, all + "\n").expect("write documents");
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deployer-protocol.schema.json");
    let out = validate_with_python(&schema, &documents);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("valid "), "{stdout}");
}

#[test]
fn the_schema_rejects_what_raftcert_rejects() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schema-negative");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deployer-protocol.schema.json");
    for bad in [
        r#"{"actions":[{"action":"reboot-the-world"}]}"#,
        r#"{"actions":[{"action":"start","slot":"m0"}]}"#,
        r#"{"actions":[{"action":"member-remove","id":"not-hex"}]}"#,
        r#"{"protocol":2,"actions":[]}"#,
    ] {
        let path = dir.join("bad.jsonl");
        std::fs::write(&path, format!("{bad}\n")).expect("write");
        let out = validate_with_python(&schema, &path);
        assert!(!out.status.success(), "schema accepted {bad}");
        // And raftcert's own parser refuses it too (hex is checked when the call is made).
        if !bad.contains("not-hex") {
            assert!(
                raftcert::subject::deployer::external::parse_reply(bad).is_err(),
                "{bad}"
            );
        }
    }
}
