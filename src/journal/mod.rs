//! What a run leaves on disk, `.fleetup/runs/<run id>/`:
//!
//! - `run.json`: the inputs as resolved (playbook, inventories, extra vars with secrets
//!   redacted, the plan) and who ran it from where ([`RunRecord`]);
//! - `events.jsonl`: every event, as `--output json` prints it, written at once and
//!   fsync'd before every step's command and at every host's end ([`EventLog`]); read
//!   back by resume, `history` and `show` ([`read`]);
//! - `playbook.yml`: the playbook as it was (secrets' values hidden);
//! - `hosts/<host>.log`: every host's full output, flushed at every step boundary.
//!
//! A failed, interrupted or killed run loses nothing, and a run's directory is its own:
//! the process running it holds a lock on it, so two processes never write one journal.

mod log;
mod past_run;
pub mod read;
mod record;
mod summary;

pub use log::EventLog;
pub use record::RunRecord;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::secret::{RedactingStream, Redactor};

/// The directory of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
    /// What the hosts' logs hide (the run's secrets).
    redactor: Arc<Redactor>,
}

impl RunDir {
    /// Creates a new run directory under `state_dir/runs/`. The id sorts by start time and
    /// is unique even for runs started in the same second (the directory is created with
    /// `create_dir`, which fails if another run took the name).
    pub fn create(state_dir: &Path) -> io::Result<RunDir> {
        let runs = state_dir.join("runs");
        std::fs::create_dir_all(&runs)?;
        let stamp = crate::clock::rfc3339(jiff::Timestamp::now()).replace(['-', ':'], "");
        for attempt in 0..1000u32 {
            let id = format!("{}-{:03}", stamp.trim_end_matches('Z'), attempt);
            let path = runs.join(&id);
            // Private: the hosts' logs hold what they printed, their own secrets included
            // where a step is not `no_log`.
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    std::fs::create_dir(path.join("hosts"))?;
                    return Ok(RunDir {
                        id,
                        path,
                        redactor: Arc::default(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(
            "more than 1000 runs started in one second",
        ))
    }

    /// The runs recorded under `state_dir` (those with a `run.json`), oldest first.
    pub fn list(state_dir: &Path) -> io::Result<Vec<RunDir>> {
        let runs = state_dir.join("runs");
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.join("run.json").is_file() {
                let id = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                found.push(RunDir {
                    id,
                    path,
                    redactor: Arc::default(),
                });
            }
        }
        // Ids start with the start time, so their order is the runs' order.
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    /// The run `id` under `state_dir`, or the newest one for `last`.
    pub fn find(state_dir: &Path, id: &str) -> Result<RunDir, String> {
        let runs = RunDir::list(state_dir)
            .map_err(|e| format!("cannot read {}: {e}", state_dir.join("runs").display()))?;
        let found = if id == "last" {
            runs.into_iter().next_back()
        } else {
            runs.into_iter().find(|r| r.id == id)
        };
        found.ok_or_else(|| {
            let what = if id == "last" {
                "no run is recorded".to_string()
            } else {
                format!("no run `{id}` is recorded")
            };
            format!(
                "{what} in {}; `fleetup history` lists the runs (pass -i INVENTORY or --state-dir DIR to look elsewhere)",
                state_dir.display()
            )
        })
    }

    /// The run's secrets are hidden in what is written under it (host logs, events).
    pub fn redacting(self, redactor: Arc<Redactor>) -> RunDir {
        RunDir { redactor, ..self }
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    pub fn events_path(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }

    /// Takes the run's directory for this process, for as long as the returned guard
    /// lives (an advisory lock, released by the kernel even on `kill -9`). `None` when
    /// another live process holds it.
    pub fn claim(&self) -> io::Result<Option<Claim>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join(".running"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Claim { _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// Whether a live process is running this run now.
    pub fn is_running(&self) -> bool {
        matches!(self.claim(), Ok(None))
    }

    pub fn host_log_path(&self, host: &str) -> PathBuf {
        self.path
            .join("hosts")
            .join(format!("{}.log", file_name(host)))
    }

    pub fn host_log(&self, host: &str) -> io::Result<HostLog> {
        let path = self.host_log_path(host);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(HostLog {
            out: BufWriter::with_capacity(HOST_LOG_BUFFER, file),
            path,
            redactor: self.redactor.clone(),
            output: RedactingStream::default(),
            hiding: Hiding::No,
        })
    }
}

/// A run's directory, held by the process running it.
#[derive(Debug)]
pub struct Claim {
    _lock: Flock<File>,
}

/// Every run of the journal as the promotion gate and the estimates read it, oldest first.
/// A run whose files cannot be read is left out: it cannot be evidence of anything.
pub fn past_runs(state_dir: &Path) -> io::Result<Vec<read::PastRun>> {
    let mut runs = Vec::new();
    for dir in RunDir::list(state_dir)? {
        let Ok(record) = RunRecord::read(&dir.path) else {
            continue;
        };
        let Ok((events, _)) = read::read_events(&dir.events_path()) else {
            continue;
        };
        runs.push(read::PastRun::new(
            &dir.id,
            &record.playbook_name,
            record.target.clone(),
            &events,
        ));
    }
    Ok(runs)
}

/// Writes a whole file or leaves the old one: a reader never sees half of it.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Makes a file's creation or renaming in `dir` durable (a power cut, not only a kill).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A host name as a file name: anything but letters, digits, `.`, `_` and `-` becomes `_`.
fn file_name(host: &str) -> String {
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

/// A host log's buffer. Every host in flight holds one (std's 8 kB was 1.6 MB of `fleetup
/// status`'s peak at 200 hosts at once); it gathers a step's small writes, and output comes
/// in chunks of up to a packet (8 kB), which a smaller buffer passes straight through as
/// the larger one did.
const HOST_LOG_BUFFER: usize = 1 << 10;

/// One host's output log: each step's command, its output as it arrived, and how it
/// ended, with the run's secrets hidden.
pub struct HostLog {
    out: BufWriter<File>,
    pub path: PathBuf,
    redactor: Arc<Redactor>,
    output: RedactingStream,
    /// The step under way is `no_log`: its command and output are not written.
    hiding: Hiding,
}

#[derive(Clone, Copy, PartialEq)]
enum Hiding {
    No,
    Yes,
    /// The line that says the output is hidden is written.
    Said,
}

impl HostLog {
    /// A step's start; `no_log`: its command and output are left out (the step is named,
    /// and how it ended is written).
    pub fn step_started(&mut self, label: &str, command: &str, attempt: u32, no_log: bool) {
        let retry = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        self.hiding = if no_log { Hiding::Yes } else { Hiding::No };
        let command = match no_log {
            true => std::borrow::Cow::Borrowed("(hidden: no_log)"),
            false => self.redactor.text(command.trim_end()),
        };
        let _ = writeln!(self.out, "=== {label}{retry}\n$ {command}");
    }

    pub fn output(&mut self, data: &[u8]) {
        match self.hiding {
            Hiding::No => {}
            Hiding::Yes => {
                let _ = write!(self.out, "(output hidden: no_log)");
                self.hiding = Hiding::Said;
                return;
            }
            Hiding::Said => return,
        }
        let out = &mut self.out;
        self.output.push(&self.redactor, data, &mut |b| {
            let _ = out.write_all(b);
        });
    }

    pub fn step_finished(&mut self, how: &str, duration: Duration) {
        let out = &mut self.out;
        self.output.flush(&self.redactor, &mut |b| {
            let _ = out.write_all(b);
        });
        self.hiding = Hiding::No;
        let how = self.redactor.text(how);
        let _ = writeln!(self.out, "\n--- {how} in {:.1}s", duration.as_secs_f64());
        let _ = self.out.flush();
    }

    pub fn note(&mut self, text: &str) {
        let text = self.redactor.text(text);
        let _ = writeln!(self.out, "--- {text}");
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_are_unique_and_host_logs_safe() {
        let state = tempfile::tempdir().unwrap();
        let a = RunDir::create(state.path()).unwrap();
        let b = RunDir::create(state.path()).unwrap();
        assert_ne!(a.id, b.id);
        assert!(a.path.join("hosts").is_dir());
        assert_eq!(
            a.host_log_path("../etc/passwd").file_name().unwrap(),
            "_.._etc_passwd.log"
        );
        let mut log = a.host_log("web1").unwrap();
        log.step_started("[1/2] read", "cat x", 1, false);
        log.output(b"hello");
        log.step_finished("rc 0", Duration::from_millis(1200));
        let text = std::fs::read_to_string(a.host_log_path("web1")).unwrap();
        assert_eq!(text, "=== [1/2] read\n$ cat x\nhello\n--- rc 0 in 1.2s\n");
    }

    #[test]
    fn host_logs_hide_secrets_in_commands_output_and_notes() {
        let state = tempfile::tempdir().unwrap();
        let redactor = Redactor::new(["hunter2".to_string()]);
        let dir = RunDir::create(state.path())
            .unwrap()
            .redacting(Arc::new(redactor));
        let mut log = dir.host_log("web1").unwrap();
        log.step_started("[1/1] login", "login --password hunter2", 1, false);
        // Split across chunks, and at the very end of the output.
        log.output(b"bad password hun");
        log.output(b"ter2, try hunter");
        log.output(b"2");
        log.step_finished("failed: hunter2 refused", Duration::from_secs(1));
        log.note("hunter2");
        let text = std::fs::read_to_string(dir.host_log_path("web1")).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            text,
            "=== [1/1] login\n$ login --password ********\nbad password ********, try ********\n--- failed: ******** refused in 1.0s\n--- ********\n"
        );
    }

    /// `no_log`: the step is named and its end written; its command and output are not,
    /// and the next step is written in full again.
    #[test]
    fn a_no_log_steps_command_and_output_stay_out_of_a_private_run_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        let state = tempfile::tempdir().unwrap();
        let dir = RunDir::create(state.path()).unwrap();
        let mode = std::fs::metadata(&dir.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "only its owner reads a run's logs");
        let mut log = dir.host_log("web1").unwrap();
        log.step_started(
            "[1/2] discover",
            "echo DB_URI=postgresql://u:pw@db",
            1,
            true,
        );
        log.output(b"DB_URI=postgresql://u:pw@db\n");
        log.output(b"FLASK_SECRET=s3cret\n");
        log.step_finished("rc 0", Duration::from_millis(100));
        log.step_started("[2/2] read", "cat x", 1, false);
        log.output(b"hello");
        log.step_finished("rc 0", Duration::from_millis(100));
        let text = std::fs::read_to_string(dir.host_log_path("web1")).unwrap();
        assert_eq!(
            text,
            "=== [1/2] discover\n$ (hidden: no_log)\n(output hidden: no_log)\n--- rc 0 in 0.1s\n\
             === [2/2] read\n$ cat x\nhello\n--- rc 0 in 0.1s\n"
        );
    }
}
