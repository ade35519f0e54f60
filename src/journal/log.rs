//! The run's event log, `events.jsonl`: every event as one JSON line, appended by one
//! writer thread. Lines are written in groups: whatever arrived while the previous group
//! was written goes with the next one. A group holding a line someone waits for (a step
//! about to run a command, a host's end) is fsync'd before they go on, with every line
//! before it; the others are written at once (a killed process loses none of them) and
//! reach the disk with the next such group, or when the log closes. So 200 hosts crossing
//! step boundaries at once cost a few fsyncs, not 200, and none is spent on a group that
//! nobody waits for.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::events::Stamped;

struct Entry {
    line: String,
    written: Option<oneshot::Sender<()>>,
}

/// A handle on the event log; clones share the one writer thread.
#[derive(Clone)]
pub struct EventLog {
    tx: mpsc::Sender<Entry>,
    /// The first write error, if any: reported once the run ends.
    error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens `path` for appending (creating it). A partial last line, left by a process
    /// killed in the middle of a write, is cut off first so that the next line starts on
    /// a line of its own.
    pub fn open(path: &Path) -> io::Result<EventLog> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        cut_partial_line(&mut file)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            super::sync_dir(dir)?;
        }
        let (tx, rx) = mpsc::channel::<Entry>();
        let error = Arc::new(Mutex::new(None));
        let seen = error.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || write_groups(file, rx, seen))?;
        Ok(EventLog { tx, error })
    }

    /// Appends an event; it reaches the disk with the next group.
    pub fn append(&self, event: &Stamped) {
        self.send(event, None);
    }

    /// Appends an event and resolves once it is on disk (or could not be written).
    pub fn append_durable(&self, event: &Stamped) -> impl std::future::Future<Output = ()> {
        let (done, written) = oneshot::channel();
        self.send(event, Some(done));
        async move {
            let _ = written.await;
        }
    }

    fn send(&self, event: &Stamped, written: Option<oneshot::Sender<()>>) {
        match serde_json::to_string(event) {
            Ok(line) => {
                let _ = self.tx.send(Entry { line, written });
            }
            Err(e) => self.failed(format!("cannot encode an event: {e}")),
        }
    }

    fn failed(&self, message: String) {
        if let Ok(mut first) = self.error.lock() {
            first.get_or_insert(message);
        }
    }

    /// The first error the log met, to be told to the operator.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

fn write_groups(mut file: File, rx: mpsc::Receiver<Entry>, error: Arc<Mutex<Option<String>>>) {
    let mut buf = Vec::with_capacity(64 << 10);
    let mut waiting = Vec::new();
    let mut unsynced = false;
    let failed = |e: io::Error| {
        if let Ok(mut first) = error.lock() {
            first.get_or_insert(format!("cannot write the journal: {e}"));
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(entry) = next {
            buf.extend_from_slice(entry.line.as_bytes());
            buf.push(b'\n');
            waiting.extend(entry.written);
            next = rx.try_recv().ok();
        }
        // One write per group: a kill -9 leaves at most the group's last line partial.
        let durable = !waiting.is_empty();
        let result = file.write_all(&buf).and_then(|()| match durable {
            true => file.sync_data(),
            false => Ok(()),
        });
        unsynced = !durable;
        if let Err(e) = result {
            failed(e);
        }
        buf.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    if unsynced {
        if let Err(e) = file.sync_data() {
            failed(e);
        }
    }
}

/// Truncates the file after its last newline.
fn cut_partial_line(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Lines are short (an event), so the last newline is in the last few KiB... unless a
    // huge line was cut: then read back further, a block at a time.
    let mut end = len;
    let mut block = vec![0u8; 8192];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep != len {
                file.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    file.set_len(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn event(n: usize) -> Stamped {
        Stamped {
            at_ms: n as u64,
            event: Event::Aborting,
        }
    }

    #[tokio::test]
    async fn durable_lines_are_on_disk_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path).unwrap();
        for n in 0..100 {
            log.append(&event(n));
        }
        log.append_durable(&event(100)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 101);
        assert!(text.ends_with("{\"at_ms\":100,\"event\":\"aborting\"}\n"));
        assert!(log.error().is_none());
    }

    #[tokio::test]
    async fn a_partial_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(
            &path,
            "{\"at_ms\":1,\"event\":\"aborting\"}\n{\"at_ms\":2,\"ev",
        )
        .unwrap();
        let log = EventLog::open(&path).unwrap();
        log.append_durable(&event(3)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"at_ms\":1,\"event\":\"aborting\"}\n{\"at_ms\":3,\"event\":\"aborting\"}\n"
        );
        // A file that is one partial line only is emptied.
        std::fs::write(&path, "{\"at_ms\":1").unwrap();
        EventLog::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
