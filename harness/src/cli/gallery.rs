//! `raftcert gallery`: every bad deployer of the bug gallery, what caught
//! it, and the false-alarm rate of the correct ones.

use super::progress::progress_listener;
use super::{bad, deployer_timeout, parse_engines, provision_all, write_report};
use anyhow::Context;
use raftcert::engine::{EngineChoice, EngineKind};
use raftcert::gallery::FalseAlarmRow;
use raftcert::matrix::{self, MatrixEntry, Plan};
use raftcert::scenario::model::Suite;
use raftcert::subject::SubjectChoice;
use raftcert::subject::deployer::strategies;
use raftcert::substrate::SubstrateChoice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct GalleryArgs {
    /// Directory of bad deployers with `# raftcert-gallery:` headers.
    #[arg(long, default_value = "fixtures/deployers/bugs")]
    dir: PathBuf,
    /// Directory of the suite files the headers name.
    #[arg(long, default_value = "suites")]
    suites: PathBuf,
    /// The engine to run on: the deployers whose header names its kind run
    /// (`engine=pd`; etcd without one), e.g. etcd@3.5.1 or pd@8.5.7.
    #[arg(long, value_name = "ENGINE", default_value = "etcd@3.5.1")]
    engine: String,
    /// Report directory; default: raftcert-out/gallery-<run-id>.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    jobs: usize,
    /// Also write the detection matrix to this file (e.g. docs/detection.md).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Also run every correct deployer (built-in strategies and
    /// fixtures/deployers/example.*) over the conformance suite this many
    /// times, and report the false-alarm rate.
    #[arg(long, default_value_t = 0)]
    false_alarm_runs: u32,
    /// How long a deployer may take to answer one request.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    deployer_timeout: String,
    #[arg(long)]
    seed: Option<u64>,
}

/// Correct external deployers shipped with raftcert for `engine`.
fn example_deployers(engine: EngineKind) -> Vec<String> {
    let files: &[(&str, &str)] = match engine {
        EngineKind::Etcd => &[("example.py", "python3"), ("example.sh", "sh")],
        EngineKind::Pd => &[("example_pd.py", "python3")],
    };
    let mut found = Vec::new();
    for &(file, interpreter) in files {
        let path = Path::new("fixtures/deployers").join(file);
        if path.is_file() {
            found.push(format!("{interpreter} {}", path.display()));
        }
    }
    found
}

pub async fn gallery(args: GalleryArgs) -> anyhow::Result<ExitCode> {
    let timeout = deployer_timeout(&args.deployer_timeout)?;
    let entries = raftcert::gallery::discover(&args.dir).map_err(|e| bad(e.to_string()))?;
    let wanted = parse_engines(std::slice::from_ref(&args.engine))?;
    let Some(&(kind, _)) = wanted.first() else {
        return Err(bad("no engine"));
    };
    let entries: Vec<_> = entries.into_iter().filter(|e| e.engine == kind).collect();
    if entries.is_empty() {
        return Err(bad(format!(
            "{}: no gallery deployer deploys {kind} (a header's engine=)",
            args.dir.display()
        )));
    }
    let engines = provision_all(&wanted[..1]).await?;
    let Some(install) = engines.first().cloned() else {
        return Err(bad("no engine"));
    };
    let version = install.version.clone();
    let engine = EngineChoice::Installed(install);
    let mut suites: BTreeMap<String, Arc<Suite>> = BTreeMap::new();
    let mut matrix_entries = Vec::new();
    for entry in &entries {
        let suite = match suites.get(&entry.suite_file) {
            Some(s) => s.clone(),
            None => {
                let loaded = Arc::new(
                    Suite::load(&args.suites.join(&entry.suite_file))
                        .map_err(|e| bad(e.to_string()))?,
                );
                suites.insert(entry.suite_file.clone(), loaded.clone());
                loaded
            }
        };
        let scenario = suite
            .scenarios
            .iter()
            .find(|s| s.name == entry.scenario)
            .cloned()
            .ok_or_else(|| {
                bad(format!(
                    "{}: scenario {:?} is not in {}",
                    entry.path.display(),
                    entry.scenario,
                    entry.suite_file
                ))
            })?;
        matrix_entries.push(MatrixEntry {
            suite,
            scenario,
            subject: SubjectChoice::External {
                command: entry.command.clone(),
                timeout,
            },
            engine: engine.clone(),
            substrate: SubstrateChoice::Process,
            tls: false,
        });
    }
    let gallery_runs = matrix_entries.len();
    // The false-alarm pass: correct deployers over the conformance suite.
    let conformance = Arc::new(Suite::builtin().map_err(|e| bad(e.to_string()))?);
    let mut correct: Vec<SubjectChoice> = strategies::registry()
        .iter()
        .filter(|s| s.correct && s.deploys(engine.kind()))
        .map(SubjectChoice::Builtin)
        .collect();
    for command in example_deployers(kind) {
        correct.push(SubjectChoice::External { command, timeout });
    }
    for _ in 0..args.false_alarm_runs {
        for subject in &correct {
            for scenario in &conformance.scenarios {
                matrix_entries.push(MatrixEntry {
                    suite: conformance.clone(),
                    scenario: scenario.clone(),
                    subject: subject.clone(),
                    engine: engine.clone(),
                    substrate: SubstrateChoice::Process,
                    tls: false,
                });
            }
        }
    }
    let run_id = matrix::new_run_id();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("raftcert-out").join(format!("gallery-{run_id}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    eprintln!(
        "raftcert gallery: {} bad deployers{}, {} runs at a time, report in {}",
        entries.len(),
        if args.false_alarm_runs > 0 {
            format!(
                ", plus {} correct deployers x {} scenarios x {} repetitions",
                correct.len(),
                conformance.scenarios.len(),
                args.false_alarm_runs
            )
        } else {
            String::new()
        },
        args.jobs,
        out.display()
    );
    let listener = progress_listener(matrix_entries.len() as u64);
    let seed = args.seed.unwrap_or_else(raftcert::util::unique_suffix);
    let plan = Plan {
        entries: matrix_entries,
        not_covered: Vec::new(),
    };
    let report = matrix::run_matrix(plan, &out, &run_id, seed, args.jobs, listener).await;
    write_report(&out, &report)?;
    let detections: Vec<raftcert::gallery::Detection> = entries
        .iter()
        .cloned()
        .zip(report.runs.iter().take(gallery_runs).cloned())
        .map(|(entry, result)| raftcert::gallery::Detection { entry, result })
        .collect();
    let mut false_alarms = raftcert::gallery::FalseAlarms {
        repetitions: args.false_alarm_runs,
        rows: Vec::new(),
    };
    for strategy in &correct {
        let name = strategy.name();
        let runs: Vec<&raftcert::report::RunResult> = report
            .runs
            .iter()
            .skip(gallery_runs)
            .filter(|r| r.strategy == name)
            .collect();
        if !runs.is_empty() {
            false_alarms
                .rows
                .push(FalseAlarmRow::tally(&name, &version, &runs));
        }
    }
    let table = raftcert::gallery::render_table(&detections);
    println!("{table}");
    let markdown = raftcert::gallery::render_markdown(
        &detections,
        &false_alarms,
        &run_id,
        &format!("{kind} {version}"),
    );
    std::fs::write(out.join("detection.md"), &markdown).context("writing detection.md")?;
    if let Some(doc) = &args.doc {
        std::fs::write(doc, &markdown).with_context(|| format!("writing {}", doc.display()))?;
    }
    for row in &false_alarms.rows {
        println!(
            "false alarms: {} @ {}: {} of {} runs; failed by a documented engine bug: {}",
            row.deployer,
            row.engine,
            row.false_alarms,
            row.runs,
            row.engine_bug_summary()
        );
    }
    println!(
        "timelines: {}",
        out.join(raftcert::report::html::HTML_FILE).display()
    );
    println!("report: {}", out.display());
    let all_caught = detections.iter().all(|d| d.caught());
    let no_false_alarm = false_alarms.rows.iter().all(|r| r.false_alarms == 0);
    Ok(if all_caught && no_false_alarm {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
