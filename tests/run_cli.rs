//! `fleetup run` and `fleetup exec` as an operator runs them: the built binary against the
//! test fleet, with strict host key checking, read through a pipe (so the plain view, or JSON
//! lines with `--output json`), signalled like a terminal would. What really happened on the
//! hosts is read from their own command logs.
//!
//! The engine's logic (batch order, forks, halts, retries, timeouts, rollback) is proven in
//! `tests/engine.rs`; these tests prove the edge: signals, views, exit codes, exec's blocks,
//! and refusing unknown host keys.

mod fleet;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleet::{processes_of_host, rule, CommandRecord, Fleet, HostSpec, Spec};
use serde_json::Value;

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

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
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

const SLOW: &str = "\
name: slow
hosts: production
steps:
  - name: first
    shell: sleep 1
  - name: second
    shell: sleep 1
";

// ---------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------

/// One SIGINT or SIGTERM while the first batch runs: the hosts in flight finish every step,
/// nothing else starts, the run says it is stopping, the recap names the hosts never
/// started, and the exit code is 99.
fn first_signal_lets_hosts_in_flight_finish(sig: libc::c_int) {
    let fleet = fleet_of(6, false);
    let pb = playbook(&fleet, "slow.yml", SLOW);
    // Batch 1: p-01..p-04 with 2 at once (p-03 and p-04 wait their turn); batch 2: p-05, p-06.
    let args = run_args(
        &fleet,
        &pb,
        &["--canary", "none", "--serial", "4", "--forks", "2"],
    );
    let mut run = spawn(&strs(&args));
    run.wait_for("for a started step", Duration::from_secs(20), |l| {
        l.contains("[1/2] first: started")
    });
    // Let the other host of the pair reach its first step too, if it is going to.
    std::thread::sleep(Duration::from_millis(200));
    let signalled_at = now();
    run.signal(sig);
    let out = run.finish(Duration::from_secs(20));
    let text = out.text();
    assert_eq!(out.code(), Some(99), "{}", out.context());

    let stopping = out
        .stdout
        .iter()
        .position(|l| l.contains("STOPPING: interrupted by the operator"))
        .unwrap_or_else(|| panic!("no STOPPING line\n{}", out.context()));
    // The hosts in flight are the ones announced before the signal was handled.
    let in_flight: Vec<String> = out.stdout[..stopping]
        .iter()
        .filter_map(|l| {
            let l = strip_timestamp(l);
            l.strip_suffix(": started (2 steps)").map(str::to_string)
        })
        .collect();
    assert_eq!(in_flight, ["p-01", "p-02"], "{}", out.context());
    for host in &in_flight {
        let ends: Vec<_> = sessions(&fleet, host)
            .into_iter()
            .filter(|c| c.ev == "end" && c.rc == Some(0))
            .collect();
        assert_eq!(ends.len(), 2, "{host} finished both steps: {ends:?}");
        assert!(
            ends.iter().any(|c| c.t > signalled_at),
            "{host}'s last step ended after the signal (it was not cut short)"
        );
        assert!(
            text.contains(&format!("{host}: ok (")),
            "{host} reported ok\n{text}"
        );
    }
    let never = ["p-03", "p-04", "p-05", "p-06"];
    for host in never {
        let late: Vec<_> = sessions(&fleet, host)
            .into_iter()
            .filter(|c| c.ev == "start" && c.t >= signalled_at)
            .collect();
        assert!(late.is_empty(), "{host} started after the signal: {late:?}");
        assert!(fleet.commands(host).is_empty(), "{host} was never started");
    }
    assert!(
        !text.contains("batch 2/2: started"),
        "no batch started after the signal\n{text}"
    );
    assert!(
        text.contains("run finished in")
            && text.contains("with exit code 99; 4 hosts never started"),
        "{text}"
    );
    let recap = &text[text.find("RECAP").expect("a recap")..];
    assert!(
        recap.contains("never started: p-03 p-04 p-05 p-06"),
        "{recap}"
    );
    assert!(recap.contains("2 ok, 4 not started"), "{recap}");
    assert!(
        recap.contains("halted after batch 1: interrupted by the operator"),
        "{recap}"
    );
}

#[test]
fn first_ctrl_c_lets_hosts_in_flight_finish_and_starts_nothing_new() {
    first_signal_lets_hosts_in_flight_finish(libc::SIGINT);
}

#[test]
fn sigterm_behaves_as_the_first_ctrl_c() {
    first_signal_lets_hosts_in_flight_finish(libc::SIGTERM);
}

#[test]
fn second_ctrl_c_aborts_promptly_and_leaves_no_remote_process() {
    let fleet = fleet_of(3, false);
    let pb = playbook(
        &fleet,
        "hang.yml",
        "name: hang\nhosts: production\nsteps:\n  - name: wait forever\n    shell: sleep 600\n  - name: never\n    shell: 'true'\n",
    );
    let args = run_args(&fleet, &pb, &["--canary", "none", "--forks", "3"]);
    let mut run = spawn(&strs(&args));
    // Every host's command is running on the host before the first Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(20);
    for h in fleet.hosts() {
        while !sessions(&fleet, &h.name).iter().any(|c| c.ev == "start") {
            assert!(
                Instant::now() < deadline,
                "{} never started its step",
                h.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    run.signal(libc::SIGINT);
    run.wait_for("STOPPING", Duration::from_secs(5), |l| {
        l.contains("STOPPING")
    });
    let aborted_at = Instant::now();
    run.signal(libc::SIGINT);
    let out = run.finish(Duration::from_secs(15));
    assert_eq!(out.code(), Some(99), "{}", out.context());
    assert!(
        aborted_at.elapsed() < Duration::from_secs(5) && out.waited < Duration::from_secs(5),
        "exited {:?} after the second Ctrl-C\n{}",
        out.waited,
        out.context()
    );
    let text = out.text();
    assert!(
        text.contains("ABORTING: terminating the upgrade commands in flight"),
        "{text}"
    );
    assert!(text.contains("RECAP"), "{text}");
    // The hosts' own session wrappers end their commands; give them a moment.
    let grace = Instant::now() + Duration::from_secs(5);
    for h in fleet.hosts() {
        loop {
            let left = processes_of_host(&h.host_dir);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < grace,
                "{} still runs processes {left:?} after the abort",
                h.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = sessions(&fleet, &h.name);
        assert!(
            log.iter().any(|c| c.ev == "end" && c.signal.is_some()),
            "{}'s sleep was ended by a signal: {log:?}",
            h.name
        );
        assert!(
            // The step's command is its last line (a marker line comes first); the kill
            // sent before the marker arrives ends in `; true` and is not a step.
            !log.iter()
                .any(|c| c.cmd.lines().last() == Some("true") && c.ev == "start"),
            "{} started no further step: {log:?}",
            h.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// Views
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

#[test]
fn plain_output_line_by_line() {
    let fleet = fleet_of(3, true);
    fleet.fault(
        "p-03",
        serde_json::json!({"match": "echo disk ok", "action": "fail", "rc": 3, "stderr": "disk full", "scope": "session"}),
    );
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let args = run_args(&fleet, &pb, &["--serial", "2", "--forks", "1"]);
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    assert!(
        !out.text().contains('\x1b'),
        "no escape codes:\n{}",
        out.text()
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "no escape codes:\n{}",
        out.stderr
    );

    let runs = state_dir(&fleet).join("runs");
    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .expect("a run directory")
        .unwrap()
        .path();
    let run_id = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    let got: Vec<String> = out
        .stdout
        .iter()
        .map(|l| {
            mask_durations(strip_timestamp(l))
                .replace(s(&run_dir), "<RUN_DIR>")
                .replace(&run_id, "<RUN_ID>")
        })
        .collect();
    let pb_path = s(&pb);
    let expected = format!(
        "\
run <RUN_ID>: two steps ({pb_path}) on `production`: 3 hosts in 2 batches, 1 at once; logs in <RUN_DIR>
batch 1/2 (canary): started: p-01
p-01: started (2 steps)
p-01 [1/2] greet: started
p-01 [1/2] greet: changed (rc 0, <T>)
p-01 [2/2] check disk: started
p-01 [2/2] check disk: changed (rc 0, <T>)
p-01: ok (2 steps changed, <T>)
batch 1/2: finished: 1 ok, 0 failed, 0 unreachable
batch 2/2: started: p-02 p-03
p-02: started (2 steps)
p-02 [1/2] greet: started
p-02 [1/2] greet: changed (rc 0, <T>)
p-02 [2/2] check disk: started
p-02 [2/2] check disk: changed (rc 0, <T>)
p-02: ok (2 steps changed, <T>)
p-03: started (2 steps)
p-03 [1/2] greet: started
p-03 [1/2] greet: changed (rc 0, <T>)
p-03 [2/2] check disk: started
p-03 [2/2] check disk: FAILED (rc 3, <T>): disk full
p-03: FAILED at \"check disk\" (1 step changed, <T>): disk full; log: <RUN_DIR>/hosts/p-03.log
batch 2/2: finished: 1 ok, 1 failed, 0 unreachable
HALTED after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%
run finished in <T> with exit code 2; 0 hosts never started

RECAP
HOST  OUTCOME  CHANGED  TIME  FAILED STEP
p-01  ok             2  <T>
p-02  ok             2  <T>
p-03  FAILED         1  <T>  check disk: disk full

2 ok, 1 failed in <T> (exit code 2)

halted after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%
next: fix the cause on p-03, then resume the run with `fleetup run --resume <RUN_ID>` and the same -i: finished hosts are left alone
logs of every host: <RUN_DIR>"
    );
    let want: Vec<&str> = expected.lines().collect();
    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {} of\n{}", n + 1, got.join("\n"));
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
    // What the host saw: p-03 ran both steps, the second failing.
    let p03: Vec<_> = sessions(&fleet, "p-03")
        .into_iter()
        .filter(|c| c.ev == "end")
        .map(|c| c.rc)
        .collect();
    assert_eq!(p03, [Some(0), Some(3)]);
}

/// The plain view shows a failed step's stderr's last line as its reason when the step has
/// no reason in words (`src/ui/plain.rs`, and its fixture: `FAILED (rc 1, 0.3s): manifest
/// unknown`), but the engine gives every non-zero exit the message `exit code N`, so the
/// line repeats the rc and the error moves to a `stderr:` line below; the recap's FAILED STEP
/// column says `exit code 3` instead of the error.
#[test]
fn a_failed_step_is_summed_up_by_its_stderr_not_its_exit_code_again() {
    let fleet = fleet_of(1, false);
    fleet.fault(
        "p-01",
        serde_json::json!({"match": "echo disk ok", "action": "fail", "rc": 3, "stderr": "disk full", "scope": "session"}),
    );
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let out = fleetup(&strs(&run_args(&fleet, &pb, &["--canary", "none"])));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    let lines: Vec<String> = out
        .stdout
        .iter()
        .map(|l| mask_durations(strip_timestamp(l)))
        .collect();
    assert!(
        lines.contains(&"p-01 [2/2] check disk: FAILED (rc 3, <T>): disk full".to_string()),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(
            |l| l == "p-01  FAILED         1  <T>  check disk: disk full"
                || l == "p-01  FAILED         1  <T>  check disk"
        ),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn json_output_is_only_events() {
    let fleet = fleet_of(3, true);
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let args = run_args(&fleet, &pb, &["--output", "json", "--serial", "2"]);
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    let events: Vec<Value> = out
        .stdout
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", out.context()));
            assert!(v["event"].is_string(), "no event key: {l}");
            assert!(v["at_ms"].is_u64(), "no at_ms: {l}");
            v
        })
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "run_started").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "run_finished").count(), 1);
    let last = events.last().unwrap();
    assert_eq!(last["exit_code"], 0);
    assert!(last["duration_ms"].is_u64());
    assert_eq!(last["untouched"], serde_json::json!([]));
    assert_eq!(events[0]["hosts"], 3);
    assert_eq!(events[0]["batches"], 2);
    let steps: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .collect();
    assert_eq!(steps.len(), 6, "2 steps on 3 hosts");
    for s in &steps {
        assert_eq!(s["rc"], 0, "{s}");
        assert!(s["duration_ms"].is_u64(), "{s}");
        assert_eq!(s["status"], "changed", "{s}");
    }
    let finished: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "host_finished")
        .map(|e| (e["host"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(finished.len(), 3);
    assert!(finished.iter().all(|(_, o)| *o == "ok"), "{finished:?}");
    // Nothing for people on stdout: no recap, no escape codes.
    assert!(!out.text().contains("RECAP") && !out.text().contains('\x1b'));
}

// ---------------------------------------------------------------------------------------
// Exit codes
// ---------------------------------------------------------------------------------------

#[test]
fn exit_0_when_the_shipped_upgrade_succeeds_everywhere() {
    let fleet = fleet_of(3, true);
    let args = run_args(
        &fleet,
        Path::new(UPGRADE),
        &[
            "-e",
            "sl_version=v4.66.1",
            "-e",
            r#"{"sl_health_timeout": 10}"#,
        ],
    );
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    assert!(out.text().contains("3 ok"), "{}", out.text());
    for h in fleet.hosts() {
        let st = fleet.state(&h.name);
        assert!(
            st.to_string().contains("v4.66.1"),
            "{} upgraded: {st}",
            h.name
        );
    }
}

#[test]
fn exit_2_when_a_host_fails() {
    let fleet = fleet_of(2, false);
    fleet.fault("p-02", rule("echo disk ok", "fail"));
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let out = fleetup(&strs(&run_args(&fleet, &pb, &["--canary", "none"])));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    assert!(out.text().contains("p-02: FAILED"), "{}", out.text());
}

#[test]
fn exit_4_when_hosts_are_only_unreachable() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "p", 3, "v4.65.0")
            .with("p-03", HostSpec::own_sshd),
    );
    fleet.stop_host("p-03");
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let out = fleetup(&strs(&run_args(
        &fleet,
        &pb,
        &["--canary", "none", "--connect-timeout", "3"],
    )));
    assert_eq!(out.code(), Some(4), "{}", out.context());
    let text = out.text();
    assert!(text.contains("p-03: UNREACHABLE"), "{text}");
    assert!(
        text.contains("p-01: ok") && text.contains("p-02: ok"),
        "{text}"
    );
    assert!(fleet.commands("p-03").is_empty());
}

#[test]
fn exit_5_on_invalid_input_and_nothing_is_contacted() {
    let fleet = fleet_of(2, false);
    // The shipped upgrade without its required sl_version.
    let out = fleetup(&strs(&run_args(&fleet, Path::new(UPGRADE), &[])));
    assert_eq!(out.code(), Some(5), "{}", out.context());
    assert!(out.stderr.contains("sl_version"), "{}", out.stderr);
    // A playbook with a misspelt key.
    let pb = playbook(
        &fleet,
        "typo.yml",
        "name: t\nhosts: production\nsteps:\n  - name: a\n    shell: 'true'\n    retires: 3\n",
    );
    let out = fleetup(&strs(&run_args(&fleet, &pb, &[])));
    assert_eq!(out.code(), Some(5), "{}", out.context());
    assert!(out.stderr.contains("retries"), "{}", out.stderr);
    // exec with a pattern that matches nothing.
    let out = fleetup(&[
        "exec",
        "-i",
        s(&fleet.inventory_path()),
        "staging",
        "--known-hosts",
        s(&fleet.known_hosts_path()),
        "--",
        "true",
    ]);
    assert_eq!(out.code(), Some(5), "{}", out.context());
    for h in fleet.hosts() {
        assert!(
            fleet.commands(&h.name).is_empty(),
            "{} was contacted",
            h.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// exec
// ---------------------------------------------------------------------------------------

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

#[test]
fn exec_prints_each_hosts_output_as_one_block() {
    let fleet = fleet_of(4, false);
    let kh = fleet.known_hosts_path();
    // Outputs written slowly, so that hosts running at once would interleave if printed live.
    let cmd =
        "for i in 1 2 3; do echo out-$FLEET_HOST-$i; sleep 0.25; done; echo err-$FLEET_HOST >&2";
    let out = fleetup(&strs(&exec_args(&fleet, &kh, &["--", cmd])));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    let lines = &out.stdout;
    assert_eq!(lines.len(), 4 * 6 + 1, "{}", out.text());
    let mut hosts = Vec::new();
    for block in lines[..24].chunks(6) {
        let head: Vec<&str> = block[0].split(" | ").collect();
        assert_eq!(head.len(), 3, "header {:?}", block[0]);
        let host = head[0];
        assert_eq!(head[1], "rc=0", "{}", block[0]);
        assert_eq!(mask_durations(head[2]), "<T>", "{}", block[0]);
        let want = [
            format!("out-{host}-1"),
            format!("out-{host}-2"),
            format!("out-{host}-3"),
            "-- stderr --".to_string(),
            format!("err-{host}"),
        ];
        assert_eq!(&block[1..], &want, "{host}'s block\n{}", out.text());
        hosts.push(host.to_string());
    }
    hosts.sort();
    assert_eq!(hosts, ["p-01", "p-02", "p-03", "p-04"]);
    assert_eq!(lines[24], "4 hosts: 4 ok, 0 failed, 0 unreachable");
    // They did run at once (the default forks is 10).
    let spans: Vec<(f64, f64)> = fleet
        .hosts()
        .iter()
        .map(|h| busy(&fleet, &h.name))
        .collect();
    let first_end = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    let last_start = spans.iter().map(|s| s.0).fold(0.0, f64::max);
    assert!(last_start < first_end, "hosts overlapped: {spans:?}");
}

#[test]
fn exec_exits_2_when_the_command_fails_on_a_host() {
    let fleet = fleet_of(3, false);
    let kh = fleet.known_hosts_path();
    let cmd = "test \"$FLEET_HOST\" != p-02 || { echo no space >&2; exit 7; }";
    let out = fleetup(&strs(&exec_args(&fleet, &kh, &["--", cmd])));
    assert_eq!(out.code(), Some(2), "{}", out.context());
    let text = out.text();
    let p02 = out
        .stdout
        .iter()
        .position(|l| l.starts_with("p-02 | "))
        .expect("p-02's block");
    assert!(out.stdout[p02].starts_with("p-02 | rc=7 | "), "{text}");
    assert_eq!(out.stdout[p02 + 1..p02 + 3], ["-- stderr --", "no space"]);
    assert!(
        text.ends_with("3 hosts: 2 ok, 1 failed, 0 unreachable"),
        "{text}"
    );
}

/// When a host was busy: its first session's start to its last session's end.
fn busy(fleet: &Fleet, host: &str) -> (f64, f64) {
    let s = sessions(fleet, host);
    let start = s
        .iter()
        .filter(|c| c.ev == "start")
        .map(|c| c.t)
        .fold(f64::MAX, f64::min);
    let end = s
        .iter()
        .filter(|c| c.ev == "end")
        .map(|c| c.t)
        .fold(0.0, f64::max);
    assert!(start <= end, "{host} ran: {s:?}");
    (start, end)
}

#[test]
fn exec_forks_1_runs_one_host_at_a_time() {
    let fleet = fleet_of(3, false);
    let kh = fleet.known_hosts_path();
    let out = fleetup(&strs(&exec_args(
        &fleet,
        &kh,
        &["--forks", "1", "--", "sleep", "0.3"],
    )));
    assert_eq!(out.code(), Some(0), "{}", out.context());
    let mut spans: Vec<(f64, f64)> = fleet
        .hosts()
        .iter()
        .map(|h| busy(&fleet, &h.name))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "a host started before the previous one ended: {spans:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Host keys
// ---------------------------------------------------------------------------------------

#[test]
fn an_unknown_host_key_is_refused_and_nothing_runs_there() {
    let fleet = fleet_of(3, false);
    let port = fleet.port("p-02");
    let all = std::fs::read_to_string(fleet.known_hosts_path()).unwrap();
    let without: String = all
        .lines()
        .filter(|l| !l.starts_with(&format!("[127.0.0.1]:{port} ")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(without.len() < all.len(), "p-02's key was in known_hosts");
    let kh = fleet.tmp().join("known_hosts_without_p02");
    std::fs::write(&kh, without).unwrap();

    let out = fleetup(&strs(&exec_args(&fleet, &kh, &["--", "echo", "hi"])));
    assert_eq!(out.code(), Some(4), "{}", out.context());
    let p02 = out
        .stdout
        .iter()
        .find(|l| l.starts_with("p-02 | "))
        .unwrap_or_else(|| panic!("p-02's block\n{}", out.context()));
    assert!(
        p02.contains("error: ") && p02.contains("ssh-keyscan"),
        "{p02}"
    );
    assert!(p02.contains(&format!("-p {port}")), "{p02}");
    assert!(fleet.commands("p-02").is_empty(), "nothing ran on p-02");
    assert!(!fleet.commands("p-01").is_empty());

    // The same through `run`: the host is unreachable, the message names ssh-keyscan.
    let pb = playbook(&fleet, "two.yml", TWO_STEPS);
    let mut args = run_args(
        &fleet,
        &pb,
        &["--canary", "none", "--max-fail-percentage", "50"],
    );
    let k = args.iter().position(|a| a == "--known-hosts").unwrap();
    args[k + 1] = s(&kh).to_string();
    let out = fleetup(&strs(&args));
    assert_eq!(out.code(), Some(4), "{}", out.context());
    let line = out
        .stdout
        .iter()
        .find(|l| strip_timestamp(l).starts_with("p-02: UNREACHABLE"))
        .unwrap_or_else(|| panic!("p-02 unreachable\n{}", out.context()));
    assert!(line.contains("ssh-keyscan"), "{line}");
    assert!(fleet.commands("p-02").is_empty(), "nothing ran on p-02");
}
