//! report.html in a real browser: Debian's `chromium-headless-shell` loads
//! the page `raftcert check --html` renders for each committed bundle, and
//! the test reads the DOM the browser built and the console it logged.

use raftcert::report::{bundle, html, load_results};
use raftcert::trace::read_trace;
use std::path::{Path, PathBuf};
use std::process::Command;

const BROWSER: &str = "chromium-headless-shell";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness lives in the workspace")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The browser, installed from Debian's archive when missing (as root).
fn browser() -> &'static str {
    if !on_path(BROWSER) {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "[ \"$(id -u)\" = 0 ] && {{ apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {BROWSER}; }} >/dev/null 2>&1"
                ),
            ])
            .status();
    }
    assert!(
        on_path(BROWSER),
        "{BROWSER} is not installed and could not be (apt-get install {BROWSER}, as root)"
    );
    BROWSER
}

/// What the browser made of a page: its DOM after scripts ran, and what
/// the page logged to the console (errors included).
struct Rendered {
    dom: String,
    console: Vec<String>,
}

fn render(page: &Path, profile: &Path) -> Rendered {
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser())
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run the browser");
    assert!(
        out.status.success(),
        "{BROWSER} failed on {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

/// The DOM of one run's section, by its anchor.
fn section<'a>(dom: &'a str, anchor: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{anchor}\""))
        .unwrap_or_else(|| panic!("no section {anchor} in the rendered page"));
    let rest = &dom[start..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

/// The console check can fail: a page whose script throws is caught.
#[test]
fn a_script_error_on_the_page_reaches_the_console_check() {
    let dir = scratch("html-console");
    let page = dir.join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>",
    )
    .expect("write page");
    let rendered = render(&page, &dir.join("profile"));
    assert!(
        rendered
            .console
            .iter()
            .any(|l| l.contains("undefinedFunction")),
        "the thrown error was not seen: {:?}",
        rendered.console
    );
}

/// Every committed bundle renders; in the browser each run has one lane per
/// member of its trace, a failing run's evidence is highlighted, a passing
/// run has none, and the page logs nothing to the console.
#[test]
fn every_committed_bundle_renders_a_lane_per_member_and_highlights_the_evidence() {
    let findings = repo_root().join("docs").join("findings");
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(&findings)
        .expect("docs/findings")
        .flatten()
        .map(|e| e.path())
        .filter(|p| bundle::is_tarball(p))
        .collect();
    bundles.sort();
    assert!(!bundles.is_empty(), "no bundle in {}", findings.display());
    let mut failing_seen = 0;
    for tarball in &bundles {
        let name = tarball
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let dir = scratch(&format!("html-{name}"));
        let page = dir.join("report.html");
        let out = Command::new(env!("CARGO_BIN_EXE_raftcert"))
            .arg("check")
            .arg(tarball)
            .arg("--html")
            .arg(&page)
            .output()
            .expect("run raftcert check");
        assert!(
            page.is_file(),
            "raftcert check --html wrote no page for {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = render(&page, &dir.join("profile"));
        assert!(
            rendered.console.is_empty(),
            "{name}: console messages: {:?}",
            rendered.console
        );
        // The expectations come from the bundle itself.
        let root = bundle::unpack(tarball, &dir.join("unpacked")).expect("unpack");
        let results = load_results(&root.join("results.json")).expect("results.json");
        for run in &results.runs {
            let trace = read_trace(&root.join(&run.trace)).expect("trace");
            let dom = section(&rendered.dom, &html::run_anchor(&run.run_id));
            let lanes = dom.matches("class=\"row lane member\"").count();
            assert_eq!(
                lanes,
                trace.slots().len(),
                "{name} {}: lanes for {:?}",
                run.scenario,
                trace.slots().iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            let highlighted = dom.matches(" evidence\"").count();
            let evidence_events = run
                .verdicts
                .iter()
                .flat_map(|v| &v.violations)
                .map(|v| v.evidence.len())
                .sum::<usize>();
            if evidence_events > 0 {
                failing_seen += 1;
                assert!(
                    highlighted > 0,
                    "{name} {}: {evidence_events} evidence events, none highlighted",
                    run.scenario
                );
            } else {
                assert_eq!(
                    highlighted, 0,
                    "{name} {}: highlighted without a violation",
                    run.scenario
                );
            }
        }
    }
    assert!(
        failing_seen > 0,
        "no failing run with evidence in the committed bundles"
    );
}
