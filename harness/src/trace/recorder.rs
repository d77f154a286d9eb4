use super::{Event, EventKind, Trace};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a trace event: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}: empty trace")]
    Empty { path: PathBuf },
}

struct Inner {
    events: Vec<Event>,
    /// Written through, one whole line per write: a run killed with
    /// SIGKILL still leaves every event up to its last, and a live trace
    /// can be followed with `tail -f`.
    sink: Option<File>,
}

/// Records events with monotonic timestamps, streaming them to a file so a
/// crashed run still leaves its trace behind.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    /// A partition: each isolated member's `isolate` fault, then the cut.
    pub fn record_cut(&self, isolated: &[String], rest: &[String]) {
        for slot in isolated {
            self.record(EventKind::FaultInjected {
                fault: super::FaultKind::ISOLATE,
                slot: Some(slot.clone()),
            });
        }
        self.record(EventKind::NetworkCut {
            isolated: isolated.to_vec(),
            rest: rest.to_vec(),
        });
    }

    /// Waits for the write probes sent during a partition (slot, whether its
    /// side has quorum, outcome) and records each as it completes.
    pub async fn record_write_probes<E: std::fmt::Display + Send + 'static>(
        &self,
        mut probes: tokio::task::JoinSet<(String, bool, Result<(), E>)>,
    ) {
        while let Some(joined) = probes.join_next().await {
            if let Ok((slot, side_has_quorum, outcome)) = joined {
                self.record(EventKind::WriteProbe {
                    slot,
                    side_has_quorum,
                    ok: outcome.is_ok(),
                    error: outcome.err().map(|e| e.to_string()),
                });
            }
        }
    }

    pub fn to_file(path: &Path) -> Result<Self, TraceError> {
        let file = File::create(path).map_err(|source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::with_sink(Some(file)))
    }

    pub fn in_memory() -> Self {
        Self::with_sink(None)
    }

    fn with_sink(sink: Option<File>) -> Self {
        Recorder {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                sink,
            })),
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn record(&self, kind: EventKind) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Timestamp under the lock so seq and t_ms agree in order.
        let event = Event {
            seq: inner.events.len() as u64,
            t_ms: self.elapsed_ms(),
            kind,
        };
        if let Some(sink) = inner.sink.as_mut() {
            // A failing trace file must not abort the run; the in-memory copy
            // is still checked.
            if let Ok(mut line) = serde_json::to_string(&event) {
                line.push('\n');
                let _ = sink.write_all(line.as_bytes());
            }
        }
        inner.events.push(event);
    }

    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = inner.sink.as_mut() {
            let _ = sink.flush();
        }
    }

    /// How many events were recorded so far.
    pub fn recorded(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .len()
    }

    /// Whether an event recorded at or after position `from` matches.
    pub fn any_since(&self, from: usize, matches: impl Fn(&EventKind) -> bool) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .events
            .get(from..)
            .unwrap_or_default()
            .iter()
            .any(|e| matches(&e.kind))
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Trace {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Trace::new(inner.events.clone())
    }
}

/// Reads a `trace.jsonl` file written by [`Recorder`].
pub fn read_trace(path: &Path) -> Result<Trace, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut events = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).map_err(|source| TraceError::Parse {
            path: path.to_path_buf(),
            line: index + 1,
            source,
        })?;
        events.push(event);
    }
    if events.is_empty() {
        return Err(TraceError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Trace::new(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_on_disk_while_the_run_still_records() {
        let dir = crate::sys::TempDir::new("raftcert-trace-test").expect("temp dir");
        let path = dir.path().join("trace.jsonl");
        let recorder = Recorder::to_file(&path).expect("trace file");
        recorder.record(EventKind::NetworkHealed);
        recorder.record(EventKind::NetworkHealed);
        // Neither flushed nor dropped: what a SIGKILL would leave behind.
        let on_disk = read_trace(&path).expect("a whole trace");
        assert_eq!(on_disk.events.len(), 2);
        assert_eq!(on_disk.events[1].seq, 1);
        drop(recorder);
    }
}
