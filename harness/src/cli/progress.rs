//! Live progress: bars on a terminal, one line per finished run elsewhere.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use raftcert::matrix::{Listener, MatrixEvent};
use raftcert::report::RunStatus;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// Live progress: bars on a terminal, one line per finished run elsewhere.
pub fn progress_listener(total: u64) -> Listener {
    let terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if !terminal {
        overall.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let active: Arc<Mutex<BTreeMap<String, ProgressBar>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0u64));
    Arc::new(move |event| match event {
        MatrixEvent::Started { label } => {
            if terminal {
                let bar = multi.insert_before(&overall, ProgressBar::new_spinner());
                bar.set_message(label.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                active
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(label.to_string(), bar);
            }
        }
        MatrixEvent::Step { label, step } => {
            if let Some(bar) = active.lock().unwrap_or_else(|p| p.into_inner()).get(label) {
                bar.set_message(format!("{label}: {step}"));
            }
        }
        MatrixEvent::Finished { label, result } => {
            if let Some(bar) = active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(label)
            {
                bar.finish_and_clear();
            }
            let verdict = match result.status {
                RunStatus::Pass => "pass".to_string(),
                RunStatus::Fail => {
                    *failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    let bug = result
                        .known_finding
                        .as_ref()
                        .map(|f| format!(", known engine bug {f}"))
                        .unwrap_or_default();
                    format!("FAIL {}{bug}", result.violated_invariants().join(","))
                }
                RunStatus::Error => {
                    *failures.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    format!("ERROR {}", result.error.as_deref().unwrap_or(""))
                }
            };
            let line = format!(
                "{label}: {verdict} ({:.1}s)",
                result.duration_ms as f64 / 1000.0
            );
            if terminal {
                let _ = multi.println(line);
            } else {
                eprintln!("{line}");
            }
            overall.inc(1);
            let failed = *failures.lock().unwrap_or_else(|p| p.into_inner());
            overall.set_message(if failed > 0 {
                format!("({failed} not passing)")
            } else {
                String::new()
            });
        }
    })
}
