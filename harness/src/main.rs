//! The `raftcert` command line: arguments, the runtime, signals and exit
//! codes. The commands themselves live in `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    Run(cli::run::RunArgs),
    /// Re-check a saved trace, a report directory or a certification
    /// bundle (directory or .tar.gz), offline.
    Check {
        /// A trace.jsonl, a report directory holding results.json, or a
        /// certification bundle.
        path: PathBuf,
        /// Also render what was checked as a page: the matrix and a
        /// timeline per run, with the violations' evidence marked.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Certify a deployer, strategy or operator: run the suite and write a
    /// sealed, re-checkable bundle (directory and .tar.gz).
    Certify(cli::run::RunArgs),
    /// Run every bad deployer of the bug gallery and print what caught it.
    Gallery(cli::gallery::GalleryArgs),
    /// Compare strategies in a designed experiment (sizes, faults,
    /// repetitions): study.md, study.json and SVG plots.
    Study(cli::study::StudyArgs),
    /// Show suites, faults, strategies, engines, profiles and invariants.
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
                                cli::report_error(&e);
                            }
                        }
                        _ = interrupted() => {}
                    }
                }
                raftcert::sys::reaper::cleanup_everything();
                eprintln!("interrupted: every member stopped, temporary data and namespaces removed");
                Ok(ExitCode::from(code))
            }
        }
    });
    // A run's tasks outlive `dispatch` until the runtime stops; stopped
    // first, none of them can start anything after the cleanup below.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    // Whatever happened, nothing we started may outlive us.
    raftcert::sys::reaper::cleanup_everything();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            cli::report_error(&e);
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
            }) => cli::run::run(args).await,
            _ => Err(anyhow::anyhow!("default arguments do not parse")),
        },
        Some(Command::Run(args)) => cli::run::run(args).await,
        Some(Command::Certify(args)) => cli::run::certify(args).await,
        Some(Command::Check { path, html }) => cli::check::check(&path, html.as_deref()),
        Some(Command::Gallery(args)) => cli::gallery::gallery(args).await,
        Some(Command::Study(args)) => cli::study::study(args).await,
        Some(Command::List) => cli::list::list(),
        Some(Command::Engines { provision }) => cli::list::engines(provision).await,
        Some(Command::Gc {
            kube: Some(kubeconfig),
            ..
        }) => cli::gc::gc_kube(&kubeconfig).await,
        Some(Command::Gc { run, images, .. }) => cli::gc::gc(run, images).await,
    }
}
