//! `raftcert study --quick` end to end on real etcd: every run measured,
//! the steady-state hold and the scale steps seen in the numbers, the page
//! and plots written, re-measured, and an arm added with `--extend`.

use raftcert::study::{OUTCOMES_SVG, READY_SVG, StudyResult, UNAVAILABILITY_SVG};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_quick_study_measures_every_run_and_writes_its_page_and_plots() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("study-quick");
    let _ = std::fs::remove_dir_all(&out);
    let doc = out.join("doc").join("study.md");
    let run = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args(["study", "--quick", "--seed", "7"])
        .arg("--out")
        .arg(&out)
        .arg("--doc")
        .arg(&doc)
        .output()
        .expect("run raftcert study");
    assert!(
        run.status.success(),
        "raftcert study --quick failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json = std::fs::read_to_string(out.join("study.json")).expect("study.json");
    let result: StudyResult = serde_json::from_str(&json).expect("a study result");
    // 2 strategies x 4 scenarios x 2 repetitions.
    assert_eq!(result.runs.len(), 16);
    assert_eq!(result.cells.len(), 8);
    for cell in &result.cells {
        assert_eq!(cell.runs, 2, "{} {}", cell.arm(), cell.scenario);
        let ready = cell
            .ready_s
            .unwrap_or_else(|| panic!("{} {}: never ready", cell.arm(), cell.scenario));
        assert!(ready.min > 0.0 && ready.min <= ready.max);
        // Every scenario of the quick design holds 5 s after its bootstrap.
        let steady = cell
            .latency_steady
            .unwrap_or_else(|| panic!("{} {}: no steady writes", cell.arm(), cell.scenario));
        assert!(steady.n > 0 && steady.p50_ms <= steady.p99_ms);
        if cell.scenario == "scale-out-1-3-5" {
            let change = cell
                .change_s_per_member
                .unwrap_or_else(|| panic!("{}: no membership change timed", cell.arm()));
            // Two scale steps per run, two runs.
            assert_eq!(change.n, 4, "{}", cell.arm());
            assert!(
                cell.latency_reconfig.is_some(),
                "{}: no write during the scale-out",
                cell.arm()
            );
        }
    }
    for dir in [out.clone(), doc.with_file_name("study")] {
        for plot in [READY_SVG, UNAVAILABILITY_SVG, OUTCOMES_SVG] {
            let svg = std::fs::read_to_string(dir.join(plot))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(plot).display()));
            assert!(svg.starts_with("<svg"), "{plot} is not an SVG");
            assert!(svg.contains("seed-join@etcd-3.6.5"), "{plot} names no arm");
        }
    }
    let page = std::fs::read_to_string(&doc).expect("the doc page");
    for needle in [
        "study/ready-by-size.svg",
        "| seed-join@etcd-3.6.5 | scale-out-1-3-5 |",
        "| static@etcd-3.6.5 | pod-loss |",
        "raftcert study --quick",
    ] {
        assert!(page.contains(needle), "study.md lacks {needle}");
    }
    // Re-measuring the saved traces gives the same measures.
    let again = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args(["study", "--render"])
        .arg(&out)
        .output()
        .expect("run raftcert study --render");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let rendered: StudyResult = serde_json::from_str(
        &std::fs::read_to_string(out.join("study.json")).expect("study.json again"),
    )
    .expect("a study result again");
    assert_eq!(
        serde_json::to_value(&rendered.runs).expect("encode"),
        serde_json::to_value(&result.runs).expect("encode")
    );
    // Each repetition is an ordinary report directory, timelines included.
    for rep in &result.repetitions {
        assert!(out.join(rep).join("report.html").is_file(), "{rep}");
    }

    // An arm added later runs the study's scenarios; the first arm's
    // measures stay as they were.
    let nothing = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args(["study", "--extend"])
        .arg(&out)
        .output()
        .expect("run raftcert study --extend");
    assert_eq!(nothing.status.code(), Some(2), "--extend with no arm");
    let extended = Command::new(env!("CARGO_BIN_EXE_raftcert"))
        .args(["study", "--strategy", "learner", "--engine", "etcd@3.6.5"])
        .args(["--repetitions", "1", "--seed", "8", "--extend"])
        .arg(&out)
        .output()
        .expect("run raftcert study --extend");
    assert!(
        extended.status.success(),
        "{}",
        String::from_utf8_lossy(&extended.stderr)
    );
    let grown: StudyResult = serde_json::from_str(
        &std::fs::read_to_string(out.join("study.json")).expect("study.json extended"),
    )
    .expect("an extended study result");
    assert_eq!(grown.design.arms.len(), 2);
    assert_eq!(grown.design.repetitions_of(&grown.design.arms[1]), 1);
    assert_eq!(grown.runs.len(), 16 + 4);
    assert_eq!(
        serde_json::to_value(&grown.runs[..16]).expect("encode"),
        serde_json::to_value(&result.runs).expect("encode")
    );
    let learner: Vec<_> = grown
        .cells
        .iter()
        .filter(|c| c.subject == "learner")
        .collect();
    assert_eq!(learner.len(), 4);
    assert!(learner.iter().all(|c| c.runs == 1 && c.ready_s.is_some()));
    assert!(out.join("rep-1-arm-2").join("results.json").is_file());
    let page = std::fs::read_to_string(out.join("study.md")).expect("study.md extended");
    for needle in [
        "learner on etcd@3.6.5 (1 repetitions)",
        "| learner@etcd-3.6.5 | scale-out-1-3-5 |",
        "--extend",
    ] {
        assert!(
            page.contains(needle),
            "the extended study.md lacks {needle}"
        );
    }
}
