//! `raftcert run` and `raftcert certify`: one path for every substrate.
//! The arguments choose the subjects, engines and substrate; the matrix
//! plans (and says what it cannot cover) and runs; the report is written
//! even after Ctrl-C.

use super::progress::progress_listener;
use super::{
    bad, deployer_timeout, load_suite, parse_engines, print_failing_pages, provision_all,
    write_report,
};
use anyhow::Context;
use raftcert::engine::{EngineChoice, EngineKind, EngineRef};
use raftcert::matrix::{self, PlanRequest};
use raftcert::report::{self, RunStatus, bundle};
use raftcert::scenario::model::Suite;
use raftcert::subject::SubjectChoice;
use raftcert::subject::deployer::strategies;
use raftcert::substrate::SubstrateChoice;
use raftcert::substrate::kube::KubeTarget;
use raftcert::substrate::kube::profile::Profile;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Strategies to run (repeatable); default: every correct built-in one.
    #[arg(long = "strategy", value_name = "NAME")]
    strategies: Vec<String>,
    /// An external deployer command speaking protocol v1 (repeatable), e.g.
    /// 'python3 fixtures/deployers/example.py'.
    #[arg(long = "deployer", value_name = "COMMAND")]
    deployers: Vec<String>,
    /// How long an external deployer may take to answer one request.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    deployer_timeout: String,
    /// Suite file; default: the built-in conformance suite.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Engines (repeatable), e.g. etcd or etcd@3.5.1; default: every default etcd version.
    #[arg(long = "engine", value_name = "ENGINE")]
    engines: Vec<String>,
    /// Only scenarios whose largest cluster has this many members.
    #[arg(long)]
    replicas: Option<u32>,
    /// Where members run: local processes, containers on a Docker network
    /// (needs a Docker engine: DOCKER_HOST or the default socket), or the
    /// pods of an operator profile's deployment on Kubernetes.
    #[arg(long, value_enum, default_value = "process")]
    backend: BackendArg,
    /// With --backend kube: the operator profile directory
    /// (fixtures/operators/<name>).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// With --backend kube: the cluster's kubeconfig; default: KUBECONFIG
    /// or ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// With --backend docker: run this image instead of the one raftcert
    /// builds from the provisioned engine. Its engine binary must be at
    /// /usr/local/bin/etcd, as in the official etcd images.
    #[arg(long, requires = "backend")]
    image: Option<String>,
    /// Only these scenarios (repeatable).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Run with TLS on for client and peer traffic.
    #[arg(long, conflicts_with = "no_tls_pass")]
    tls: bool,
    /// Skip the extra TLS pass of the default run.
    #[arg(long)]
    no_tls_pass: bool,
    /// Report directory; default: raftcert-out/<run-id>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs at a time; default 16 on processes, 6 on docker (container
    /// starts slow down sharply beyond that on 2 cores), and on Kubernetes
    /// one per allocatable CPU of the nodes plus one (at most 8). A run
    /// that crashes an operator every run shares always runs alone.
    #[arg(long)]
    jobs: Option<usize>,
    /// Seed for every random choice.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Process,
    Docker,
    /// Pods of a real deployment on a Kubernetes cluster (needs --profile).
    Kube,
}

/// What one suite run produced, and what it ran.
pub(crate) struct SuiteRun {
    pub(crate) report: report::SuiteReport,
    pub(crate) out: PathBuf,
    suite_name: String,
    suite_text: String,
    subjects: Vec<SubjectChoice>,
    engines: Vec<EngineChoice>,
    substrate: SubstrateChoice,
    seed: u64,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let done = run_suite(&args, |run_id| PathBuf::from("raftcert-out").join(run_id)).await?;
    write_report(&done.out, &done.report)?;
    println!("{}", report::render_table(&done.report));
    print_failing_pages(&done.out, &done.report);
    println!("report: {}", done.out.display());
    Ok(exit_for(&done.report))
}

pub async fn certify(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.strategies.is_empty() && args.deployers.is_empty() && args.profile.is_none() {
        return Err(bad(
            "certify needs its subject: --deployer '<command>', --strategy <name> or --backend kube --profile <dir>",
        ));
    }
    let mut done = run_suite(&args, |run_id| {
        PathBuf::from("raftcert-certification").join(format!("certification-{run_id}"))
    })
    .await?;
    done.report.certificate = Some(bundle::certificate(bundle::CertifiedRun {
        subjects: &done.subjects,
        engines: &done.engines,
        substrate: &done.substrate,
        suite: &done.suite_name,
        suite_text: &done.suite_text,
        seed: done.seed,
        not_covered: &done.report.not_covered,
    })?);
    write_report(&done.out, &done.report)?;
    let sealed = bundle::seal(&done.out)?;
    let tarball = bundle::tarball_beside(&done.out);
    bundle::pack(&done.out, &tarball)?;
    println!("{}", report::render_table(&done.report));
    print_failing_pages(&done.out, &done.report);
    println!(
        "certification bundle: {} ({sealed} files sealed by {}), packed as {}",
        done.out.display(),
        bundle::CHECKSUMS_FILE,
        tarball.display()
    );
    println!("re-check offline: raftcert check {}", tarball.display());
    Ok(exit_for(&done.report))
}

fn exit_for(report: &report::SuiteReport) -> ExitCode {
    if report.runs.iter().all(|r| r.status == RunStatus::Pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The subjects a local run asks for: strategies by name, deployer
/// commands, or every correct built-in strategy.
fn local_subjects(
    args: &RunArgs,
    engines: &[(EngineKind, String)],
) -> anyhow::Result<Vec<SubjectChoice>> {
    let timeout = deployer_timeout(&args.deployer_timeout)?;
    let wanted_engine = |s: &strategies::StrategyInfo| engines.iter().any(|(k, _)| s.deploys(*k));
    let mut subjects: Vec<SubjectChoice> =
        if args.strategies.is_empty() && args.deployers.is_empty() {
            strategies::registry()
                .iter()
                .filter(|s| s.correct && wanted_engine(s))
                .map(SubjectChoice::Builtin)
                .collect()
        } else {
            args.strategies
                .iter()
                .map(|name| {
                    strategies::find(name)
                        .map(SubjectChoice::Builtin)
                        .ok_or_else(|| {
                            let known: Vec<&str> =
                                strategies::registry().iter().map(|s| s.name).collect();
                            bad(format!(
                                "unknown strategy {name:?} (known: {})",
                                known.join(", ")
                            ))
                        })
                })
                .collect::<Result<_, _>>()?
        };
    for subject in &subjects {
        if let SubjectChoice::Builtin(info) = subject
            && !wanted_engine(info)
        {
            let fitting: Vec<&str> = strategies::registry()
                .iter()
                .filter(|s| s.correct && wanted_engine(s))
                .map(|s| s.name)
                .collect();
            let deploys: Vec<&str> = info.engines.iter().map(|k| k.as_str()).collect();
            return Err(bad(format!(
                "strategy {} deploys {}, and no such engine is chosen (strategies for the chosen engines: {})",
                info.name,
                deploys.join(", "),
                fitting.join(", ")
            )));
        }
    }
    for command in &args.deployers {
        if command.trim().is_empty() {
            return Err(bad("empty --deployer command"));
        }
        subjects.push(SubjectChoice::External {
            command: command.clone(),
            timeout,
        });
    }
    Ok(subjects)
}

/// Subjects, engines and the substrate a run asks for.
async fn choose(
    args: &RunArgs,
) -> anyhow::Result<(Vec<SubjectChoice>, Vec<EngineChoice>, SubstrateChoice)> {
    if args.backend != BackendArg::Kube && (args.profile.is_some() || args.kubeconfig.is_some()) {
        return Err(bad("--profile and --kubeconfig need --backend kube"));
    }
    if args.backend != BackendArg::Docker && args.image.is_some() {
        return Err(bad("--image needs --backend docker"));
    }
    match args.backend {
        BackendArg::Kube => {
            let Some(profile_path) = &args.profile else {
                return Err(bad(
                    "--backend kube needs --profile fixtures/operators/<name>",
                ));
            };
            if !args.strategies.is_empty() || !args.deployers.is_empty() || args.tls {
                return Err(bad(
                    "--backend kube certifies the profile's deployment: --strategy, --deployer and --tls do not apply",
                ));
            }
            let profile = Arc::new(Profile::load(profile_path).map_err(|e| bad(e.to_string()))?);
            profile.check_built().map_err(|e| bad(e.to_string()))?;
            let engine: EngineRef = profile.engine_ref().map_err(|e| bad(e.to_string()))?;
            let target = KubeTarget::connect(args.kubeconfig.as_deref(), profile.clone())
                .await
                .map_err(|e| bad(format!("the cluster does not answer: {e}")))?;
            // An image no node holds would fail every run the same way: it
            // is loaded now (kind) or named as missing before any run, and
            // before the install, whose shared operator runs one of them.
            let loaded = target
                .ensure_images()
                .await
                .map_err(|e| bad(e.to_string()))?;
            for image in loaded {
                eprintln!("loaded image {image} into the cluster's nodes");
            }
            if !profile.install.is_empty() {
                let applied = raftcert::substrate::kube::install(&target.client, &profile)
                    .await
                    .map_err(|e| anyhow::anyhow!("installing profile {}: {e}", profile.name))?;
                eprintln!(
                    "installed {} object(s) of profile {}",
                    applied.len(),
                    profile.name
                );
            }
            eprintln!("faults below the API: {}", target.node_faults());
            Ok((
                vec![SubjectChoice::Operator(profile)],
                vec![EngineChoice::InImage(engine)],
                SubstrateChoice::Kube(Arc::new(target)),
            ))
        }
        local => {
            let wanted = parse_engines(&args.engines)?;
            let subjects = local_subjects(args, &wanted)?;
            if args.tls
                && let Some((kind, version)) = wanted.iter().find(|(k, _)| *k == EngineKind::Pd)
            {
                return Err(bad(format!(
                    "{kind}@{version}: PD runs take no --tls yet (its certificate flags are not wired)"
                )));
            }
            if args.image.is_some()
                && let Some((kind, version)) = wanted.iter().find(|(k, _)| *k == EngineKind::Pd)
            {
                return Err(bad(format!(
                    "{kind}@{version}: PD runs in the images raftcert builds; --image does not apply"
                )));
            }
            let installs = provision_all(&wanted).await?;
            let substrate = match local {
                BackendArg::Docker => SubstrateChoice::Docker {
                    image: args.image.clone(),
                },
                _ => SubstrateChoice::Process,
            };
            if let SubstrateChoice::Docker { image } = &substrate {
                use raftcert::substrate::docker;
                let client = docker::connect().await.map_err(|e| bad(e.to_string()))?;
                // Build (or find) every image now: a missing one is bad
                // input, not an error in each run.
                for install in &installs {
                    docker::ensure_engine_image(&client, install, image.as_deref())
                        .await
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
            let engines = installs.into_iter().map(EngineChoice::Installed).collect();
            Ok((subjects, engines, substrate))
        }
    }
}

/// Every scenario named on the command line must exist in the suite.
fn check_scenario_names(suite: &Suite, wanted: &[String]) -> anyhow::Result<()> {
    match wanted
        .iter()
        .find(|w| !suite.scenarios.iter().any(|s| &s.name == *w))
    {
        Some(unknown) => Err(bad(format!(
            "unknown scenario {unknown:?} in suite {}",
            suite.suite
        ))),
        None => Ok(()),
    }
}

pub(crate) async fn run_suite(
    args: &RunArgs,
    default_out: impl FnOnce(&str) -> PathBuf,
) -> anyhow::Result<SuiteRun> {
    let (suite, suite_text) = load_suite(args.suite.as_deref())?;
    check_scenario_names(&suite, &args.scenarios)?;
    let (subjects, engines, substrate) = choose(args).await?;
    let scenarios: Vec<_> = suite
        .scenarios
        .iter()
        .filter(|s| args.replicas.is_none_or(|r| s.max_replicas() == r))
        .filter(|s| args.scenarios.is_empty() || args.scenarios.contains(&s.name))
        .cloned()
        .collect();
    // The default run also proves the suite with TLS on, for one strategy.
    let default_run = args.strategies.is_empty()
        && args.deployers.is_empty()
        && args.backend != BackendArg::Kube
        && !args.tls
        && !args.no_tls_pass;
    let tls_pass = default_run
        .then(|| subjects.iter().find(|s| s.name() == "static").cloned())
        .flatten();
    let with_tls_pass = tls_pass.is_some();
    let plan = matrix::plan(PlanRequest {
        suite: suite.clone(),
        scenarios: scenarios.clone(),
        subjects: subjects.clone(),
        engines: engines.clone(),
        substrate: substrate.clone(),
        tls: args.tls,
        tls_pass,
    });
    for gap in &plan.not_covered {
        eprintln!(
            "not covered: {} / {}: {}",
            gap.scenario, gap.subject, gap.reason
        );
    }
    if plan.entries.is_empty() {
        return Err(bad(
            "no scenario matches the filters and what the backend can do",
        ));
    }
    let jobs = match (args.jobs, &substrate) {
        (Some(jobs), _) => jobs,
        (None, SubstrateChoice::Process) => 16,
        (None, SubstrateChoice::Docker { .. }) => 6,
        // Each run has its own namespace; the nodes bound how many fit.
        (None, SubstrateChoice::Kube(target)) => target
            .parallel_runs()
            .await
            .map_err(|e| anyhow::anyhow!("reading the cluster's nodes: {e}"))?,
    };
    let run_id = matrix::new_run_id();
    let out = args.out.clone().unwrap_or_else(|| default_out(&run_id));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let seed = args.seed.unwrap_or_else(raftcert::util::unique_suffix);
    eprintln!(
        "raftcert: {} runs ({} scenarios x {} subjects x {} engines{}) on {}, {} at a time, seed {seed}, report in {}",
        plan.entries.len(),
        scenarios.len(),
        subjects.len(),
        engines.len(),
        if with_tls_pass {
            ", plus a TLS pass"
        } else {
            ""
        },
        substrate.name(),
        jobs,
        out.display()
    );
    let listener = progress_listener(plan.entries.len() as u64);
    let report = matrix::run_matrix(plan, &out, &run_id, seed, jobs, listener).await;
    Ok(SuiteRun {
        report,
        out,
        suite_name: suite.suite.clone(),
        suite_text,
        subjects,
        engines,
        substrate,
        seed,
    })
}
