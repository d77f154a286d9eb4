//! `raftcert study`: runs the study's design, repetition by repetition,
//! through the same path as `raftcert run`, then measures every trace and
//! writes study.json, study.md and the plots.

use super::run::{RunArgs, run_suite};
use super::{bad, write_report};
use anyhow::Context;
use clap::Parser;
use raftcert::report::RunResult;
use raftcert::study::{self, Arm, Design, StudyResult};
use raftcert::trace::read_trace;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct StudyArgs {
    /// The small design (2 strategies, etcd 3.6.5, 4 scenarios, twice):
    /// a few minutes.
    #[arg(long)]
    quick: bool,
    /// Repetitions of every run; default 5 (2 with --quick).
    #[arg(long)]
    repetitions: Option<u32>,
    /// Strategies (repeatable), replacing the design's; with --engine.
    #[arg(long = "strategy", value_name = "NAME", requires = "engines")]
    strategies: Vec<String>,
    /// Engines (repeatable) for --strategy.
    #[arg(long = "engine", value_name = "ENGINE")]
    engines: Vec<String>,
    /// Only these scenarios of suites/study.yaml (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Leave PD out of the full design (it is in when its sources are).
    #[arg(long)]
    no_pd: bool,
    /// An operator profile directory (repeatable): one more arm, its
    /// deployment run on Kubernetes (`run --backend kube`).
    #[arg(long = "profile", value_name = "DIR")]
    profiles: Vec<PathBuf>,
    /// With --profile: the cluster's kubeconfig; default: KUBECONFIG or
    /// ~/.kube/config.
    #[arg(long, requires = "profiles")]
    kubeconfig: Option<PathBuf>,
    /// Only the --profile arms, none of the built-in strategies.
    #[arg(long, requires = "profiles", conflicts_with = "strategies")]
    profiles_only: bool,
    /// Add arms (--strategy with --engine, or --profile) to the study in
    /// DIR: they run its scenarios, and its page and plots are written
    /// again over every arm. For arms that need what the others did not
    /// (a Kubernetes cluster).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["quick", "scenarios", "out", "profiles_only"])]
    extend: Option<PathBuf>,
    /// Study directory; default: raftcert-study/<time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write study.md here, its plots in a folder named after it
    /// (docs/study.md puts them in docs/study/).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Runs at a time.
    #[arg(long)]
    jobs: Option<usize>,
    /// Seed of the first repetition; the others follow it.
    #[arg(long)]
    seed: Option<u64>,
    /// Run nothing: re-measure the traces of a study directory written
    /// before and write its page and plots again (with --doc, there too).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["quick", "repetitions", "strategies", "scenarios", "out", "profiles", "extend"])]
    render: Option<PathBuf>,
}

/// RunArgs as `raftcert run` would parse them.
#[derive(Parser)]
struct AsRun {
    #[command(flatten)]
    run: RunArgs,
}

fn design(args: &StudyArgs) -> Design {
    let mut design = if args.quick {
        Design::quick()
    } else {
        let sources = raftcert::engine::gobuild::sources_dir();
        Design::full(!args.no_pd && sources.join("pd-v8.5.7.tar.gz").is_file())
    };
    if let Some(arm) = strategy_arm(args) {
        design.arms = vec![arm];
    }
    if args.profiles_only {
        design.arms.clear();
    }
    design.arms.extend(profile_arms(args));
    if !args.scenarios.is_empty() {
        design.scenarios = args.scenarios.clone();
    }
    if let Some(n) = args.repetitions {
        design.repetitions = n;
    }
    design
}

/// The arm that --strategy and --engine name, if any.
fn strategy_arm(args: &StudyArgs) -> Option<Arm> {
    (!args.strategies.is_empty()).then(|| Arm {
        strategies: args.strategies.clone(),
        engines: args.engines.clone(),
        ..Arm::default()
    })
}

fn profile_arms(args: &StudyArgs) -> Vec<Arm> {
    args.profiles
        .iter()
        .map(|p| Arm::profile(&p.display().to_string()))
        .collect()
}

pub async fn study(args: StudyArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.render {
        return render(dir, args.doc.as_deref());
    }
    if let Some(dir) = &args.extend {
        return extend(&args, dir).await;
    }
    let design = design(&args);
    if design.repetitions == 0 {
        return Err(bad("--repetitions must be at least 1"));
    }
    let started = std::time::Instant::now();
    let started_at = raftcert::util::utc_timestamp();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("raftcert-study").join(raftcert::matrix::new_run_id()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let suite = out.join("study.yaml");
    std::fs::write(&suite, raftcert::scenario::model::STUDY_SUITE)
        .with_context(|| format!("writing {}", suite.display()))?;
    let ran = run_arms(&args, &design, &design.arms, 0, &out).await?;
    let cells = study::aggregate(&ran.measures, &design);
    let result = StudyResult {
        command: command_line(),
        design,
        machine: machine(),
        started_at,
        duration_s: started.elapsed().as_secs_f64(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        repetitions: ran.directories,
        runs: ran.measures,
        cells,
    };
    write_outputs(&result, &out, args.doc.as_deref())?;
    print_summary(&result, &out);
    // A study measures; runs that fail are part of what it reports.
    Ok(ExitCode::SUCCESS)
}

/// Runs more arms into the study in `dir` and writes it again.
async fn extend(args: &StudyArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut result = load_study(dir)?;
    let mut arms: Vec<Arm> = strategy_arm(args).into_iter().collect();
    arms.extend(profile_arms(args));
    if arms.is_empty() {
        return Err(bad(
            "--extend needs the arms to add: --strategy with --engine, or --profile",
        ));
    }
    if let Some(n) = args.repetitions {
        if n == 0 {
            return Err(bad("--repetitions must be at least 1"));
        }
        for arm in &mut arms {
            if n != result.design.repetitions {
                arm.repetitions = Some(n);
            }
        }
    }
    // The scenarios as the study ran them, from its own copy of the suite.
    let ran = run_arms(args, &result.design, &arms, result.design.arms.len(), dir).await?;
    result.design.arms.extend(arms);
    result.repetitions.extend(ran.directories);
    result.runs.extend(ran.measures);
    result.cells = study::aggregate(&result.runs, &result.design);
    result.duration_s += started.elapsed().as_secs_f64();
    result.command = format!("{}\n{}", result.command, command_line());
    write_outputs(&result, dir, args.doc.as_deref())?;
    print_summary(&result, dir);
    Ok(ExitCode::SUCCESS)
}

/// What running some arms of a design produced.
struct ArmsRun {
    /// Report directories, relative to the study's.
    directories: Vec<String>,
    measures: Vec<study::RunMeasure>,
}

/// Runs `arms` (numbered from `first_index + 1`) through `raftcert run`,
/// repetition by repetition, over the design's scenarios and the suite
/// in `out/study.yaml`.
async fn run_arms(
    args: &StudyArgs,
    design: &Design,
    arms: &[Arm],
    first_index: usize,
    out: &Path,
) -> anyhow::Result<ArmsRun> {
    let suite = out.join("study.yaml");
    if !suite.is_file() {
        return Err(bad(format!("{}: no study suite", suite.display())));
    }
    let seed = args.seed.unwrap_or_else(raftcert::util::unique_suffix);
    let kubeconfig = args.kubeconfig.as_ref().map(|p| p.display().to_string());
    let most = arms
        .iter()
        .map(|arm| design.repetitions_of(arm))
        .max()
        .unwrap_or(0);
    let mut ran = ArmsRun {
        directories: Vec::new(),
        measures: Vec::new(),
    };
    for repetition in 1..=most {
        for (k, arm) in arms.iter().enumerate() {
            let of = design.repetitions_of(arm);
            if repetition > of {
                continue;
            }
            let dir_name = format!("rep-{repetition}-arm-{}", first_index + k + 1);
            let mut argv: Vec<String> = vec!["run".into(), "--no-tls-pass".into()];
            let mut push = |flag: &str, value: String| {
                argv.push(flag.to_string());
                argv.push(value);
            };
            push("--suite", suite.display().to_string());
            push("--out", out.join(&dir_name).display().to_string());
            push(
                "--seed",
                (seed.wrapping_add(u64::from(repetition))).to_string(),
            );
            if let Some(jobs) = args.jobs {
                push("--jobs", jobs.to_string());
            }
            for s in &design.scenarios {
                push("--scenario", s.clone());
            }
            argv.extend(arm.run_arguments(kubeconfig.as_deref()));
            let run_args = AsRun::try_parse_from(&argv)
                .map_err(|e| bad(format!("the study's run arguments: {e}")))?
                .run;
            eprintln!("study: repetition {repetition} of {of}, {}", arm.describe());
            let done = run_suite(&run_args, |_| out.join(&dir_name)).await?;
            write_report(&done.out, &done.report)?;
            ran.measures
                .extend(measure_all(&done.out, &done.report.runs, repetition)?);
            ran.directories.push(dir_name);
        }
    }
    Ok(ran)
}

fn command_line() -> String {
    std::iter::once("raftcert".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_summary(result: &StudyResult, dir: &Path) {
    let not_passing = result.runs.iter().filter(|r| r.status != "pass").count();
    println!(
        "study: {} runs ({} not passing) in {:.0} s; {}",
        result.runs.len(),
        not_passing,
        result.duration_s,
        dir.join("study.md").display()
    );
}

fn load_study(dir: &Path) -> anyhow::Result<StudyResult> {
    let path = dir.join("study.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{}: not a study: {e}", path.display())))
}

/// Re-measures a study directory's traces with this build and writes
/// study.json, study.md and the plots again.
fn render(dir: &Path, doc: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut result = load_study(dir)?;
    let mut measures = Vec::new();
    for (k, rep_dir) in result.repetitions.iter().enumerate() {
        let report = raftcert::report::load_results(&dir.join(rep_dir).join("results.json"))
            .map_err(|e| bad(e.to_string()))?;
        let repetition = rep_dir
            .strip_prefix("rep-")
            .and_then(|r| r.split('-').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(k as u32 + 1);
        measures.extend(measure_all(&dir.join(rep_dir), &report.runs, repetition)?);
    }
    result.cells = study::aggregate(&measures, &result.design);
    result.runs = measures;
    write_outputs(&result, dir, doc)?;
    println!(
        "study: {} runs re-measured; {}",
        result.runs.len(),
        dir.join("study.md").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn measure_all(
    dir: &Path,
    runs: &[RunResult],
    repetition: u32,
) -> anyhow::Result<Vec<study::RunMeasure>> {
    runs.iter()
        .map(|run| {
            let path = dir.join(&run.trace);
            let trace = read_trace(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(study::measure(run, &trace, repetition))
        })
        .collect()
}

/// study.json, study.md and the plots in the study directory, and the
/// page with its plots at `doc` too when asked.
fn write_outputs(result: &StudyResult, dir: &Path, doc: Option<&Path>) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(result).context("encoding study.json")?;
    json.push('\n');
    std::fs::write(dir.join("study.json"), json).context("writing study.json")?;
    study::write_plots(&result.cells, dir).map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
    let markdown = study::render_markdown(result, ".").map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(dir.join("study.md"), markdown).context("writing study.md")?;
    if let Some(doc) = doc {
        write_doc(result, doc)?;
    }
    Ok(())
}

/// docs/study.md with its plots in docs/study/.
fn write_doc(result: &StudyResult, doc: &Path) -> anyhow::Result<()> {
    let stem = doc
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| bad(format!("{}: not a file name", doc.display())))?;
    let plots = doc.with_file_name(stem);
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    study::write_plots(&result.cells, &plots).map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
    let markdown = study::render_markdown(result, stem).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(doc, markdown).with_context(|| format!("writing {}", doc.display()))?;
    std::fs::write(
        doc.with_extension("json"),
        serde_json::to_string_pretty(result).context("encoding")? + "\n",
    )
    .with_context(|| format!("writing {}", doc.with_extension("json").display()))?;
    Ok(())
}

/// Cores, memory and kernel, from /proc.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, {mem_gb:.0} GB, Linux {}, {}",
        kernel.trim(),
        std::env::consts::ARCH
    )
}
