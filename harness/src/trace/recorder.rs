use super::{Event, EventKind, Trace};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
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
    sink: Option<BufWriter<File>>,
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
                fault: super::FaultKind::Isolate,
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
        Ok(Self::with_sink(Some(BufWriter::new(file))))
    }

    pub fn in_memory() -> Self {
        Self::with_sink(None)
    }

    fn with_sink(sink: Option<BufWriter<File>>) -> Self {
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
            if let Ok(line) = serde_json::to_string(&event) {
                let _ = writeln!(sink, "{line}");
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
