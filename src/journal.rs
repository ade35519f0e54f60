//! What a run leaves on disk: `.fleetup/runs/<run id>/`, with every host's full output in
//! `hosts/<host>.log`. A failed or interrupted run loses nothing: the logs are written as
//! the output arrives and flushed at every step boundary.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The directory of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a new run directory under `state_dir/runs/`. The id sorts by start time and
    /// is unique even for runs started in the same second (the directory is created with
    /// `create_dir`, which fails if another run took the name).
    pub fn create(state_dir: &Path) -> io::Result<RunDir> {
        let runs = state_dir.join("runs");
        std::fs::create_dir_all(&runs)?;
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        for attempt in 0..1000u32 {
            let id = format!("{}-{:03}", stamp.trim_end_matches('Z'), attempt);
            let path = runs.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::create_dir(path.join("hosts"))?;
                    return Ok(RunDir { id, path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(
            "more than 1000 runs started in one second",
        ))
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
            out: BufWriter::new(file),
            path,
        })
    }
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

/// One host's output log: each step's command, its output as it arrived, and how it ended.
pub struct HostLog {
    out: BufWriter<File>,
    pub path: PathBuf,
}

impl HostLog {
    pub fn step_started(&mut self, label: &str, command: &str, attempt: u32) {
        let retry = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        let _ = writeln!(self.out, "=== {label}{retry}\n$ {}", command.trim_end());
    }

    pub fn output(&mut self, data: &[u8]) {
        let _ = self.out.write_all(data);
    }

    pub fn step_finished(&mut self, how: &str, duration: Duration) {
        let _ = writeln!(self.out, "\n--- {how} in {:.1}s", duration.as_secs_f64());
        let _ = self.out.flush();
    }

    pub fn note(&mut self, text: &str) {
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
        log.step_started("[1/2] read", "cat x", 1);
        log.output(b"hello");
        log.step_finished("rc 0", Duration::from_millis(1200));
        let text = std::fs::read_to_string(a.host_log_path("web1")).unwrap();
        assert_eq!(text, "=== [1/2] read\n$ cat x\nhello\n--- rc 0 in 1.2s\n");
    }
}
