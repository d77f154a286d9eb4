//! `raftcert gc`: what killed runs left behind.

use super::bad;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

pub async fn gc_kube(kubeconfig: &Path) -> anyhow::Result<ExitCode> {
    let (client, _) = raftcert::substrate::kube::connect(Some(kubeconfig))
        .await
        .map_err(|e| bad(e.to_string()))?;
    let deleted = raftcert::substrate::kube::delete_leftover_namespaces(&client)
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

pub async fn gc(run: Option<String>, images: bool) -> anyhow::Result<ExitCode> {
    use raftcert::substrate::docker;
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
