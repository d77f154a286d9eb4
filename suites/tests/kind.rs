//! The kind cluster of this machine (`ci/kind/`): created from the locally
//! built node image, smoke-tested, used by the Kubernetes backend's static
//! profile, deleted. Building that image takes about
//! 19 minutes on 2 cores, so the test runs only when it is already built,
//! or when `RAFTCERT_KIND=build` asks for the build; otherwise it says so
//! loudly, with the commands to run.

use raftcert_suites::{
    an_image_that_cannot_be_pulled_is_an_environment_error, coreos_operator_profile_checks,
    ensure_docker, etcd_io_operator_profile_checks, interrupted_certification_keeps_its_report,
    node_fault_checks, node_faults_need_workers, node_stop_and_drain_checks, repo_root,
    static_statefulset_profile_checks, tidb_operator_v1_profile_checks,
    tidb_operator_v2_profile_checks,
};
use std::path::Path;
use std::process::Command;

/// `NAME=value` lines of `ci/kind/versions.env`.
fn pinned(name: &str) -> String {
    let path = repo_root().join("ci/kind/versions.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
        .trim()
        .to_string()
}

fn run_script(script: &str, args: &[&str], kubeconfig: &Path) -> bool {
    let path = repo_root().join("ci/kind").join(script);
    Command::new("bash")
        .arg(&path)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .success()
}

/// Deletes the cluster even when an assertion fails.
struct Cluster {
    name: String,
    kubeconfig: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let kind = Path::new(&kind_cache()).join("bin/kind");
        let _ = Command::new(kind)
            .args(["delete", "cluster", "--name", &self.name])
            .env("KUBECONFIG", &self.kubeconfig)
            .status();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Whether the local Docker engine holds the image.
fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether an operator's images and its manifest (under the kind cache)
/// were built on this machine; if not, says so loudly, with the build.
fn operator_built(
    operator: &str,
    images: &[&str],
    manifest: &str,
    build_cost: &str,
    build: &str,
) -> bool {
    let manifest = Path::new(&kind_cache()).join(manifest);
    if images.iter().all(|image| image_exists(image)) && manifest.is_file() {
        return true;
    }
    eprintln!(
        "\n\
         ************************************************************\n\
         SKIPPED the {operator} checks: no images {} or no {}.\n\
         Build them ({build_cost}) and rerun:\n\
         \x20   {build}\n\
         \x20   cargo test -p raftcert-suites --test kind\n\
         ************************************************************\n",
        images.join(" and "),
        manifest.display()
    );
    false
}

fn kind_cache() -> String {
    std::env::var("RAFTCERT_KIND_CACHE").unwrap_or_else(|_| "/var/cache/raftcert-kind".into())
}

/// One kind cluster at a time: two would not fit on 2 cores.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The node image and the tools the scripts need, if built.
fn node_image_built() -> (String, bool) {
    let image = format!(
        "raftcert/kind-node:{}-{}",
        pinned("K8S_VERSION"),
        pinned("DEBIAN_SUITE")
    );
    // The scripts also need the tools the build left in its cache.
    let tools = ["kind", "kubectl", "etcd"]
        .iter()
        .all(|t| Path::new(&kind_cache()).join("bin").join(t).is_file());
    let built = tools && image_exists(&image);
    (image, built)
}

/// A control plane and three workers: a worker stopped and started again,
/// and one drained and uncordoned, under the static StatefulSet. Runs only
/// where the node image is built (it never builds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_workers_stopped_and_drained_under_an_etcd_statefulset() {
    if std::env::var("RAFTCERT_KIND").unwrap_or_default() == "skip" {
        eprintln!("SKIPPED the kind node-fault test: RAFTCERT_KIND=skip");
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    ensure_docker().await;
    let (image, built) = node_image_built();
    if !built || !image_exists("raftcert/etcd-smoke:3.6.5") {
        eprintln!(
            "SKIPPED the kind node-fault test: no node image {image} or no raftcert/etcd-smoke:3.6.5 \
             (the kind smoke test builds both with RAFTCERT_KIND=build)"
        );
        return;
    }
    let cluster = Cluster {
        name: format!("raftcert-workers-{}", std::process::id()),
        kubeconfig: std::env::temp_dir().join(format!(
            "raftcert-kind-workers-{}.kubeconfig",
            std::process::id()
        )),
    };
    let config = repo_root().join("kind-config/ci-1cp-3workers.yaml");
    assert!(
        run_script(
            "create-cluster",
            &[&cluster.name, &config.to_string_lossy()],
            &cluster.kubeconfig
        ),
        "ci/kind/create-cluster failed"
    );
    node_stop_and_drain_checks(&cluster.kubeconfig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kind_cluster_forms_an_etcd_statefulset() {
    let wanted = std::env::var("RAFTCERT_KIND").unwrap_or_default();
    if wanted == "skip" {
        eprintln!("SKIPPED the kind smoke test: RAFTCERT_KIND=skip");
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    ensure_docker().await;
    let (image, built) = node_image_built();
    if !built {
        if wanted != "build" {
            eprintln!(
                "\n\
                 ************************************************************\n\
                 SKIPPED the kind smoke test: no node image {image}\n\
                 (or no kind, kubectl and etcd in {cache}/bin).\n\
                 Building it takes about 19 min on 2 cores (see README).\n\
                 Build it and run this test:\n\
                 \x20   ci/kind/build-node-image\n\
                 \x20   cargo test -p raftcert-suites --test kind\n\
                 or in one go: RAFTCERT_KIND=build cargo test -p raftcert-suites --test kind\n\
                 ************************************************************\n",
                cache = kind_cache()
            );
            return;
        }
        assert!(
            run_script("build-node-image", &[], Path::new("/dev/null")),
            "ci/kind/build-node-image failed"
        );
    }
    let cluster = Cluster {
        name: format!("raftcert-test-{}", std::process::id()),
        kubeconfig: std::env::temp_dir()
            .join(format!("raftcert-kind-{}.kubeconfig", std::process::id())),
    };
    let config = repo_root().join("kind-config/single-node.yaml");
    let config = config.to_string_lossy();
    assert!(
        run_script(
            "create-cluster",
            &[&cluster.name, &config],
            &cluster.kubeconfig
        ),
        "ci/kind/create-cluster failed"
    );
    assert!(
        run_script("smoke-test", &[&cluster.name], &cluster.kubeconfig),
        "ci/kind/smoke-test failed"
    );
    // The smoke test loaded raftcert/etcd-smoke:3.6.5, which the Kubernetes
    // backend's static profile runs.
    static_statefulset_profile_checks(&cluster.kubeconfig).await;
    // Partitions, disconnects and freezes through the kind node.
    node_fault_checks(&cluster.kubeconfig).await;
    // Stopping or draining the only node is not offered.
    node_faults_need_workers(&cluster.kubeconfig).await;
    // Ctrl-C on a certification keeps the report of what finished.
    interrupted_certification_keeps_its_report(&cluster.kubeconfig).await;
    // An image the cluster cannot pull is the environment's error, fast.
    an_image_that_cannot_be_pulled_is_an_environment_error(&cluster.kubeconfig).await;

    // etcd-io/etcd-operator, where ci/kind/build-operator-images built its
    // images and manifest on this machine.
    if operator_built(
        "etcd-io/etcd-operator",
        &["raftcert/etcd-operator:v0.2.0", "local/etcd:v3.6.5"],
        "operators/etcd-operator-v0.2.0/install.yaml",
        "about 3 min, from ../shared/sources",
        "ci/kind/build-operator-images",
    ) {
        etcd_io_operator_profile_checks(&cluster.kubeconfig).await;
    }
    // tidb-operator v2.0.1 (PD), where ci/kind/build-tidb-operator-images
    // built its images and manifest on this machine.
    if operator_built(
        "tidb-operator v2",
        &["raftcert/tidb-operator:v2.0.1", "raftcert/pd:v8.5.7"],
        "operators/tidb-operator-v2.0.1/install.yaml",
        "about 12 min cold, from ../shared/sources",
        "ci/kind/build-tidb-operator-images",
    ) {
        tidb_operator_v2_profile_checks(&cluster.kubeconfig).await;
    }

    // tidb-operator v1.6.6 (PD), where ci/kind/build-tidb-operator-images
    // built its images and manifest on this machine.
    if operator_built(
        "tidb-operator v1",
        &["raftcert/tidb-operator:v1.6.6", "raftcert/pd-shell:v8.5.7"],
        "operators/tidb-operator-v1.6.6/install.yaml",
        "about 4 min, from ../shared/sources",
        "ci/kind/build-tidb-operator-images",
    ) {
        tidb_operator_v1_profile_checks(&cluster.kubeconfig).await;
    }

    // coreos/etcd-operator, where its images were built on this machine.
    let images = [
        "raftcert/coreos-etcd-operator:v0.9.4",
        "raftcert/coreos-etcd:v3.6.5",
    ];
    let have_images = images.iter().all(|image| image_exists(image));
    if !have_images {
        eprintln!(
            "\n\
             ************************************************************\n\
             SKIPPED the coreos/etcd-operator checks: no images {}.\n\
             Build them (about 2 min from the Go module proxy) and rerun:\n\
             \x20   ci/kind/build-coreos-etcd-operator\n\
             \x20   cargo test -p raftcert-suites --test kind\n\
             ************************************************************\n",
            images.join(" and ")
        );
        return;
    }
    // Not loaded here: the first run on this new cluster must load them
    // (and say so), then pass.
    let node = format!("{}-control-plane", cluster.name);
    for image in images {
        let present = Command::new("docker")
            .args(["exec", &node, "crictl", "inspecti", "-q", image])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(!present, "{image} is on the new cluster before any run");
    }
    coreos_operator_profile_checks(&cluster.kubeconfig).await;
    for image in images {
        let present = Command::new("docker")
            .args(["exec", &node, "crictl", "inspecti", "-q", image])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(present, "{image} was loaded by the first run");
    }
}
