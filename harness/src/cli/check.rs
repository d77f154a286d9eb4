//! `raftcert check`: a saved trace, report directory or bundle, offline.

use super::bad;
use anyhow::Context;
use raftcert::report;
use raftcert::report::html::TraceLinks;
use raftcert::report::recheck::{Ending, TraceCheck, recheck_report};
use raftcert::trace::read_trace;
use std::path::Path;
use std::process::ExitCode;

pub fn check(path: &Path, html: Option<&Path>) -> anyhow::Result<ExitCode> {
    use raftcert::report::bundle;
    if bundle::is_tarball(path) {
        let scratch = raftcert::sys::TempDir::new("raftcert-check")
            .context("creating a temporary directory")?;
        let root = bundle::unpack(path, scratch.path()).map_err(|e| bad(e.to_string()))?;
        let code = check_bundle(&root)?;
        // The unpacked copy goes when check ends: name the traces in the
        // archive instead of linking into it.
        let archive = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write_dir_html(&root, html, &TraceLinks::InArchive(archive))?;
        return Ok(code);
    }
    if path.is_dir() {
        let code = if bundle::is_sealed(path) {
            check_bundle(path)?
        } else {
            check_report_dir(path)?
        };
        write_dir_html(path, html, &links_from(path, html))?;
        return Ok(code);
    }
    let trace = read_trace(path).map_err(|e| bad(e.to_string()))?;
    if let Some(out) = html {
        // The page may be written anywhere: link the trace by its full path.
        let source = absolute(path);
        let page = report::html::render_trace(&trace, &source.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        write_page(out, &page)?;
    }
    let checked = TraceCheck::of(&trace);
    for verdict in &checked.verdicts {
        println!(
            "{:<3} {:<5} {}",
            verdict.invariant,
            verdict.outcome_word(),
            verdict.title
        );
        if let Some(why) = &verdict.not_applicable {
            println!("      nothing to judge: {why}");
        }
        for violation in &verdict.violations {
            println!("      {}", violation.message);
            for event in &violation.evidence {
                println!("        {}", report::event_summary(event));
            }
        }
    }
    match &checked.ending {
        Ending::Finished => {}
        Ending::Incomplete => println!(
            "INCOMPLETE: the trace ends before its run did (no run-finished event): \
             the run was interrupted or killed, and the verdicts cover only what was recorded"
        ),
        Ending::Errored(error) => println!("ERROR: the run ended with an error: {error}"),
    }
    let failed = checked.failed();
    let violated: Vec<&str> = checked
        .verdicts
        .iter()
        .filter(|v| !v.passed())
        .map(|v| v.invariant.as_str())
        .collect();
    if let Some(finding) = raftcert::findings::recognise(&trace, &violated) {
        println!("\nKnown engine bug: {}: {}", finding.label(), finding.title);
    }
    if failed {
        println!("\nHow the run went (polling and workload left out):");
        for line in report::story(&trace, STORY_LINES) {
            println!("  {line}");
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Verifies a bundle's seal, then re-checks its runs.
fn check_bundle(dir: &Path) -> anyhow::Result<ExitCode> {
    use raftcert::report::bundle;
    let seal = bundle::verify_seal(dir).map_err(|e| bad(e.to_string()))?;
    for (what, files) in [
        ("changed since sealing", &seal.changed),
        ("missing", &seal.missing),
        ("added after sealing", &seal.unlisted),
    ] {
        for file in files {
            println!("seal: {file}: {what}");
        }
    }
    println!(
        "seal: {} of {} sealed files intact{}",
        seal.intact,
        seal.intact + seal.changed.len() + seal.missing.len(),
        if seal.ok() { "" } else { ": BROKEN" }
    );
    let results =
        report::load_results(&dir.join(report::RESULTS_FILE)).map_err(|e| bad(e.to_string()))?;
    match &results.certificate {
        Some(cert) => {
            for subject in &cert.subjects {
                println!(
                    "certifies: {} {}",
                    subject.name,
                    subject.version.as_deref().unwrap_or("")
                );
            }
            println!(
                "built by raftcert {} ({}), suite {} {}, seed {}",
                cert.harness_version,
                cert.harness_commit.as_deref().unwrap_or("commit unknown"),
                cert.suite,
                cert.suite_digest,
                cert.seed
            );
        }
        None => println!("results.json has no certificate section"),
    }
    let runs = check_report_dir(dir)?;
    Ok(if seal.ok() && results.certificate.is_some() {
        runs
    } else {
        ExitCode::from(1)
    })
}

/// `path` made absolute against the working directory, as given if that fails.
fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Trace links of a page for the report directory `dir` written to `out`:
/// relative when the page lies in `dir`, else into `dir` by its full path.
fn links_from(dir: &Path, out: Option<&Path>) -> TraceLinks {
    let beside = out
        .and_then(|o| absolute(o).parent().map(Path::to_path_buf))
        .is_some_and(|parent| parent == absolute(dir));
    if beside {
        TraceLinks::Relative
    } else {
        TraceLinks::Under(absolute(dir))
    }
}

/// report.html for a report directory or unpacked bundle, written to `out`.
fn write_dir_html(dir: &Path, out: Option<&Path>, links: &TraceLinks) -> anyhow::Result<()> {
    let Some(out) = out else {
        return Ok(());
    };
    let results =
        report::load_results(&dir.join(report::RESULTS_FILE)).map_err(|e| bad(e.to_string()))?;
    let page = report::html::render_report_dir(&results, dir, links)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    write_page(out, &page)
}

fn write_page(out: &Path, page: &str) -> anyhow::Result<()> {
    std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))?;
    println!("page: {}", out.display());
    Ok(())
}

/// Lifecycle lines `check` prints for a failing trace.
const STORY_LINES: usize = 40;

/// Re-checks every trace of a report directory and compares the verdicts
/// with the recorded ones: a difference is a defect of the harness.
fn check_report_dir(dir: &Path) -> anyhow::Result<ExitCode> {
    let recheck = recheck_report(dir).map_err(|e| bad(e.to_string()))?;
    for run in &recheck.runs {
        let na: Vec<&str> = run
            .now
            .iter()
            .flat_map(|n| &n.verdicts)
            .filter(|v| v.not_applicable.is_some())
            .map(|v| v.invariant.as_str())
            .collect();
        println!(
            "{:<40} {:<22} {:<8} {:<10} {:<22} {}",
            run.scenario,
            run.strategy,
            run.engine_version,
            run.outcome(),
            if na.is_empty() {
                String::new()
            } else {
                format!("n/a: {}", na.join(","))
            },
            match (&run.problem, run.differs, run.unrecorded.is_empty()) {
                (Some(problem), _, _) => problem.clone(),
                (None, true, _) => "DIFFERS from results.json".to_string(),
                (None, false, true) => "reproduced".to_string(),
                (None, false, false) =>
                    format!("reproduced (+{} not recorded)", run.unrecorded.join(",")),
            }
        );
        if let Some(finding) = run.now.as_ref().and_then(|n| n.known_finding.as_ref()) {
            println!("    known engine bug: {finding}");
        }
    }
    println!(
        "{} runs re-checked: {} not passing, {} differing from the recorded verdicts",
        recheck.runs.len(),
        recheck.not_passing(),
        recheck.differing()
    );
    Ok(if recheck.not_passing() > 0 || recheck.differing() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
