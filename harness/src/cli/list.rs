//! `raftcert list` and `raftcert engines`.

use super::{bad, parse_engines, provision_all};
use raftcert::engine::EngineKind;
use raftcert::engine::provision;
use raftcert::invariants;
use raftcert::scenario::model::Suite;
use raftcert::subject::deployer::strategies;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn list() -> anyhow::Result<ExitCode> {
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
    println!("Faults (step keys; substrates that lack one list its scenarios as not covered):");
    for fault in raftcert::faults::registry() {
        println!("  {:<32} {}", fault.name(), fault.summary());
    }
    println!("Strategies:");
    for s in strategies::registry() {
        println!("  {:<32} {}", s.name, s.summary);
    }
    println!("Engines:");
    for kind in EngineKind::ALL {
        for v in provision::default_versions(kind) {
            let state = match provision::installed(kind, v) {
                Some(i) => format!("installed ({})", i.source),
                None if kind == EngineKind::Pd => {
                    format!("not built yet (raftcert engines --provision {kind}@{v})")
                }
                None => "not provisioned yet (provisioned on first use)".to_string(),
            };
            println!("  {:<14} {state}", format!("{kind}@{v}"));
        }
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
    use raftcert::substrate::kube::profile::{PROFILE_FILE, Profile};
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

pub async fn engines(to_provision: Vec<String>) -> anyhow::Result<ExitCode> {
    if !to_provision.is_empty() {
        let wanted = parse_engines(&to_provision)?;
        provision_all(&wanted).await?;
    }
    println!("cache: {}", provision::cache_dir().display());
    for kind in EngineKind::ALL {
        let installed = provision::list(kind);
        for v in provision::default_versions(kind) {
            if !installed.iter().any(|i| i.version == *v) {
                let sources: Vec<String> = provision::known_sources(kind, v)
                    .iter()
                    .map(|s| s.describe(v))
                    .collect();
                println!(
                    "{:<16} available   from {}",
                    format!("{kind}@{v}"),
                    sources.join(" or ")
                );
            }
        }
        for i in installed {
            println!(
                "{:<16} installed   {} ({})",
                format!("{kind}@{}", i.version),
                i.server.display(),
                i.source
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
