//! Engines built with the local Go toolchain: etcd 3.6 on from the Go
//! module proxy, PD from the release sources in `../shared/sources` (the
//! proxy refuses `github.com/tikv/pd`).

use super::provision::{ProvisionError, hex, run};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// A cold build downloads the module graph and compiles it on 2 cores.
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
const QUICK_TIMEOUT: Duration = Duration::from_secs(60);
/// etcd's server and etcdctl modules, for versions built from source.
pub const ETCD_SERVER_MODULE: &str = "go.etcd.io/etcd/server/v3";
const ETCD_CTL_MODULE: &str = "go.etcd.io/etcd/etcdctl/v3";
const PD_VERSION_PACKAGE: &str = "github.com/tikv/pd/pkg/versioninfo";

/// One PD release and the two trees it pins that the proxy refuses, as
/// `git archive` tarballs with one top-level folder named like the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdRelease {
    pub version: &'static str,
    pub commit: &'static str,
    pub branch: &'static str,
    pub pd: SourceTarball,
    pub kvproto: SourceTarball,
    pub dashboard: SourceTarball,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceTarball {
    /// The file name without `.tar.gz`, also its top-level folder.
    pub stem: &'static str,
    pub sha256: &'static str,
}

/// The PD releases raftcert builds, newest LTS first. Digests from
/// `../shared/sources/README.md`; a tarball that differs is refused.
pub const PD_RELEASES: &[PdRelease] = &[
    PdRelease {
        version: "8.5.7",
        commit: "6dce4a68e3e93b523657bd05cba89a86d64de117",
        branch: "release-8.5",
        pd: SourceTarball {
            stem: "pd-v8.5.7",
            sha256: "17bd311feb5a22e7c6d91148f2b4c4fb3385d3e37c3195a33a9e08844de9ef21",
        },
        kvproto: SourceTarball {
            stem: "kvproto-39498d6b17fc",
            sha256: "657f1739cab86fae799f00cc56e5d410cf4660a3ab2d4622d1c0e75c4340e897",
        },
        dashboard: SourceTarball {
            stem: "tidb-dashboard-6d9fb95a80fd",
            sha256: "d5730a1512bac157b823f03db9ab68fb396b39cd6a0659cb85578a362f89ef44",
        },
    },
    PdRelease {
        version: "26.3.4",
        commit: "054331030a4d46c5a5227555698606a258a932e4",
        branch: "release-nextgen-202603",
        pd: SourceTarball {
            stem: "pd-v26.3.4",
            sha256: "5d13e5188ec82b67fc1ceb8e0e4e4dfc48c478fa86674b522f18001949fc4c46",
        },
        kvproto: SourceTarball {
            stem: "kvproto-e800f9e5a427",
            sha256: "0db129f7130705692b5eaf8bcbf568dd40fd957fa2bf34a02a4ebf42100fb5b7",
        },
        dashboard: SourceTarball {
            stem: "tidb-dashboard-aa6178a60657",
            sha256: "7bf05219efb5cb071eb1085a223538b08454606f348432e0932965c50d65a99a",
        },
    },
];

pub fn pd_release(version: &str) -> Option<&'static PdRelease> {
    PD_RELEASES.iter().find(|r| r.version == version)
}

/// Where the upstream sources are: `$RAFTCERT_SOURCES`, else `../shared/sources`
/// beside the working directory, else beside this checkout.
pub fn sources_dir() -> PathBuf {
    let dir = match std::env::var_os("RAFTCERT_SOURCES").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None if Path::new("../shared/sources").is_dir() => PathBuf::from("../shared/sources"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sources"),
    };
    // Absolute, so the provenance an install records means the same anywhere.
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// A `go` command in `work` that uses only the local toolchain.
fn go(work: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("go");
    c.args(args)
        .current_dir(work)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0");
    c
}

async fn require_go(work: &Path, purpose: String) -> Result<(), ProvisionError> {
    match run(go(work, &["version"]), "go version", QUICK_TIMEOUT).await {
        Err(ProvisionError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ProvisionError::MissingTool {
                tool: "go".into(),
                purpose,
            })
        }
        other => other.map(drop),
    }
}

/// `go build` of etcd and etcdctl in a throwaway module that requires
/// both at `v<version>` (their own go.mod files carry `replace` lines, so
/// `go install pkg@version` is refused).
pub(super) async fn etcd_from_modules(
    version: &str,
    work: &Path,
) -> Result<(PathBuf, Option<PathBuf>), ProvisionError> {
    require_go(
        work,
        format!("building etcd {version} from the Go module proxy"),
    )
    .await?;
    run(
        go(work, &["mod", "init", "raftcert.local/etcd-build"]),
        "go mod init",
        QUICK_TIMEOUT,
    )
    .await?;
    let server = format!("{ETCD_SERVER_MODULE}@v{version}");
    let ctl = format!("{ETCD_CTL_MODULE}@v{version}");
    run(
        go(work, &["get", &server, &ctl]),
        &format!("go get {server} {ctl}"),
        GO_BUILD_TIMEOUT,
    )
    .await?;
    for (package, out) in [(ETCD_SERVER_MODULE, "etcd"), (ETCD_CTL_MODULE, "etcdctl")] {
        run(
            go(work, &["build", "-trimpath", "-o", out, package]),
            &format!("go build {package}"),
            GO_BUILD_TIMEOUT,
        )
        .await?;
    }
    Ok((work.join("etcd"), Some(work.join("etcdctl"))))
}

/// pd-server from its release tarball, with PD's pinned kvproto and
/// tidb-dashboard replaced by their tarballs and every other module from
/// the proxy; without the dashboard (it needs assets fetched from GitHub),
/// with the version ldflags PD's Makefile sets.
pub(super) async fn pd_from_sources(
    release: &PdRelease,
    sources: &Path,
    work: &Path,
) -> Result<PathBuf, ProvisionError> {
    for tarball in [release.pd, release.kvproto, release.dashboard] {
        let path = sources.join(format!("{}.tar.gz", tarball.stem));
        verify(&path, tarball.sha256).await?;
        let mut tar = Command::new("tar");
        tar.arg("-xzf").arg(&path).arg("-C").arg(work);
        run(
            tar,
            &format!("tar -xzf {}", path.display()),
            GO_BUILD_TIMEOUT,
        )
        .await?;
    }
    let tree = work.join(release.pd.stem);
    require_go(
        &tree,
        format!("building pd-server {} from its sources", release.version),
    )
    .await?;
    let replace =
        |module: &str, stem: &str| format!("-replace={module}={}", work.join(stem).display());
    run(
        go(
            &tree,
            &[
                "mod",
                "edit",
                &replace("github.com/pingcap/kvproto", release.kvproto.stem),
                &replace("github.com/pingcap/tidb-dashboard", release.dashboard.stem),
            ],
        ),
        "go mod edit -replace",
        QUICK_TIMEOUT,
    )
    .await?;
    let ldflags = format!(
        "-X '{p}.PDReleaseVersion=v{v}' -X '{p}.PDGitHash={c}' -X '{p}.PDGitBranch={b}' -X '{p}.PDEdition=Community'",
        p = PD_VERSION_PACKAGE,
        v = release.version,
        c = release.commit,
        b = release.branch,
    );
    run(
        go(
            &tree,
            &[
                "build",
                "-trimpath",
                "-tags",
                "without_dashboard",
                "-ldflags",
                &ldflags,
                "-o",
                "pd-server",
                "./cmd/pd-server",
            ],
        ),
        &format!("go build pd-server {}", release.version),
        GO_BUILD_TIMEOUT,
    )
    .await?;
    Ok(tree.join("pd-server"))
}

/// Refuses a missing source tarball, or one whose digest is not the pinned one.
async fn verify(path: &Path, expected: &str) -> Result<(), ProvisionError> {
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ProvisionError::MissingSource {
                path: path.to_path_buf(),
            }
        } else {
            ProvisionError::Io {
                context: format!("read {}", path.display()),
                source: e,
            }
        }
    })?;
    let actual = hex(&Sha256::digest(&bytes));
    if actual == expected {
        Ok(())
    } else {
        Err(ProvisionError::ChecksumMismatch {
            file: path.display().to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pd_release_names_its_own_pinned_trees() {
        for r in PD_RELEASES {
            assert_eq!(r.pd.stem, format!("pd-v{}", r.version));
            assert_eq!(r.commit.len(), 40);
            for t in [r.pd, r.kvproto, r.dashboard] {
                assert_eq!(t.sha256.len(), 64, "{}", t.stem);
            }
        }
        assert_eq!(pd_release("8.5.7").map(|r| r.branch), Some("release-8.5"));
        assert_eq!(pd_release("8.5.6"), None);
    }

    #[tokio::test]
    async fn a_source_tarball_with_another_digest_is_refused() {
        let dir = crate::sys::TempDir::new("raftcert-src-test").expect("temp dir");
        let path = dir.path().join("pd-v8.5.7.tar.gz");
        std::fs::write(&path, b"not the release").expect("write");
        let err = verify(&path, PD_RELEASES[0].pd.sha256)
            .await
            .expect_err("wrong digest");
        assert!(
            matches!(err, ProvisionError::ChecksumMismatch { .. }),
            "{err}"
        );
        let missing = verify(&dir.path().join("absent.tar.gz"), PD_RELEASES[0].pd.sha256)
            .await
            .expect_err("missing file");
        assert!(
            matches!(missing, ProvisionError::MissingSource { .. }),
            "{missing}"
        );
    }
}
