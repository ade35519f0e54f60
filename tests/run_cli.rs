//! `fleetup run` and `fleetup exec` as an operator runs them: the built binary against the
//! test fleet, with strict host key checking, read through a pipe (so the plain view, or JSON
//! lines with `--output json`), signalled like a terminal would. What really happened on the
//! hosts is read from their own command logs.
//!
//! The engine's logic (batch order, forks, halts, retries, timeouts, rollback) is proven in
//! `tests/engine.rs`; these tests prove the edge: signals, views, exit codes, exec's blocks,
//! and refusing unknown host keys.
//!
//! The shared helpers live here; the tests are in `tests/run_cli/`, one file per concern.

mod fleet;

#[path = "run_cli/exec.rs"]
mod exec;
#[path = "run_cli/host_keys.rs"]
mod host_keys;
#[path = "run_cli/signals.rs"]
mod signals;
#[path = "run_cli/views.rs"]
mod views;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use fleet::{CommandRecord, Fleet, HostSpec, Spec};

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");
const UPGRADE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/simplelogin-upgrade.yml"
);

// ---------------------------------------------------------------------------------------
// Helpers: run fleetup, read its stdout line by line as it comes, normalise plain lines.
// ---------------------------------------------------------------------------------------

/// A running `fleetup`, its stdout read line by line on a thread so that a test can wait
/// for a line with a deadline, and its stderr collected whole.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// How a `fleetup` process ended.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
    /// From the moment `finish` was called.
    waited: Duration,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
    fn text(&self) -> String {
        self.stdout.join("\n")
    }
    fn context(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.text(),
            self.stderr
        )
    }
}

fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(FLEETUP)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fleetup binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running {
        child,
        lines,
        seen: Vec::new(),
        stderr,
    }
}

impl Running {
    /// Reads stdout until a line satisfies `pred`, and returns it; panics after `timeout`.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "no line {what} within {timeout:?}; stdout so far:\n{}",
                        self.seen.join("\n")
                    );
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "fleetup closed stdout before a line {what}; stdout:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with the pid of our own child, which we have not reaped yet.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Waits for the process to exit (killing it after `timeout`, and failing), then returns
    /// everything it wrote.
    fn finish(mut self, timeout: Duration) -> Finished {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
                    self.seen.push(l);
                }
                panic!(
                    "fleetup still running after {timeout:?}; stdout:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let waited = start.elapsed();
        // The reader ends at EOF; a grandchild holding the pipe must not hang the test.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        Finished {
            status,
            stdout: self.seen,
            stderr: self.stderr.join().unwrap_or_default(),
            waited,
        }
    }
}

/// `fleetup ARGS...` to its end.
fn fleetup(args: &[&str]) -> Finished {
    spawn(args).finish(Duration::from_secs(60))
}

/// Writes a playbook into the fleet's temp dir.
fn playbook(fleet: &Fleet, name: &str, text: &str) -> PathBuf {
    let p = fleet.tmp().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `run -i INV PLAYBOOK --known-hosts KH --yes --state-dir <tmp>/state` and `extra`.
fn run_args(fleet: &Fleet, playbook: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "-i",
        s(&fleet.inventory_path()),
        s(playbook),
        "--known-hosts",
        s(&fleet.known_hosts_path()),
        "--yes",
        "--state-dir",
        s(&state_dir(fleet)),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn state_dir(fleet: &Fleet) -> PathBuf {
    fleet.tmp().join("state")
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn sessions(fleet: &Fleet, host: &str) -> Vec<CommandRecord> {
    fleet
        .commands(host)
        .into_iter()
        .filter(|c| c.kind == "session")
        .collect()
}

/// `2026-11-25T04:31:00Z ` at the start of a plain line, removed.
fn strip_timestamp(line: &str) -> &str {
    let b = line.as_bytes();
    let is_ts = b.len() > 21
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && b[20] == b' '
        && b[..4].iter().all(u8::is_ascii_digit);
    if is_ts {
        &line[21..]
    } else {
        line
    }
}

/// Durations (`0.3s`, `12ms`, `1m02s`) replaced by `<T>`, so that lines compare across runs.
fn mask_durations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_alphanumeric();
        if boundary && chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let mut k = j;
            if k < chars.len() && chars[k] == '.' {
                k += 1;
                while k < chars.len() && chars[k].is_ascii_digit() {
                    k += 1;
                }
            }
            let rest: String = chars[k..].iter().take(2).collect();
            let unit = if rest == "ms" {
                Some(2)
            } else if rest.starts_with('s') && k > j {
                Some(1)
            } else if rest.starts_with('m')
                && chars.get(k + 1).is_some_and(char::is_ascii_digit)
                && k == j
            {
                // 1m02s
                let mut m = k + 1;
                while m < chars.len() && chars[m].is_ascii_digit() {
                    m += 1;
                }
                (chars.get(m) == Some(&'s')).then_some(m + 1 - k)
            } else {
                None
            };
            let end_ok = |e: usize| e >= chars.len() || !chars[e].is_alphanumeric();
            if let Some(u) = unit {
                if end_ok(k + u) {
                    out.push_str("<T>");
                    i = k + u;
                    continue;
                }
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[test]
fn masking_durations() {
    assert_eq!(
        mask_durations("p-01: ok (1 step changed, 0.3s) in 12ms 1m02s, p-10 rc 0 v4.66.1"),
        "p-01: ok (1 step changed, <T>) in <T> <T>, p-10 rc 0 v4.66.1"
    );
    assert_eq!(
        strip_timestamp("2026-11-25T04:31:00Z batch 1/3: started"),
        "batch 1/3: started"
    );
}

/// A fleet of `n` hosts `p-01`.. in `production` (which the fleet's inventory puts under
/// `simplelogin`, the shipped playbook's pattern), the first a canary when `canary`.
fn fleet_of(n: usize, canary: bool) -> Fleet {
    let mut spec = Spec::new();
    for i in 1..=n {
        let mut h = HostSpec::new(&format!("p-{i:02}"), "production", "v4.65.0");
        if canary && i == 1 {
            h = h.canary();
        }
        spec = spec.host(h);
    }
    Fleet::start(spec)
}

// ---------------------------------------------------------------------------------------
// Shared by more than one part: a quick playbook, and `fleetup exec`'s arguments.
// ---------------------------------------------------------------------------------------

const TWO_STEPS: &str = "\
name: two steps
hosts: production
steps:
  - name: greet
    shell: echo hello from {{ inventory_hostname }}
  - name: check disk
    shell: echo disk ok
";

fn exec_args<'a>(fleet: &'a Fleet, known_hosts: &'a Path, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "exec",
        "-i",
        s(&fleet.inventory_path()),
        "production",
        "--known-hosts",
        s(known_hosts),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}
