//! Inventory scripts, run as Ansible's `script` plugin runs them: an executable given to
//! `-i` is run with `--list`, its JSON read in the `--list` form (see [`super::list`]),
//! and, when it prints no `_meta`, run again with `--host H` for each host's variables.
//! Unlike Ansible, a script that hangs is stopped after a timeout; a script that fails,
//! hangs or prints something other than JSON is an error that names it, with its stderr.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::list::{checked_vars, read_list};
use super::Inventory;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::yaml::{Document, MAX_INPUT_BYTES};

/// How long a script may run, unless `FLEETUP_INVENTORY_SCRIPT_TIMEOUT` (seconds) says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable that sets the timeout.
pub const TIMEOUT_VAR: &str = "FLEETUP_INVENTORY_SCRIPT_TIMEOUT";
/// The most of a script's stderr kept for the message.
const STDERR_KEPT: u64 = 8 << 10;

/// Whether `path` is a file to run rather than to read: an executable file.
pub(super) fn is_script(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the inventory script at `path` and reads what it prints.
pub(super) fn run_script(path: &Path) -> Result<Inventory, Diagnostics> {
    let timeout = timeout()?;
    let listed = read_list(&output(path, &["--list"], timeout)?)?;
    let mut inventory = listed.inventory;
    if listed.has_meta {
        return Ok(inventory);
    }
    let hosts: Vec<String> = inventory.host_names().map(String::from).collect();
    let mut errors = Vec::new();
    for host in hosts {
        let doc = output(path, &["--host", &host], timeout)?;
        if doc.value.is_null() {
            continue;
        }
        match checked_vars(&doc, "", &doc.value, &mut errors) {
            Some(vars) => inventory.set_host_vars(&host, vars),
            None => continue,
        }
    }
    if errors.is_empty() {
        Ok(inventory)
    } else {
        Err(Diagnostics(errors))
    }
}

fn timeout() -> Result<Duration, Diagnostic> {
    match std::env::var(TIMEOUT_VAR) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(s) => s
            .parse::<f64>()
            .ok()
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                Diagnostic::new(
                    Path::new("<environment>"),
                    TIMEOUT_VAR,
                    format!("`{s}` is not a number of seconds"),
                )
            }),
    }
}

/// Runs `path ARGS` and parses its stdout as JSON; the document is named after the
/// command, so that every message says which run of which script printed what.
fn output(path: &Path, args: &[&str], timeout: Duration) -> Result<Document, Diagnostic> {
    let shown = format!("{} {}", path.display(), args.join(" "));
    let named = Path::new(&shown);
    let fail = |message: String, stderr: &str| {
        let d = Diagnostic::new(named, "", message);
        match stderr.trim() {
            "" => d,
            err => d.hint(format!("its stderr: {err}")),
        }
    };
    let ran = run(path, args, timeout).map_err(|m| fail(m, ""))?;
    match ran.status {
        Ended::Timeout => {
            return Err(fail(
                format!(
                    "inventory script did not finish in {}s: stopped",
                    timeout.as_secs_f64()
                ),
                &ran.stderr,
            ))
        }
        Ended::Failed(code) => {
            return Err(fail(
                format!("inventory script failed ({code})"),
                &ran.stderr,
            ))
        }
        Ended::Ok => {}
    }
    let text = String::from_utf8(ran.stdout).map_err(|_| {
        fail(
            "inventory script printed something that is not UTF-8".into(),
            &ran.stderr,
        )
    })?;
    let not_json = |why: String| {
        fail(
            format!("inventory script printed no JSON object: {why}"),
            &ran.stderr,
        )
    };
    if args[0] == "--host" && text.trim().is_empty() {
        return Ok(Document::named(&shown));
    }
    let parsed: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| not_json(e.to_string()))?;
    if !parsed.is_object() {
        return Err(not_json(format!("found {}", kind(&parsed))));
    }
    Document::parse(named, &text).map_err(|d| not_json(d.message))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Null => "null",
        _ => "a scalar",
    }
}

/// How long a script that is still open for writing somewhere is waited for.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// Spawns, waiting out "Text file busy" (at most [`BUSY_WAIT`], and not past `deadline`):
/// a script just written is briefly still open for writing in any process forked meanwhile
/// (by a tool that generated it, or a test), and exec refuses it until that process execs
/// or exits.
fn spawn(command: &mut Command, deadline: Instant) -> std::io::Result<std::process::Child> {
    let deadline = deadline.min(Instant::now() + BUSY_WAIT);
    loop {
        match command.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            spawned => return spawned,
        }
    }
}

enum Ended {
    Ok,
    Failed(String),
    Timeout,
}

struct Ran {
    status: Ended,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs the script in its own process group, so that a timeout stops whatever it started
/// too (a child holding the pipes open would otherwise keep the reads waiting).
fn run(path: &Path, args: &[&str], timeout: Duration) -> Result<Ran, String> {
    // `hosts.py` alone would be looked for on the PATH.
    let path =
        std::path::absolute(path).map_err(|e| format!("cannot run the inventory script: {e}"))?;
    let mut command = Command::new(path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The script's time starts now: a wait for its file to be free counts.
    let deadline = Instant::now() + timeout;
    let mut child = spawn(&mut command, deadline)
        .map_err(|e| format!("cannot run the inventory script: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .map(|s| std::thread::spawn(move || read_some(s, MAX_INPUT_BYTES)));
    let stderr = child
        .stderr
        .take()
        .map(|s| std::thread::spawn(move || read_some(s, STDERR_KEPT)));
    let group = i32::try_from(child.id()).ok().map(Pid::from_raw);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break Ended::Ok,
            Ok(Some(status)) => break Ended::Failed(status.to_string()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                let _ = child.wait();
                break Ended::Timeout;
            }
        }
    };
    // What the script left running in the background would hold the pipes open, and the
    // reads below would wait for it: the script is done, so its group goes too.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let stdout = join(stdout);
    let stderr = String::from_utf8_lossy(&join(stderr)).into_owned();
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}

/// Reads up to `limit` bytes, then drains the rest so the writer never blocks.
fn read_some(mut from: impl Read, limit: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = (&mut from).take(limit).read_to_end(&mut kept);
    let _ = std::io::copy(&mut from, &mut std::io::sink());
    kept
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    /// A script written to `dir` and still open for writing; None where the kernel runs a
    /// file open for writing, with nothing to wait out.
    fn still_open(dir: &Path) -> Option<(std::path::PathBuf, std::fs::File)> {
        let path = dir.join("inventory.sh");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .unwrap();
        file.write_all(b"#!/bin/sh\necho '{\"_meta\": {\"hostvars\": {}}, \"web\": [\"w1\"]}'\n")
            .unwrap();
        match Command::new(&path).stdout(Stdio::null()).spawn() {
            Err(busy) => assert_eq!(busy.kind(), std::io::ErrorKind::ExecutableFileBusy),
            Ok(mut ran) => {
                let _ = ran.wait();
                eprintln!("skipped: this kernel runs a file open for writing");
                return None;
            }
        }
        Some((path, file))
    }

    #[test]
    fn the_wait_for_a_busy_script_counts_against_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let Some((path, _open)) = still_open(dir.path()) else {
            return;
        };
        let started = Instant::now();
        let ran = run(&path, &["--list"], Duration::from_millis(100));
        assert!(ran.is_err(), "the file was busy all along");
        assert!(started.elapsed() < BUSY_WAIT, "{:?}", started.elapsed());
    }

    #[test]
    fn a_script_still_open_for_writing_is_run_once_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let Some((path, file)) = still_open(dir.path()) else {
            return;
        };
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(file);
        });
        let inventory = run_script(&path).unwrap();
        writer.join().unwrap();
        assert_eq!(inventory.host_names().collect::<Vec<_>>(), ["w1"]);
    }
}
