//! Builds a run's substrate and subject from its choices: addresses and
//! data directories for processes, a network and volumes for docker, a
//! namespace for Kubernetes; certificates when TLS is on.

use super::{DriveError, RunSpec};
use crate::engine::EngineKind;
use crate::engine::etcd::ClientConfig;
use crate::engine::tls::TlsMaterial;
use crate::model::{EngineView, SERVICE_PORT, ServiceView};
use crate::subject::deployer::DeployerContext;
use crate::subject::{Subject, SubjectChoice};
use crate::substrate::docker::{self, DockerRunConfig, DockerSubstrate};
use crate::substrate::kube::KubeSubstrate;
use crate::substrate::process::{AddressPlan, CLIENT_PORT, PEER_PORT, ProcessSubstrate};
use crate::substrate::{AnySubstrate, SubstrateChoice, SubstrateError};
use crate::sys::TempDir;
use crate::trace::{Recorder, SlotInfo};
use std::time::Duration;

/// How long one poll of a member may take: a port-forward to a pod takes
/// longer to open than a loopback connection.
const POLL_TIMEOUT: Duration = Duration::from_millis(800);
const KUBE_POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// How many loopback prefixes a process run tries before giving up.
const ADDRESS_ATTEMPTS: u32 = 3;

pub(super) struct Ready {
    pub substrate: AnySubstrate,
    pub subject: Subject,
    /// Every slot known before the run, for the trace's header.
    pub slots: Vec<SlotInfo>,
    /// URLs that reach whichever members are up (Kubernetes Services).
    pub member_fronts: Vec<String>,
    pub tls: Option<TlsMaterial>,
    pub client_config: ClientConfig,
    pub engine_view: EngineView,
    /// The engine's config file, where the engine needs one (PD).
    pub engine_config: Option<String>,
    pub service: ServiceView,
    /// Data directories and certificates, removed when the run ends.
    pub _scratch: Option<TempDir>,
}

fn scratch() -> Result<TempDir, DriveError> {
    TempDir::new("raftcert-run").map_err(|source| DriveError::Io {
        what: "temporary directory",
        source,
    })
}

fn process_slots(plan: &AddressPlan, replicas: u32, tls: bool) -> Vec<SlotInfo> {
    let scheme = if tls { "https" } else { "http" };
    (0..replicas)
        .map(|ordinal| {
            let ip = plan.member_ip(ordinal);
            SlotInfo {
                name: format!("m{ordinal}"),
                ordinal,
                peer_url: format!("{scheme}://{ip}:{PEER_PORT}"),
                client_url: format!("{scheme}://{ip}:{CLIENT_PORT}"),
            }
        })
        .collect()
}

pub(super) async fn prepare(spec: &RunSpec, recorder: &Recorder) -> Result<Ready, DriveError> {
    let replicas = spec.scenario.max_replicas();
    let logs_dir = spec.dir.join("logs");
    if let SubstrateChoice::Kube(target) = &spec.substrate {
        if spec.tls {
            return Err(DriveError::Invalid(
                "TLS on Kubernetes is the profile's to set up, not --tls".into(),
            ));
        }
        let substrate = KubeSubstrate::create(
            target.clone(),
            &spec.run_id,
            replicas,
            recorder.clone(),
            &logs_dir,
        )
        .await
        .map_err(crate::substrate::SubstrateError::from)?;
        let subject = Subject::operator(&substrate)?;
        let slots = substrate.initial_slots();
        let member_fronts = substrate.member_fronts();
        return Ok(Ready {
            substrate: AnySubstrate::Kube(Box::new(substrate)),
            subject,
            slots,
            member_fronts,
            tls: None,
            client_config: ClientConfig {
                tls: None,
                timeout: KUBE_POLL_TIMEOUT,
            },
            engine_config: None,
            engine_view: EngineView {
                kind: spec.engine.kind().to_string(),
                version: spec.engine.version(),
                binary: String::new(),
            },
            service: ServiceView {
                ip: String::new(),
                port: 0,
            },
            _scratch: None,
        });
    }
    if let SubjectChoice::Operator(profile) = &spec.subject {
        return Err(DriveError::Invalid(format!(
            "profile {} needs --backend kube",
            profile.name
        )));
    }
    let Some(install) = spec.engine.install() else {
        return Err(DriveError::Invalid(
            "a local run needs a provisioned engine binary".into(),
        ));
    };
    let scratch = scratch()?;
    // PD's raft timings come from a file: in the run's scratch directory
    // for processes, in the image raftcert builds for containers.
    let engine_config = match (install.kind, &spec.substrate) {
        (EngineKind::Etcd, _) => None,
        (EngineKind::Pd, SubstrateChoice::Docker { image: None }) => {
            Some(docker::PD_CONFIG_PATH.to_string())
        }
        (EngineKind::Pd, SubstrateChoice::Docker { image: Some(image) }) => {
            return Err(DriveError::Invalid(format!(
                "PD runs in the images raftcert builds, not in {image}"
            )));
        }
        (EngineKind::Pd, _) => {
            let path = scratch.path().join("pd-timing.toml");
            std::fs::write(&path, crate::engine::pd::timing_config()).map_err(|source| {
                DriveError::Io {
                    what: "writing PD's config file",
                    source,
                }
            })?;
            Some(path.display().to_string())
        }
    };
    let tls_dir = scratch.path().join("tls");
    let generate_tls = |members: Vec<(String, Vec<String>)>| {
        spec.tls
            .then(|| TlsMaterial::generate(&tls_dir, &members))
            .transpose()
    };
    let placement = match &spec.substrate {
        SubstrateChoice::Process => {
            // Free addresses are probed, then bound: another process may
            // take one in between. Nothing runs yet, so other addresses
            // are taken instead.
            let mut attempt = 1;
            let (substrate, slots, service_ip, service_listener, tls) = loop {
                let plan =
                    AddressPlan::allocate(replicas, spec.seed ^ crate::util::unique_suffix())?;
                let slots = process_slots(&plan, replicas, spec.tls);
                let tls = generate_tls(
                    slots
                        .iter()
                        .map(|s| {
                            let sans = vec![
                                plan.member_ip(s.ordinal),
                                "localhost".to_string(),
                                s.name.clone(),
                            ];
                            (s.name.clone(), sans)
                        })
                        .collect(),
                )?;
                let service_ip = plan.service_ip();
                let service_listener = plan.service_listener();
                match ProcessSubstrate::new(
                    recorder.clone(),
                    spec.engine.kind(),
                    slots.clone(),
                    plan,
                    &scratch.path().join("data"),
                    &logs_dir,
                ) {
                    Ok(substrate) => {
                        break (substrate, slots, service_ip, service_listener, tls);
                    }
                    Err(SubstrateError::Io { path, source, .. })
                        if source.kind() == std::io::ErrorKind::AddrInUse
                            && attempt < ADDRESS_ATTEMPTS =>
                    {
                        tracing::warn!("{}: {source}; taking other addresses", path.display());
                        attempt += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            Placement {
                substrate: AnySubstrate::Process(Box::new(substrate)),
                slots,
                service_ip,
                service_listener,
                binary: install.server.display().to_string(),
                tls,
            }
        }
        SubstrateChoice::Docker { image } => {
            let client = docker::connect().await?;
            let image = docker::ensure_engine_image(&client, install, image.as_deref()).await?;
            let label = format!(
                "{}-{:x}",
                spec.run_id
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect::<String>(),
                crate::util::unique_suffix() % 0xff_ffff
            );
            let config = DockerRunConfig {
                run_label: label,
                engine: spec.engine.kind(),
                replicas,
                tls: spec.tls,
                image,
                logs_dir: logs_dir.clone(),
                seed: spec.seed ^ crate::util::unique_suffix(),
            };
            let (mut substrate, layout) =
                DockerSubstrate::create(client, recorder.clone(), config).await?;
            let tls = generate_tls(
                layout
                    .slots
                    .iter()
                    .zip(&layout.hosts)
                    .map(|(s, host)| {
                        let sans = vec![
                            "127.0.0.1".to_string(),
                            "localhost".to_string(),
                            s.name.clone(),
                            host.clone(),
                        ];
                        (s.name.clone(), sans)
                    })
                    .collect(),
            )?;
            if tls.is_some() {
                substrate.set_tls_dir(&tls_dir);
            }
            Placement {
                substrate: AnySubstrate::Docker(Box::new(substrate)),
                slots: layout.slots,
                service_ip: layout.service_ip,
                service_listener: crate::sys::HeldListener::default(),
                binary: docker::engine_path(install.kind).to_string(),
                tls,
            }
        }
        SubstrateChoice::Kube(_) => unreachable!("handled above"),
    };
    let Placement {
        substrate,
        slots,
        service_ip,
        service_listener,
        binary,
        tls,
    } = placement;
    let ctx = DeployerContext {
        service_ip: service_ip.clone(),
        service_port: SERVICE_PORT,
        service_listener,
        log_dir: logs_dir,
    };
    let subject = Subject::deployer(spec.subject.clone(), ctx)?;
    Ok(Ready {
        substrate,
        subject,
        slots,
        // Deployers reach members by their own URLs.
        member_fronts: Vec::new(),
        client_config: ClientConfig {
            tls: tls.clone(),
            timeout: POLL_TIMEOUT,
        },
        tls,
        engine_config,
        engine_view: EngineView {
            kind: install.kind.to_string(),
            version: install.version.clone(),
            binary,
        },
        service: ServiceView {
            ip: service_ip,
            port: SERVICE_PORT,
        },
        _scratch: Some(scratch),
    })
}

/// Where a local run's members were placed, and what reaches them.
struct Placement {
    substrate: AnySubstrate,
    slots: Vec<SlotInfo>,
    service_ip: String,
    service_listener: crate::sys::HeldListener,
    /// The engine binary as the members run it.
    binary: String,
    tls: Option<TlsMaterial>,
}
