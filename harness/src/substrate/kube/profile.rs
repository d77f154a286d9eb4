//! Operator profiles: how to install a deployment on a cluster, scale it,
//! find its members and which faults it may suffer
//! (`fixtures/operators/<name>/profile.yaml`).

use crate::engine::EngineRef;
use crate::util::Dur;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const PROFILE_FILE: &str = "profile.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What a certification certifies.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileSubject {
    /// `etcd-io/etcd-operator`.
    pub name: String,
    pub version: String,
}

/// The object whose replica count a `bootstrap` or `scale` step sets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScaleTarget {
    pub api_version: String,
    pub kind: String,
    /// Template: `${NAME}`.
    pub name: String,
    /// JSON pointer to the replica count, e.g. `/spec/size`.
    pub path: String,
}

/// How member pods are found and reached.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberPods {
    /// Label selector template, e.g. `app=${NAME}`.
    pub selector: String,
    /// Pod name template for an ordinal: `${NAME}-${ORDINAL}` (a
    /// StatefulSet). Without it, member pods are named by the operator
    /// (`<cluster>-<random>`): every pod the selector finds becomes a slot
    /// when it appears, and the slots wanted at a step's end are the live
    /// member pods.
    #[serde(default)]
    pub pod: Option<String>,
    pub container: String,
    pub client_port: u16,
    /// The member's advertised peer URL: `${POD}`, `${NAME}`, `${NAMESPACE}`.
    pub peer_url: String,
    pub client_url: String,
    /// Client URLs that reach whichever members are up rather than one
    /// member (a Service in front of them), e.g.
    /// `http://${NAME}-pd.${NAMESPACE}:2379`: a `--join` through one is a
    /// join through the members (I2).
    #[serde(default)]
    pub fronts: Vec<String>,
}

/// The operator's own pods.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperatorPods {
    pub namespace: String,
    /// Label selector, e.g. `name=etcd-operator`.
    pub selector: String,
}

/// Where the operator reports the cluster's member count (for I9).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusSource {
    pub api_version: String,
    pub kind: String,
    /// Template: `${NAME}`.
    pub name: String,
    /// JSON pointer to the count, e.g. `/status/readyReplicas`; a list
    /// there counts by its length (`/status/members/ready`).
    pub members: String,
    /// How long after a step settles the status may take to catch up
    /// (default 10s): an operator that writes it once per reconcile tick
    /// needs at least its tick.
    #[serde(default)]
    pub grace: Option<Dur>,
}

/// Faults a profile allows; the Kubernetes backend maps each to API calls.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KubeFault {
    /// Delete the member's pod with its grace period; its volume stays.
    /// Also drives restarts: one member, rolling, or all at once.
    DeletePod,
    /// Delete the member's pod with grace period 0.
    KillPod,
    /// Delete the operator's pod with grace period 0 (needs `operator`).
    CrashOperator,
    /// Delete the member's pod and its PVC.
    LoseVolume,
    /// Cut members off from the others (blackhole routes in their pods'
    /// network namespaces; needs node access, see `kube::nodes`).
    Partition,
    /// Stop every process of a member's container for a while.
    Freeze,
    /// Drop everything a member sends off its pod for a while.
    Disconnect,
    /// Stop the worker node a member runs on (its kind node container),
    /// then start it again.
    StopNode,
    /// Cordon and drain the worker node a member runs on, then uncordon it.
    DrainNode,
}

impl KubeFault {
    /// The profile's name for what a fault primitive does on Kubernetes.
    /// `None` for what the Kubernetes substrate cannot do at all.
    pub fn for_primitive(primitive: crate::faults::Primitive) -> Option<KubeFault> {
        use crate::faults::Primitive;
        Some(match primitive {
            Primitive::Kill => KubeFault::KillPod,
            // A graceful restart is a pod deleted with its grace period.
            Primitive::Stop | Primitive::DeletePod => KubeFault::DeletePod,
            Primitive::LoseVolume => KubeFault::LoseVolume,
            Primitive::Freeze => KubeFault::Freeze,
            Primitive::Disconnect => KubeFault::Disconnect,
            Primitive::Cut => KubeFault::Partition,
            Primitive::CrashSubject => KubeFault::CrashOperator,
            Primitive::StopNode => KubeFault::StopNode,
            Primitive::DrainNode => KubeFault::DrainNode,
            Primitive::Delay => return None,
        })
    }

    /// The name a profile's `faults` list uses.
    pub fn name(self) -> &'static str {
        match self {
            KubeFault::DeletePod => "delete-pod",
            KubeFault::KillPod => "kill-pod",
            KubeFault::CrashOperator => "crash-operator",
            KubeFault::LoseVolume => "lose-volume",
            KubeFault::Partition => "partition",
            KubeFault::Freeze => "freeze",
            KubeFault::Disconnect => "disconnect",
            KubeFault::StopNode => "stop-node",
            KubeFault::DrainNode => "drain-node",
        }
    }

    /// Whether it takes a whole node away.
    pub fn acts_on_a_node(self) -> bool {
        matches!(self, KubeFault::StopNode | KubeFault::DrainNode)
    }

    /// Whether the fault is applied through the nodes, not the API.
    pub fn needs_nodes(self) -> bool {
        matches!(
            self,
            KubeFault::Partition | KubeFault::Freeze | KubeFault::Disconnect | KubeFault::StopNode
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub subject: ProfileSubject,
    /// `etcd@3.6.5`.
    pub engine: String,
    /// Images the cluster's nodes must hold (loaded into kind, or pulled).
    #[serde(default)]
    pub images: Vec<String>,
    /// Manifests applied once before the scenarios (the operator, its CRDs);
    /// relative to the profile, or under `${RAFTCERT_KIND_CACHE}` for what
    /// `ci/kind/` builds.
    #[serde(default)]
    pub install: Vec<String>,
    /// Where the operator runs, to wait for it and to crash it mid-step.
    #[serde(default)]
    pub operator: Option<OperatorPods>,
    /// The deployment under test, applied in the run's namespace; a
    /// template of `${NAME}`, `${NAMESPACE}` and `${REPLICAS}`.
    pub deployment: String,
    pub scale: ScaleTarget,
    /// The least time any step gets to settle, whatever the suite says: an
    /// operator that adds one member per reconcile tick needs longer than
    /// the suite's defaults, which are sized for a local deployer.
    #[serde(default)]
    pub min_settle: Option<Dur>,
    pub members: MemberPods,
    /// Where the operator reports what it manages; without it I9 has
    /// nothing to compare.
    #[serde(default)]
    pub status: Option<StatusSource>,
    pub faults: Vec<KubeFault>,
    /// Caveats the report repeats (e.g. which start script a PD profile uses).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The profile's directory; manifest paths are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Profile {
    /// Loads `<dir>/profile.yaml`, or the file itself.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let file = if path.is_dir() {
            path.join(PROFILE_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ProfileError::Read {
            path: file.clone(),
            source,
        })?;
        let mut profile: Profile =
            serde_saphyr::from_str(&text).map_err(|e| ProfileError::Parse {
                path: file.clone(),
                message: crate::util::yaml_error_text(&e),
            })?;
        profile.dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        profile.validate(&file)?;
        Ok(profile)
    }

    fn validate(&self, file: &Path) -> Result<(), ProfileError> {
        let invalid = |message: String| ProfileError::Invalid {
            path: file.to_path_buf(),
            message,
        };
        let engine = self
            .engine_ref()
            .map_err(|e| invalid(format!("engine: {e}")))?;
        if engine.version.is_none() {
            return Err(invalid(format!(
                "engine {:?} needs its version, e.g. etcd@3.6.5",
                self.engine
            )));
        }
        // What ci/kind/ builds is checked before a run (`check_built`), so
        // that a profile loads, and lists, on a machine without the cache.
        let cache = kind_cache();
        for path in self.manifest_paths() {
            if !path.starts_with(&cache) && !path.is_file() {
                return Err(invalid(format!(
                    "manifest {} does not exist",
                    path.display()
                )));
            }
        }
        if self.faults.contains(&KubeFault::CrashOperator) && self.operator.is_none() {
            return Err(invalid(
                "fault crash-operator needs an operator section".into(),
            ));
        }
        if !self.scale.path.starts_with('/') {
            return Err(invalid(format!(
                "scale.path {:?} is not a JSON pointer (e.g. /spec/replicas)",
                self.scale.path
            )));
        }
        if let Some(status) = &self.status
            && !status.members.starts_with('/')
        {
            return Err(invalid(format!(
                "status.members {:?} is not a JSON pointer (e.g. /status/readyReplicas)",
                status.members
            )));
        }
        if let Some(pod) = &self.members.pod
            && !pod.contains("${ORDINAL}")
        {
            return Err(invalid(
                "members.pod must contain ${ORDINAL} (leave it out when the operator names its pods)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Fails, naming the first one, when a manifest that a script of
    /// `ci/kind/` renders into the cache has not been built here.
    pub fn check_built(&self) -> Result<(), ProfileError> {
        let cache = kind_cache();
        match self
            .manifest_paths()
            .into_iter()
            .find(|path| path.starts_with(&cache) && !path.is_file())
        {
            Some(missing) => Err(ProfileError::Invalid {
                path: self.dir.join(PROFILE_FILE),
                message: format!(
                    "manifest {} is not built here: run the ci/kind/ script the profile names",
                    missing.display()
                ),
            }),
            None => Ok(()),
        }
    }

    /// The install manifests, then the deployment template.
    pub fn manifest_paths(&self) -> Vec<PathBuf> {
        let cache = kind_cache();
        let cache = cache.to_string_lossy();
        self.install
            .iter()
            .chain([&self.deployment])
            .map(|m| self.dir.join(fill(m, &[("RAFTCERT_KIND_CACHE", &cache)])))
            .collect()
    }

    pub fn engine_ref(&self) -> Result<EngineRef, crate::engine::EngineRefError> {
        self.engine.parse()
    }

    /// The pod of an ordinal, when the profile names pods by ordinal.
    pub fn pod_name(&self, name: &str, ordinal: u32) -> Option<String> {
        let template = self.members.pod.as_ref()?;
        Some(fill(
            template,
            &[("NAME", name), ("ORDINAL", &ordinal.to_string())],
        ))
    }

    /// Whether one operator serves every run (installed once, outside the
    /// runs' namespaces), rather than one deployed with each run.
    pub fn operator_is_shared(&self) -> bool {
        self.operator
            .as_ref()
            .is_some_and(|o| !o.namespace.contains("${NAMESPACE}"))
    }

    /// Whether the operator names member pods itself.
    pub fn dynamic_members(&self) -> bool {
        self.members.pod.is_none()
    }

    /// How long a step gets to settle: the suite's time, at least the
    /// profile's floor.
    pub fn settle(&self, suite_settle: std::time::Duration) -> std::time::Duration {
        self.min_settle
            .as_ref()
            .map_or(suite_settle, |floor| suite_settle.max(floor.0))
    }
}

/// Where `ci/kind/` keeps what it builds.
pub fn kind_cache() -> PathBuf {
    std::env::var_os("RAFTCERT_KIND_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/raftcert-kind"))
}

/// Replaces `${KEY}` by its value; unknown keys stay as they are.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("${{{key}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    #[test]
    fn fault_names_are_the_profile_spelling() {
        for fault in [
            KubeFault::DeletePod,
            KubeFault::KillPod,
            KubeFault::CrashOperator,
            KubeFault::LoseVolume,
            KubeFault::Partition,
            KubeFault::Freeze,
            KubeFault::Disconnect,
        ] {
            let parsed: Vec<KubeFault> =
                serde_saphyr::from_str(&format!("[{}]", fault.name())).expect("parses");
            assert_eq!(parsed, vec![fault]);
        }
    }

    #[test]
    fn shipped_profiles_load() {
        let dir = repo_root().join("fixtures/operators");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures/operators") {
            let path = entry.expect("entry").path();
            if path.join(PROFILE_FILE).is_file() {
                let profile = Profile::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!profile.faults.is_empty(), "{}", path.display());
                loaded += 1;
            }
        }
        assert!(loaded >= 1, "no profile in {}", dir.display());
    }

    #[test]
    fn an_operator_outside_the_run_namespace_is_shared_by_every_run() {
        let load = |name: &str| {
            Profile::load(&repo_root().join("fixtures/operators").join(name))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(load("etcd-io-etcd-operator").operator_is_shared());
        assert!(!load("coreos-etcd-operator").operator_is_shared());
        assert!(!load("statefulset-static").operator_is_shared());
    }

    #[test]
    fn an_unknown_field_is_reported_at_its_position() {
        let tmp = std::env::temp_dir().join(format!(
            "raftcert-profile-{}-{}",
            std::process::id(),
            crate::util::unique_suffix()
        ));
        std::fs::create_dir_all(&tmp).expect("tmp");
        let file = tmp.join(PROFILE_FILE);
        std::fs::write(
            &file,
            "name: x\nsubject: {name: a, version: b}\nreplicaz: 3\n",
        )
        .expect("write");
        let err = Profile::load(&tmp).expect_err("must fail");
        let _ = std::fs::remove_dir_all(&tmp);
        let text = err.to_string();
        assert!(text.contains("profile.yaml:3:1"), "{text}");
        assert!(text.contains("replicaz"), "{text}");
    }

    #[test]
    fn a_manifest_left_to_ci_kind_is_checked_before_a_run_not_at_load() {
        let tmp = std::env::temp_dir().join(format!(
            "raftcert-profile-{}-{}",
            std::process::id(),
            crate::util::unique_suffix()
        ));
        std::fs::create_dir_all(&tmp).expect("tmp");
        std::fs::write(tmp.join("cluster.yaml"), "kind: X\n").expect("write");
        let absent = format!(
            "operators/absent-{}/install.yaml",
            crate::util::unique_suffix()
        );
        std::fs::write(
            tmp.join(PROFILE_FILE),
            format!(
                "name: x\nsubject: {{name: a, version: b}}\nengine: etcd@3.6.5\n\
                 install: [\"${{RAFTCERT_KIND_CACHE}}/{absent}\"]\ndeployment: cluster.yaml\n\
                 scale: {{api_version: v1, kind: X, name: x, path: /spec/size}}\n\
                 members: {{selector: a=b, container: etcd, client_port: 2379, \
                 peer_url: \"http://${{POD}}:2380\", client_url: \"http://${{POD}}:2379\"}}\n\
                 faults: [delete-pod]\n"
            ),
        )
        .expect("write");
        let loaded = Profile::load(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        let profile = loaded.unwrap_or_else(|e| panic!("{e}"));
        let err = profile
            .check_built()
            .expect_err("the manifest is not built");
        assert!(err.to_string().contains(&absent), "{err}");
        assert!(err.to_string().contains("ci/kind/"), "{err}");
    }

    #[test]
    fn templates_fill_known_keys_only() {
        assert_eq!(
            fill(
                "${NAME}-${ORDINAL}.${OTHER}",
                &[("NAME", "e"), ("ORDINAL", "2")]
            ),
            "e-2.${OTHER}"
        );
    }
}
