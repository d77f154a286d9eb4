//! The `raftcert` command line.

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use raftcert::deployer::strategies;
use raftcert::engine::provision::{self, EngineInstall};
use raftcert::engine::{EngineKind, EngineRef};
use raftcert::invariants;
use raftcert::matrix::{self, Listener, MatrixEntry, MatrixEvent};
use raftcert::report::{self, RunStatus};
use raftcert::scenario::model::Suite;
use raftcert::scenario::runner::{BackendChoice, StrategyChoice};
use raftcert::trace::read_trace;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Parser)]
#[command(
    name = "raftcert",
    version,
    about = "Certify bootstrap and membership of Raft clusters against the real engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a suite (the built-in conformance suite by default).
    Run(RunArgs),
    /// Re-check a saved trace, a report directory or a certification
    /// bundle (directory or .tar.gz), offline.
    Check {
        /// A trace.jsonl, a report directory holding results.json, or a
        /// certification bundle.
        path: PathBuf,
    },
    /// Certify a deployer or strategy: run the suite and write a sealed,
    /// re-checkable bundle (directory and .tar.gz).
    Certify(RunArgs),
    /// Run every bad deployer of the bug gallery and print what caught it.
    Gallery(GalleryArgs),
    /// Show suites, strategies, engines and invariants.
    List,
    /// Remove what docker-backend runs left behind (a killed run, for
    /// example): containers, networks and volumes labelled raftcert.run.
    Gc {
        /// Only this run's leftovers (the raftcert.run label's value).
        #[arg(long)]
        run: Option<String>,
        /// Also remove the engine images raftcert built (rebuilt on demand).
        #[arg(long)]
        images: bool,
        /// Instead, delete the namespaces Kubernetes runs left behind
        /// (labelled app.kubernetes.io/managed-by=raftcert) on the cluster of
        /// this kubeconfig.
        #[arg(long, value_name = "KUBECONFIG", conflicts_with_all = ["run", "images"])]
        kube: Option<PathBuf>,
    },
    /// List engines, and provision the ones named.
    Engines {
        /// Engines to provision, e.g. etcd@3.5.1.
        #[arg(long = "provision", value_name = "ENGINE")]
        provision: Vec<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
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
    /// Where members run: local processes, or containers on a Docker
    /// network (needs a Docker engine: DOCKER_HOST or the default socket).
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
    /// starts slow down sharply beyond that on 2 cores).
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

#[derive(clap::Args)]
struct GalleryArgs {
    /// Directory of bad deployers with `# raftcert-gallery:` headers.
    #[arg(long, default_value = "fixtures/deployers/bugs")]
    dir: PathBuf,
    /// Directory of the suite files the headers name.
    #[arg(long, default_value = "suites")]
    suites: PathBuf,
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

/// Bad input: one line, exit code 2.
#[derive(Debug)]
struct BadInput(String);
impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BadInput {}

fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFTCERT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let dispatch = dispatch(cli);
        tokio::pin!(dispatch);
        tokio::select! {
            r = &mut dispatch => r,
            code = interrupted() => {
                // Runs of a matrix stop as errors, and the command still
                // writes its report of what finished; a second signal does
                // not wait for it.
                if raftcert::interrupt::heard() {
                    raftcert::interrupt::request();
                    eprintln!(
                        "interrupted: stopping the runs and writing the report (again to stop at once)"
                    );
                    tokio::select! {
                        r = &mut dispatch => {
                            if let Err(e) = r {
                                eprintln!("error: {e:#}");
                            }
                        }
                        _ = interrupted() => {}
                    }
                }
                for namespace in raftcert::kube::run::delete_live_namespaces().await {
                    eprintln!("deleted namespace {namespace}");
                }
                raftcert::backend::cleanup::cleanup_everything();
                eprintln!("interrupted: every member process stopped, temporary data removed");
                Ok(ExitCode::from(code))
            }
        }
    });
    // A run's tasks outlive `dispatch` until the runtime stops; stopped
    // first, none of them can start anything after the cleanup below.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    // Whatever happened, nothing we started may outlive us.
    raftcert::backend::cleanup::cleanup_everything();
    match outcome {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ctrl-C, or SIGTERM (a cancelled CI job, `timeout`); the exit code to
/// end with, 128 + the signal.
async fn interrupted() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => 130,
            _ = term.recv() => 143,
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            130
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => match Cli::try_parse_from(["raftcert", "run"]) {
            Ok(Cli {
                command: Some(Command::Run(args)),
            }) => run(args).await,
            _ => Err(anyhow!("default arguments do not parse")),
        },
        Some(Command::Run(args)) => run(args).await,
        Some(Command::Certify(args)) => certify(args).await,
        Some(Command::Check { path }) => check(&path),
        Some(Command::Gallery(args)) => gallery(args).await,
        Some(Command::List) => list(),
        Some(Command::Engines { provision }) => engines(provision).await,
        Some(Command::Gc {
            kube: Some(kubeconfig),
            ..
        }) => gc_kube(&kubeconfig).await,
        Some(Command::Gc { run, images, .. }) => gc(run, images).await,
    }
}

fn deployer_timeout(text: &str) -> anyhow::Result<std::time::Duration> {
    raftcert::util::parse_duration(text).ok_or_else(|| {
        bad(format!(
            "bad --deployer-timeout {text:?}: expected e.g. 500ms, 10s"
        ))
    })
}

fn parse_engines(specs: &[String]) -> anyhow::Result<Vec<(EngineKind, String)>> {
    let refs: Vec<EngineRef> = if specs.is_empty() {
        vec![EngineRef {
            kind: EngineKind::Etcd,
            version: None,
        }]
    } else {
        specs
            .iter()
            .map(|s| s.parse::<EngineRef>().map_err(|e| bad(e.to_string())))
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for r in refs {
        for v in provision::resolve_versions(&r) {
            if !out.contains(&(r.kind, v.clone())) {
                out.push((r.kind, v));
            }
        }
    }
    Ok(out)
}

async fn provision_all(wanted: &[(EngineKind, String)]) -> anyhow::Result<Vec<EngineInstall>> {
    let mut installs = Vec::new();
    for (kind, version) in wanted {
        if let Some(found) = provision::installed(*kind, version) {
            installs.push(found);
            continue;
        }
        eprintln!(
            "provisioning {kind}@{version} into {} ...",
            provision::cache_dir().display()
        );
        let install = provision::provision(*kind, version)
            .await
            .map_err(|e| bad(format!("missing engine binary {kind}@{version}: {e}")))?;
        eprintln!("  {kind}@{version} from {}", install.source);
        installs.push(install);
    }
    Ok(installs)
}

/// What one suite run produced, with what it ran on.
struct SuiteRun {
    report: report::SuiteReport,
    out: PathBuf,
    suite_name: String,
    suite_text: String,
    engines: Vec<EngineInstall>,
    strategies: Vec<StrategyChoice>,
    backend: BackendChoice,
    skipped: Vec<String>,
    seed: u64,
    /// Kubernetes runs: the profile, the server version, and how faults
    /// below the API reach the members (or why they cannot).
    kube: Option<(raftcert::kube::profile::Profile, String, String)>,
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let done = run_suite(&args, |run_id| PathBuf::from("raftcert-out").join(run_id)).await?;
    report::write_all(&done.out, &done.report).map_err(|e| anyhow!("writing the report: {e}"))?;
    println!("{}", report::render_table(&done.report));
    println!("report: {}", done.out.display());
    Ok(exit_for(&done.report))
}

fn exit_for(report: &report::SuiteReport) -> ExitCode {
    if report.runs.iter().all(|r| r.status == RunStatus::Pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn certify(args: RunArgs) -> anyhow::Result<ExitCode> {
    use raftcert::report::bundle;
    if args.strategies.is_empty() && args.deployers.is_empty() && args.profile.is_none() {
        return Err(bad(
            "certify needs its subject: --deployer '<command>', --strategy <name> or --backend kube --profile <dir>",
        ));
    }
    let mut done = run_suite(&args, |run_id| {
        PathBuf::from("raftcert-certification").join(format!("certification-{run_id}"))
    })
    .await?;
    let mut subjects = Vec::new();
    for strategy in &done.strategies {
        subjects.push(match strategy {
            StrategyChoice::External { command, .. } => bundle::Subject {
                kind: bundle::SubjectKind::Deployer,
                name: strategy.name(),
                version: None,
                command: Some(command.clone()),
                artifacts: command_files(command)?,
            },
            _ => bundle::Subject {
                kind: bundle::SubjectKind::Strategy,
                name: strategy.name(),
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
                command: None,
                artifacts: Vec::new(),
            },
        });
    }
    let mut engines = Vec::new();
    for engine in &done.engines {
        engines.push(bundle::EngineBuild {
            engine: engine.kind.as_str().to_string(),
            version: engine.version.clone(),
            source: engine.source.clone(),
            server: bundle::Artifact {
                name: engine.server.display().to_string(),
                digest: bundle::digest_of_file(&engine.server)?,
            },
        });
    }
    let mut kubernetes = None;
    let mut node_faults = None;
    let mut backend_name = done.backend.name().to_string();
    if let Some((profile, server, nodes)) = &done.kube {
        backend_name = "kube".to_string();
        kubernetes = Some(server.clone());
        node_faults = Some(nodes.clone());
        let mut artifacts = Vec::new();
        for (manifest, path) in profile
            .install
            .iter()
            .chain([&profile.deployment])
            .zip(profile.manifest_paths())
        {
            artifacts.push(bundle::Artifact {
                name: manifest.clone(),
                digest: bundle::digest_of_file(&path)?,
            });
        }
        for image in &profile.images {
            artifacts.push(bundle::Artifact {
                name: image.clone(),
                digest: local_image_digest(image).unwrap_or_else(|| "unknown".to_string()),
            });
        }
        subjects.push(bundle::Subject {
            kind: bundle::SubjectKind::Operator,
            name: profile.subject.name.clone(),
            version: Some(profile.subject.version.clone()),
            command: None,
            artifacts,
        });
    }
    let not_covered = if done.skipped.is_empty() {
        Vec::new()
    } else if done.kube.is_some() {
        vec![format!(
            "not driven on Kubernetes by this profile or backend: {}",
            done.skipped.join("; ")
        )]
    } else {
        vec![format!(
            "the {} backend cannot cut the network; not run: {}",
            done.backend.name(),
            done.skipped.join(", ")
        )]
    };
    done.report.certificate = Some(bundle::Certificate {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        harness_commit: bundle::harness_commit(),
        subjects,
        environment: bundle::Environment {
            backend: backend_name,
            engines,
            kubernetes,
            node_faults,
            host: bundle::host_platform(),
        },
        suite: done.suite_name.clone(),
        suite_digest: bundle::digest_of(done.suite_text.as_bytes()),
        seed: done.seed,
        not_covered,
    });
    report::write_all(&done.out, &done.report).map_err(|e| anyhow!("writing the report: {e}"))?;
    let sealed = bundle::seal(&done.out)?;
    let tarball = done.out.with_extension("tar.gz");
    bundle::pack(&done.out, &tarball)?;
    println!("{}", report::render_table(&done.report));
    println!(
        "certification bundle: {} ({sealed} files sealed by {}), packed as {}",
        done.out.display(),
        bundle::CHECKSUMS_FILE,
        tarball.display()
    );
    println!("re-check offline: raftcert check {}", tarball.display());
    Ok(exit_for(&done.report))
}

/// The image ID docker holds for `image`, when a local engine answers.
fn local_image_digest(image: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|id| !id.is_empty())
}

/// Digests of the files a deployer command names (its script, for
/// example), so the certificate pins what ran.
fn command_files(command: &str) -> anyhow::Result<Vec<raftcert::report::bundle::Artifact>> {
    let mut artifacts = Vec::new();
    for word in command.split_whitespace() {
        let path = Path::new(word);
        if path.is_file() {
            artifacts.push(raftcert::report::bundle::Artifact {
                name: word.to_string(),
                digest: raftcert::report::bundle::digest_of_file(path)?,
            });
        }
    }
    Ok(artifacts)
}

async fn run_suite(
    args: &RunArgs,
    default_out: impl FnOnce(&str) -> PathBuf,
) -> anyhow::Result<SuiteRun> {
    if args.backend == BackendArg::Kube {
        return run_suite_kube(args, default_out).await;
    }
    if args.profile.is_some() || args.kubeconfig.is_some() {
        return Err(bad("--profile and --kubeconfig need --backend kube"));
    }
    let (suite, suite_text) = load_suite(args)?;
    let deployer_timeout = deployer_timeout(&args.deployer_timeout)?;
    let mut strategies: Vec<StrategyChoice> =
        if args.strategies.is_empty() && !args.deployers.is_empty() {
            Vec::new()
        } else if args.strategies.is_empty() {
            strategies::registry()
                .iter()
                .filter(|s| s.correct)
                .map(StrategyChoice::Builtin)
                .collect()
        } else {
            args.strategies
                .iter()
                .map(|name| {
                    strategies::find(name)
                        .map(StrategyChoice::Builtin)
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
    for command in &args.deployers {
        if command.trim().is_empty() {
            return Err(bad("empty --deployer command"));
        }
        strategies.push(StrategyChoice::External {
            command: command.clone(),
            timeout: deployer_timeout,
        });
    }
    let backend = match args.backend {
        BackendArg::Process if args.image.is_some() => {
            return Err(bad("--image needs --backend docker"));
        }
        BackendArg::Process => BackendChoice::Process,
        BackendArg::Docker => BackendChoice::Docker {
            image: args.image.clone(),
        },
        BackendArg::Kube => return Err(bad("--backend kube runs through its own path")),
    };
    let engines = provision_all(&parse_engines(&args.engines)?).await?;
    if let BackendChoice::Docker { image } = &backend {
        use raftcert::backend::docker;
        let client = docker::connect().await.map_err(|e| bad(e.to_string()))?;
        // Build (or find) every image now: a missing one is bad input, not
        // an error in each run.
        for engine in &engines {
            docker::ensure_engine_image(&client, engine, image.as_deref())
                .await
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    let mut scenarios: Vec<_> = suite
        .scenarios
        .iter()
        .filter(|s| args.replicas.is_none_or(|r| s.max_replicas() == r))
        .filter(|s| args.scenarios.is_empty() || args.scenarios.contains(&s.name))
        .cloned()
        .collect();
    check_scenario_names(&suite, &args.scenarios)?;
    let runnable = |s: &raftcert::scenario::model::Scenario| {
        !s.needs_partitions() || matches!(backend, BackendChoice::Docker { .. })
    };
    let skipped: Vec<String> = scenarios
        .iter()
        .filter(|s| !runnable(s))
        .map(|s| s.name.clone())
        .collect();
    if !skipped.is_empty() {
        eprintln!(
            "skipping {} scenario(s) that cut the network, which the {} backend cannot do: {} (use --backend docker)",
            skipped.len(),
            backend.name(),
            skipped.join(", ")
        );
        scenarios.retain(|s| runnable(s));
    }
    if scenarios.is_empty() {
        return Err(bad("no scenario matches the filters"));
    }
    scenarios.sort_by_key(|s| std::cmp::Reverse(s.max_replicas()));
    let mut entries = Vec::new();
    for engine in &engines {
        for strategy in &strategies {
            for scenario in &scenarios {
                entries.push(MatrixEntry {
                    suite: suite.clone(),
                    scenario: scenario.clone(),
                    strategy: strategy.clone(),
                    engine: engine.clone(),
                    backend: backend.clone(),
                    tls: args.tls,
                });
            }
        }
    }
    // The default run also proves the suite with TLS on, for one strategy.
    let default_run =
        args.strategies.is_empty() && args.deployers.is_empty() && !args.tls && !args.no_tls_pass;
    if default_run
        && let (Some(engine), Some(strategy)) = (
            engines.first(),
            strategies.iter().find(|s| s.name() == "static"),
        )
    {
        for scenario in &scenarios {
            entries.push(MatrixEntry {
                suite: suite.clone(),
                scenario: scenario.clone(),
                strategy: strategy.clone(),
                engine: engine.clone(),
                backend: backend.clone(),
                tls: true,
            });
        }
    }
    let jobs = args.jobs.unwrap_or(match backend {
        BackendChoice::Process => 16,
        BackendChoice::Docker { .. } => 6,
    });
    let run_id = matrix::new_run_id();
    let out = args.out.clone().unwrap_or_else(|| default_out(&run_id));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let seed = args.seed.unwrap_or_else(raftcert::util::unique_suffix);
    eprintln!(
        "raftcert: {} runs ({} scenarios x {} strategies x {} engines{}), {} at a time, seed {seed}, report in {}",
        entries.len(),
        scenarios.len(),
        strategies.len(),
        engines.len(),
        if default_run { ", plus a TLS pass" } else { "" },
        jobs,
        out.display()
    );
    let listener = progress_listener(entries.len() as u64);
    let report = matrix::run_matrix(entries, &out, &run_id, seed, jobs, listener).await;
    Ok(SuiteRun {
        report,
        out,
        suite_name: suite.suite.clone(),
        suite_text,
        engines,
        strategies,
        backend,
        skipped,
        seed,
        kube: None,
    })
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

/// The suite a run asks for, and its text (for the certificate's digest).
fn load_suite(args: &RunArgs) -> anyhow::Result<(Arc<Suite>, String)> {
    Ok(match &args.suite {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            let suite =
                Suite::parse(&text, &path.display().to_string()).map_err(|e| bad(e.to_string()))?;
            (Arc::new(suite), text)
        }
        None => (
            Arc::new(Suite::builtin().map_err(|e| bad(e.to_string()))?),
            raftcert::scenario::model::BUILTIN_SUITE.to_string(),
        ),
    })
}

/// `--backend kube`: every runnable scenario of the suite against the
/// profile's deployment, one namespace per run, one run at a time.
async fn run_suite_kube(
    args: &RunArgs,
    default_out: impl FnOnce(&str) -> PathBuf,
) -> anyhow::Result<SuiteRun> {
    use raftcert::kube::{self, profile::Profile, run as kube_run};
    let Some(profile_path) = &args.profile else {
        return Err(bad(
            "--backend kube needs --profile fixtures/operators/<name>",
        ));
    };
    if !args.strategies.is_empty() || !args.deployers.is_empty() || args.tls || args.image.is_some()
    {
        return Err(bad(
            "--backend kube certifies the profile's deployment: --strategy, --deployer, --tls and --image do not apply",
        ));
    }
    let profile = Arc::new(Profile::load(profile_path).map_err(|e| bad(e.to_string()))?);
    let (suite, suite_text) = load_suite(args)?;
    check_scenario_names(&suite, &args.scenarios)?;
    let client = kube::connect(args.kubeconfig.as_deref())
        .await
        .map_err(|e| bad(e.to_string()))?;
    let server = kube::server_version(&client)
        .await
        .map_err(|e| bad(format!("the cluster does not answer: {e}")))?;
    if !profile.install.is_empty() {
        let applied = kube_run::install(&client, &profile)
            .await
            .map_err(|e| anyhow!("installing profile {}: {e}", profile.name))?;
        eprintln!(
            "installed {} object(s) of profile {}",
            applied.len(),
            profile.name
        );
    }
    let nodes = kube::nodes::NodeAccess::probe(&client).await;
    let node_faults = match &nodes {
        Ok(access) => format!(
            "through the nodes of kind cluster {}: blackhole routes in the member pod's network namespace, SIGSTOP/SIGCONT to its container's processes",
            access.cluster
        ),
        Err(why) => format!("not available: {why}"),
    };
    let mut skipped = Vec::new();
    let mut scenarios = Vec::new();
    for scenario in suite
        .scenarios
        .iter()
        .filter(|s| args.replicas.is_none_or(|r| s.max_replicas() == r))
        .filter(|s| args.scenarios.is_empty() || args.scenarios.contains(&s.name))
    {
        match kube_run::unsupported_step(&profile, scenario, &nodes) {
            Some(reason) => skipped.push(format!("{} ({reason})", scenario.name)),
            None => scenarios.push(scenario.clone()),
        }
    }
    eprintln!("faults below the API: {node_faults}");
    if !skipped.is_empty() {
        eprintln!(
            "skipping {} scenario(s) on Kubernetes: {}",
            skipped.len(),
            skipped.join("; ")
        );
    }
    if scenarios.is_empty() {
        return Err(bad("no scenario matches the filters and the profile"));
    }
    let run_id = matrix::new_run_id();
    let out = args.out.clone().unwrap_or_else(|| default_out(&run_id));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let seed = args.seed.unwrap_or_else(raftcert::util::unique_suffix);
    eprintln!(
        "raftcert: {} scenarios against profile {} on Kubernetes {server}, one at a time, seed {seed}, report in {}",
        scenarios.len(),
        profile.name,
        out.display()
    );
    let started = std::time::Instant::now();
    let started_at = raftcert::util::utc_timestamp();
    let bar = ProgressBar::new(scenarios.len() as u64);
    let mut runs = Vec::new();
    for (index, scenario) in scenarios.into_iter().enumerate() {
        let rel_dir = format!("runs/{}-{}", scenario.name, profile.name);
        bar.set_message(scenario.name.clone());
        let result = kube_run::run_scenario(
            &client,
            kube_run::KubeRunSpec {
                profile: profile.clone(),
                suite: suite.clone(),
                scenario,
                run_id: format!("{run_id}-{index:03}"),
                seed: raftcert::util::splitmix64(seed ^ index as u64),
                dir: out.join(&rel_dir),
                rel_dir,
                nodes: nodes.clone().ok(),
            },
        )
        .await;
        let headline = result
            .headline()
            .map(|h| format!(": {h}"))
            .unwrap_or_default();
        let line = format!(
            "{} / {}: {} in {:.1}s{headline}",
            result.scenario,
            result.strategy,
            result.status_word(),
            result.duration_ms as f64 / 1000.0,
        );
        // A hidden bar (no terminal) prints nothing, so lines go to stderr.
        if std::io::stderr().is_terminal() {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
        bar.inc(1);
        runs.push(result);
    }
    bar.finish_and_clear();
    let report = report::SuiteReport {
        format: report::REPORT_FORMAT,
        run_id: run_id.clone(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        runs,
        certificate: None,
    };
    Ok(SuiteRun {
        report,
        out,
        suite_name: suite.suite.clone(),
        suite_text,
        engines: Vec::new(),
        strategies: Vec::new(),
        backend: BackendChoice::Process,
        skipped,
        seed,
        kube: Some(((*profile).clone(), server, node_faults)),
    })
}

/// Live progress: bars on a terminal, one line per finished run elsewhere.
fn progress_listener(total: u64) -> Listener {
    let terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if !terminal {
        overall.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let active: Arc<Mutex<BTreeMap<String, ProgressBar>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0u64));
    Arc::new(move |event| match event {
        MatrixEvent::Started { label } => {
            if terminal {
                let bar = multi.insert_before(&overall, ProgressBar::new_spinner());
                bar.set_message(label.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                active
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(label.to_string(), bar);
            }
        }
        MatrixEvent::Step { label, step } => {
            if let Some(bar) = active.lock().unwrap_or_else(|p| p.into_inner()).get(label) {
                bar.set_message(format!("{label}: {step}"));
            }
        }
        MatrixEvent::Finished { label, result } => {
            if let Some(bar) = active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(label)
            {
                bar.finish_and_clear();
            }
            let verdict = match result.status {
                RunStatus::Pass => "pass".to_string(),
                RunStatus::Fail => {
                    *failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    let ids: Vec<&str> = result
                        .verdicts
                        .iter()
                        .filter(|v| !v.passed())
                        .map(|v| v.invariant.as_str())
                        .collect();
                    format!("FAIL {}", ids.join(","))
                }
                RunStatus::Error => {
                    *failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    format!("ERROR {}", result.error.as_deref().unwrap_or(""))
                }
            };
            let line = format!(
                "{label}: {verdict} ({:.1}s)",
                result.duration_ms as f64 / 1000.0
            );
            if terminal {
                let _ = multi.println(line);
            } else {
                eprintln!("{line}");
            }
            overall.inc(1);
            let failed = *failures.lock().unwrap_or_else(|p| p.into_inner());
            overall.set_message(if failed > 0 {
                format!("({failed} not passing)")
            } else {
                String::new()
            });
        }
    })
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    use raftcert::report::bundle;
    if bundle::is_tarball(path) {
        let scratch = ScratchDir::new()?;
        let root = bundle::unpack(path, scratch.path()).map_err(|e| bad(e.to_string()))?;
        return check_bundle(&root);
    }
    if path.is_dir() && bundle::is_sealed(path) {
        return check_bundle(path);
    }
    if path.is_dir() {
        return check_report_dir(path);
    }
    let trace = read_trace(path).map_err(|e| bad(e.to_string()))?;
    let verdicts = invariants::check_all(&trace);
    let mut failed = false;
    for verdict in &verdicts {
        if verdict.passed() {
            println!("{:<3} pass  {}", verdict.invariant, verdict.title);
        } else {
            failed = true;
            println!("{:<3} FAIL  {}", verdict.invariant, verdict.title);
            for violation in &verdict.violations {
                println!("      {}", violation.message);
                for event in &violation.evidence {
                    println!("        {}", report::event_summary(event));
                }
            }
        }
    }
    // Verdicts on a run cut short cover only what was recorded.
    let ending = trace.events.iter().rev().find_map(|e| match &e.kind {
        raftcert::trace::EventKind::RunFinished { error } => Some(error.clone()),
        _ => None,
    });
    match ending {
        None => {
            failed = true;
            println!(
                "INCOMPLETE: the trace ends before its run did (no run-finished event): \
                 the run was interrupted or killed, and the verdicts cover only what was recorded"
            );
        }
        Some(Some(error)) => {
            failed = true;
            println!("ERROR: the run ended with an error: {error}");
        }
        Some(None) => {}
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

/// A temporary directory removed on drop.
struct ScratchDir(PathBuf);
impl ScratchDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "raftcert-check-{}-{}",
            std::process::id(),
            raftcert::util::unique_suffix()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir(path))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lifecycle lines `check` prints for a failing trace.
const STORY_LINES: usize = 40;

/// Re-checks every trace of a report directory and compares the verdicts
/// with the recorded ones: a difference is a defect of the harness.
fn check_report_dir(dir: &Path) -> anyhow::Result<ExitCode> {
    let results =
        report::load_results(&dir.join("results.json")).map_err(|e| bad(e.to_string()))?;
    let mut mismatches = 0;
    let mut failed = 0;
    for run in &results.runs {
        let trace = match read_trace(&dir.join(&run.trace)) {
            Ok(t) => t,
            Err(e) => {
                println!(
                    "{} / {}: cannot read trace: {e}",
                    run.scenario, run.strategy
                );
                mismatches += 1;
                continue;
            }
        };
        let verdicts = invariants::check_all(&trace);
        let now: Vec<(String, bool)> = verdicts
            .iter()
            .map(|v| (v.invariant.clone(), v.passed()))
            .collect();
        let then: Vec<(String, bool)> = run
            .verdicts
            .iter()
            .map(|v| (v.invariant.clone(), v.passed()))
            .collect();
        let violated: Vec<&str> = verdicts
            .iter()
            .filter(|v| !v.passed())
            .map(|v| v.invariant.as_str())
            .collect();
        if !violated.is_empty() || run.status != RunStatus::Pass {
            failed += 1;
        }
        // Invariants added after the recording are checked, not compared.
        let recorded: BTreeMap<&str, bool> = then.iter().map(|(i, p)| (i.as_str(), *p)).collect();
        let same = now
            .iter()
            .filter_map(|(id, passed)| recorded.get(id.as_str()).map(|was| was == passed))
            .all(|equal| equal)
            && then.iter().all(|(id, _)| now.iter().any(|(n, _)| n == id));
        let unrecorded: Vec<&str> = now
            .iter()
            .filter(|(id, _)| !recorded.contains_key(id.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        if !same {
            mismatches += 1;
        }
        println!(
            "{:<40} {:<22} {:<8} {:<6} {}",
            run.scenario,
            run.strategy,
            run.engine_version,
            if violated.is_empty() {
                "pass".to_string()
            } else {
                violated.join(",")
            },
            match (same, unrecorded.is_empty()) {
                (false, _) => "DIFFERS from results.json".to_string(),
                (true, true) => "reproduced".to_string(),
                (true, false) => format!("reproduced (+{} not recorded)", unrecorded.join(",")),
            }
        );
    }
    println!(
        "{} runs re-checked: {} not passing, {} differing from the recorded verdicts",
        results.runs.len(),
        failed,
        mismatches
    );
    Ok(if failed > 0 || mismatches > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn list() -> anyhow::Result<ExitCode> {
    println!("Suites:");
    let suite = Suite::builtin().map_err(|e| bad(e.to_string()))?;
    println!(
        "  {} (built in, {}): {} scenarios",
        suite.suite,
        raftcert::scenario::model::BUILTIN_SUITE_PATH,
        suite.scenarios.len()
    );
    for s in &suite.scenarios {
        println!(
            "    {:<34} up to {} members, {} steps",
            s.name,
            s.max_replicas(),
            s.steps.len()
        );
    }
    println!("Strategies:");
    for s in strategies::registry() {
        println!("  {:<32} {}", s.name, s.summary);
    }
    println!("Engines:");
    for v in provision::DEFAULT_ETCD_VERSIONS {
        let state = match provision::installed(EngineKind::Etcd, v) {
            Some(i) => format!("installed ({})", i.source),
            None => "not provisioned yet (provisioned on first use)".to_string(),
        };
        println!("  etcd@{v:<10} {state}");
    }
    list_profiles(Path::new("fixtures/operators"));
    println!("Invariants:");
    for inv in invariants::registry() {
        println!("  {:<3} {:<28} {}", inv.id, inv.title, inv.description);
    }
    Ok(ExitCode::SUCCESS)
}

/// The operator profiles under `dir`, for `--backend kube --profile`.
fn list_profiles(dir: &Path) {
    use raftcert::kube::profile::{PROFILE_FILE, Profile};
    println!("Operator profiles ({}, for --backend kube):", dir.display());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(PROFILE_FILE).is_file())
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    if paths.is_empty() {
        println!("  none here (run from the repository root)");
    }
    for path in paths {
        match Profile::load(&path) {
            Ok(profile) => {
                let faults: Vec<&str> = profile.faults.iter().map(|f| f.name()).collect();
                println!(
                    "  {:<40} {} {}, {}; faults: {}",
                    path.display(),
                    profile.subject.name,
                    profile.subject.version,
                    profile.engine,
                    faults.join(" ")
                );
            }
            Err(e) => println!("  {:<40} does not load: {e}", path.display()),
        }
    }
}

async fn engines(to_provision: Vec<String>) -> anyhow::Result<ExitCode> {
    if !to_provision.is_empty() {
        let wanted = parse_engines(&to_provision)?;
        provision_all(&wanted).await?;
    }
    println!("cache: {}", provision::cache_dir().display());
    let installed = provision::list(EngineKind::Etcd);
    for v in provision::DEFAULT_ETCD_VERSIONS {
        if !installed.iter().any(|i| i.version == *v) {
            let sources: Vec<String> = provision::known_sources(EngineKind::Etcd, v)
                .iter()
                .map(|s| s.describe(v))
                .collect();
            println!("etcd@{v:<10} available   from {}", sources.join(" or "));
        }
    }
    for i in installed {
        println!(
            "etcd@{:<10} installed   {} ({})",
            i.version,
            i.server.display(),
            i.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Correct external deployers shipped with raftcert.
fn example_deployers() -> Vec<String> {
    let mut found = Vec::new();
    for (file, interpreter) in [("example.py", "python3"), ("example.sh", "sh")] {
        let path = Path::new("fixtures/deployers").join(file);
        if path.is_file() {
            found.push(format!("{interpreter} {}", path.display()));
        }
    }
    found
}

async fn gallery(args: GalleryArgs) -> anyhow::Result<ExitCode> {
    let timeout = deployer_timeout(&args.deployer_timeout)?;
    let entries = raftcert::gallery::discover(&args.dir).map_err(|e| bad(e.to_string()))?;
    let engines = provision_all(&parse_engines(std::slice::from_ref(&args.engine))?).await?;
    let Some(engine) = engines.first().cloned() else {
        return Err(bad("no engine"));
    };
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
            strategy: StrategyChoice::External {
                command: entry.command.clone(),
                timeout,
            },
            engine: engine.clone(),
            backend: BackendChoice::Process,
            tls: false,
        });
    }
    let gallery_runs = matrix_entries.len();
    // The false-alarm pass: correct deployers over the conformance suite.
    let conformance = Arc::new(Suite::builtin().map_err(|e| bad(e.to_string()))?);
    let mut correct: Vec<StrategyChoice> = strategies::registry()
        .iter()
        .filter(|s| s.correct)
        .map(StrategyChoice::Builtin)
        .collect();
    for command in example_deployers() {
        correct.push(StrategyChoice::External { command, timeout });
    }
    for _ in 0..args.false_alarm_runs {
        for strategy in &correct {
            // The gallery runs on processes, which cannot cut the network.
            for scenario in conformance
                .scenarios
                .iter()
                .filter(|s| !s.needs_partitions())
            {
                matrix_entries.push(MatrixEntry {
                    suite: conformance.clone(),
                    scenario: scenario.clone(),
                    strategy: strategy.clone(),
                    engine: engine.clone(),
                    backend: BackendChoice::Process,
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
                conformance
                    .scenarios
                    .iter()
                    .filter(|s| !s.needs_partitions())
                    .count(),
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
    let report = matrix::run_matrix(matrix_entries, &out, &run_id, seed, args.jobs, listener).await;
    report::write_all(&out, &report).map_err(|e| anyhow!("writing the report: {e}"))?;
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
        if runs.is_empty() {
            continue;
        }
        let bad_runs: Vec<&&raftcert::report::RunResult> = runs
            .iter()
            .filter(|r| r.status != RunStatus::Pass)
            .collect();
        let examples = bad_runs
            .iter()
            .take(3)
            .map(|r| {
                format!(
                    "{} ({}): {}",
                    r.scenario,
                    r.trace,
                    r.headline().unwrap_or_default()
                )
            })
            .collect();
        false_alarms.rows.push((
            name,
            engine.version.clone(),
            runs.len() as u32,
            bad_runs.len() as u32,
            examples,
        ));
    }
    let table = raftcert::gallery::render_table(&detections);
    println!("{table}");
    let markdown = raftcert::gallery::render_markdown(&detections, &false_alarms, &run_id);
    std::fs::write(out.join("detection.md"), &markdown).context("writing detection.md")?;
    if let Some(doc) = &args.doc {
        std::fs::write(doc, &markdown).with_context(|| format!("writing {}", doc.display()))?;
    }
    for (strategy, version, runs, bad_count, _) in &false_alarms.rows {
        println!("false alarms: {strategy} @ {version}: {bad_count} of {runs} runs not passing");
    }
    println!("report: {}", out.display());
    let all_caught = detections.iter().all(|d| d.caught());
    let no_false_alarm = false_alarms.rows.iter().all(|r| r.3 == 0);
    Ok(if all_caught && no_false_alarm {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn gc_kube(kubeconfig: &Path) -> anyhow::Result<ExitCode> {
    let client = raftcert::kube::connect(Some(kubeconfig))
        .await
        .map_err(|e| bad(e.to_string()))?;
    let deleted = raftcert::kube::run::delete_leftover_namespaces(&client)
        .await
        .context("deleting leftover namespaces")?;
    if deleted.is_empty() {
        println!("nothing to remove");
    }
    for namespace in deleted {
        println!("deleted namespace {namespace}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn gc(run: Option<String>, images: bool) -> anyhow::Result<ExitCode> {
    use raftcert::backend::docker;
    let client = docker::connect().await.map_err(|e| bad(e.to_string()))?;
    let report = docker::gc(&client, run.as_deref(), images)
        .await
        .context("removing leftovers")?;
    if report.is_empty() {
        println!("nothing to remove");
    }
    for (what, names) in [
        ("container", &report.containers),
        ("network", &report.networks),
        ("volume", &report.volumes),
        ("image", &report.images),
    ] {
        for name in names {
            println!("removed {what} {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
