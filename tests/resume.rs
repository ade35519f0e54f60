//! Nothing lost (issue 6): the run journal, `--resume`, the host lock, the audit log on the
//! hosts, `history` and `show`. The built `fleetup` binary runs the shipped playbook against
//! the simulated fleet as an operator would (`--known-hosts`, strict host keys, `--yes`,
//! `--output json`), is killed with SIGKILL, halted, resumed, run twice at once; every claim
//! is proven from the hosts' own command logs and state, and from the files the run left.
//!
//! The helpers are here; the tests are in `tests/resume/`: a run killed then resumed
//! (`killed.rs`), resumed after a halt or refused (`resumed.rs`), host locks (`locks.rs`),
//! `history`, `show` and the audit line (`history.rs`).

mod fleet;
mod fleetup_cli;
#[path = "resume/history.rs"]
mod history;
#[path = "resume/killed.rs"]
mod killed;
#[path = "resume/locks.rs"]
mod locks;
#[path = "resume/resumed.rs"]
mod resumed;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

use fleet::{CommandRecord, Fleet, Spec};
use fleetup_cli::{
    assert_healthy_at, assert_not_touched_since, audit, backups, cli, cmds, journal,
    journal_lenient, now, plan, run, run_dirs, run_json, s, shim, since, spawn_args, spawn_run,
    state_changing, state_dir, strings, Finished, Running, IMAGE, PLAYBOOK, REPO, TARGET, VARS,
};
use serde_json::{json, Value};

const OLD: &str = "v4.65.0";
/// Batches [prod-01] (the canary), [prod-02..04], [prod-05..07] on the fleet of seven.
const SERIAL3: [&str; 2] = ["--serial", "3"];
/// One batch of every host, no canary: for the lock tests, where every host starts at once.
const ALL_AT_ONCE: [&str; 4] = ["--canary", "none", "--serial", "100%"];

/// This machine's host name, as fleetup records it as the controller.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string()
}

fn names(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:02}")).collect()
}

// --- Running fleetup --------------------------------------------------------------------

/// `fleetup run -i INV --resume <id> --known-hosts K --yes --output json <extra>`: no
/// playbook, it comes from the journal.
fn spawn_resume(fleet: &Fleet, id: &str, extra: &[&str]) -> Running {
    let mut args = strings(&["run", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.extend(strings(&["--resume", id, "--known-hosts"]));
    args.push(s(&fleet.known_hosts_path()));
    args.extend(strings(&["--yes", "--output", "json"]));
    args.extend(strings(extra));
    spawn_args(fleet, &args)
}

fn resume(fleet: &Fleet, id: &str, extra: &[&str]) -> Finished {
    spawn_resume(fleet, id, extra).wait()
}

impl Finished {
    fn started_hosts(&self) -> BTreeSet<String> {
        self.of("host_started")
            .iter()
            .map(|e| e["host"].as_str().expect("host").to_string())
            .collect()
    }

    /// When the rollout began: the first batch (the read-only fleet-wide pre-flight is
    /// before it).
    fn rollout_start(&self) -> f64 {
        let batch = self.of("batch_started");
        let first = batch
            .first()
            .unwrap_or_else(|| panic!("a batch:\n{}", self.dump()));
        first["at_ms"].as_f64().expect("at_ms") / 1000.0
    }

    /// A host's command log from the rollout's start on.
    fn rollout_log(&self, fleet: &Fleet, name: &str) -> Vec<CommandRecord> {
        since(fleet, name, self.rollout_start())
    }

    /// The single `run_resumed` event.
    fn run_resumed(&self) -> &Value {
        let r = self.of("run_resumed");
        assert_eq!(r.len(), 1, "one run_resumed:\n{}", self.dump());
        // Right after run_started.
        let i = self
            .events
            .iter()
            .position(|e| e["event"] == "run_resumed")
            .unwrap();
        let j = self
            .events
            .iter()
            .position(|e| e["event"] == "run_started")
            .expect("run_started");
        assert!(
            j < i,
            "run_resumed comes after run_started:\n{}",
            self.dump()
        );
        r[0]
    }

    fn batches_started(&self) -> Vec<u64> {
        self.of("batch_started")
            .iter()
            .map(|e| e["batch"].as_u64().expect("batch"))
            .collect()
    }
}

/// A list of host names in a JSON field, sorted.
fn host_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list of hosts: {v}"))
        .iter()
        .map(|h| {
            h.as_str()
                .unwrap_or_else(|| panic!("a host name: {h}"))
                .to_string()
        })
        .collect()
}

fn set(hosts: &[&str]) -> BTreeSet<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

// --- The journal ------------------------------------------------------------------------

/// `fleetup WORDS -i INVENTORY AFTER`, which must succeed: what it printed.
fn stdout_of(fleet: &Fleet, words: &[&str], after: &[&str]) -> String {
    let mut args = strings(words);
    args.push("-i".into());
    args.push(s(&fleet.inventory_path()));
    args.extend(strings(after));
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", fleet::stderr(&out));
    fleet::stdout(&out)
}

/// `fleetup history -i INV --output json`: one object per run.
fn history_json(fleet: &Fleet, extra: &[&str]) -> Vec<Value> {
    stdout_of(
        fleet,
        &["history"],
        &[&["--output", "json"], extra].concat(),
    )
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(|l| {
        serde_json::from_str(l).unwrap_or_else(|e| panic!("history line is not JSON ({e}): {l:?}"))
    })
    .collect()
}

/// The history entry of one run.
fn history_of(fleet: &Fleet, id: &str, extra: &[&str]) -> Value {
    let all = history_json(fleet, extra);
    let found: Vec<_> = all.iter().filter(|r| r["run_id"] == id).collect();
    assert_eq!(found.len(), 1, "run {id} once in the history: {all:#?}");
    found[0].clone()
}

// --- What the hosts say -----------------------------------------------------------------

/// How many times the host ran the migration (shim starts of `alembic upgrade head`).
fn migrations(fleet: &Fleet, name: &str) -> usize {
    fleet
        .commands(name)
        .iter()
        .filter(|c| c.kind == "docker" && c.ev == "start" && c.cmd.contains("alembic upgrade head"))
        .count()
}

fn assert_migrated_once(fleet: &Fleet, name: &str) {
    let log = fleet.commands(name);
    assert_eq!(
        migrations(fleet, name),
        1,
        "{name}: `alembic upgrade head` exactly once; log:\n{}",
        cmds(&log).join("\n")
    );
}

/// The start of the compose project's `up` of the app and the job runner (the playbook runs
/// `docker compose -p P --project-directory D -f F up -d --no-deps sl-app sl-job-runner`).
const UP_APP: &str = "up -d --no-deps sl-app sl-job-runner";
/// The start of sl-email, the last container the upgrade starts.
const UP_EMAIL: &str = "up -d --no-deps sl-email";

/// A host upgraded once, correctly, in the records `log`: pull, stop, backup, migrate, init,
/// up of the app and job runner, up of sl-email, in that order, one backup of the old schema
/// taken once nothing wrote; then healthy at the target.
fn assert_upgraded(fleet: &Fleet, name: &str, log: &[CommandRecord]) {
    assert_healthy_at(fleet, name, TARGET);
    let pull = shim(log, "end", &format!("docker pull {IMAGE}:{TARGET}"));
    assert_eq!(pull.rc, Some(0), "{name}: the pull succeeded");
    let stop = shim(log, "start", "docker stop sl-app sl-email sl-job-runner");
    let dump = shim(log, "end", "pg_dump");
    assert_eq!(dump.rc, Some(0), "{name}: the dump succeeded");
    let alembic = shim(log, "end", "alembic upgrade head");
    assert_eq!(alembic.rc, Some(0), "{name}: alembic succeeded");
    let init = shim(log, "end", "init_app.py");
    assert_eq!(init.rc, Some(0), "{name}: init_app.py succeeded");
    let up = shim(log, "start", UP_APP);
    let email = shim(log, "start", UP_EMAIL);
    assert!(
        pull.t <= stop.t
            && stop.t <= dump.t
            && dump.t <= alembic.t
            && alembic.t <= init.t
            && init.t <= up.t
            && up.t <= email.t,
        "{name}: pull, stop, dump, migrate, init, up of the app, up of sl-email in that order:\n{}",
        cmds(log).join("\n")
    );
    let files = backups(fleet, name);
    assert_eq!(files.len(), 1, "{name}: one database backup: {files:?}");
    assert!(files[0].1 > 0, "{name}: the backup is not empty");
    assert!(
        stop.t <= files[0].2 && files[0].2 <= alembic.t,
        "{name}: the backup was written after the app stopped and before the migration"
    );
}

/// `<fleetup_dir>/upgrade-in-progress/` on a host (`fleetup_dir` is `<app>/.fleetup` in the
/// test fleet): the settings and the backup of an upgrade not yet finished.
fn in_progress_dir(fleet: &Fleet, name: &str) -> PathBuf {
    fleet
        .app_path(name)
        .join(".fleetup")
        .join("upgrade-in-progress")
}

/// `<app>/.fleetup/lock` on a host.
fn lock_dir(fleet: &Fleet, name: &str) -> PathBuf {
    fleet.app_path(name).join(".fleetup").join("lock")
}

fn assert_no_lock(fleet: &Fleet, name: &str) {
    let dir = lock_dir(fleet, name);
    assert!(
        !dir.exists(),
        "{name}: the lock {} is left behind: {:?}",
        dir.display(),
        std::fs::read_to_string(dir.join("owner.json"))
    );
}

/// Checks the shape of an audit line: `<RFC3339 UTC> run=.. operator=.. controller=.. from=..
/// to=.. outcome=..`, and returns its fields.
fn audit_fields(line: &str) -> std::collections::HashMap<String, String> {
    let mut words = line.split_whitespace();
    let time = words.next().unwrap_or_default();
    assert!(
        time.ends_with('Z') && time.parse::<jiff::Timestamp>().is_ok(),
        "an audit line starts with an RFC3339 UTC time: {line:?}"
    );
    let fields: std::collections::HashMap<String, String> = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for k in ["run", "operator", "controller", "from", "to", "outcome"] {
        assert!(fields.contains_key(k), "the audit line has {k}=: {line:?}");
    }
    fields
}

/// Writes a lock by hand on a host: `<app>/.fleetup/lock/owner.json`, owned like the app
/// path (the login user must be able to remove it).
fn plant_lock(fleet: &Fleet, name: &str, owner: &Value) {
    use std::os::unix::fs::MetadataExt;
    let app = fleet.app_path(name);
    let meta = std::fs::metadata(&app).expect("the app path");
    let (uid, gid) = (meta.uid(), meta.gid());
    let dot = app.join(".fleetup");
    let lock = dot.join("lock");
    std::fs::create_dir_all(&lock).expect("create the lock dir");
    let file = lock.join("owner.json");
    std::fs::write(&file, serde_json::to_string(owner).unwrap()).expect("owner.json");
    for p in [&dot, &lock, &file] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
    }
    // The lock's files are as old as it says it is.
    let started = UNIX_EPOCH + Duration::from_secs(owner["started"].as_u64().expect("started"));
    for p in [&file, &lock] {
        std::fs::File::open(p)
            .and_then(|f| f.set_modified(started))
            .expect("set the lock's mtime");
    }
}

/// A pid that is surely not alive: a process that ran and was reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("true");
    let pid = child.id();
    child.wait().expect("wait for true");
    assert!(!fleet::pid_alive(pid as i32));
    pid
}

/// The command-log lengths of every host, to prove later that nothing was run.
fn log_lengths(fleet: &Fleet) -> Vec<(String, usize)> {
    fleet
        .hosts()
        .iter()
        .map(|h| (h.name.clone(), fleet.commands(&h.name).len()))
        .collect()
}

fn assert_nothing_run_since(fleet: &Fleet, before: &[(String, usize)], what: &str) {
    for (name, n) in before {
        let log = fleet.commands(name);
        assert_eq!(
            log.len(),
            *n,
            "{what}: {name} must not be contacted, yet it logged:\n{}",
            cmds(&log[*n..]).join("\n")
        );
    }
}

/// `--resume last`, which is to be refused (exit 5, stderr saying `says`), with none of the
/// hosts in `before` contacted: `what` is the case, for the messages.
fn assert_resume_refused(fleet: &Fleet, before: &[(String, usize)], says: &str, what: &str) {
    let r = resume(fleet, "last", &[]);
    assert_eq!(
        r.code,
        5,
        "{what}; stderr:\n{}\nevents:\n{}",
        r.stderr,
        r.dump()
    );
    assert!(
        r.stderr.contains(says),
        "{what}: says `{says}`: {}",
        r.stderr
    );
    assert_nothing_run_since(fleet, before, what);
}

/// The fleet of seven: prod-01 (the canary) to prod-07, all at v4.65.0.
fn seven_hosts() -> Fleet {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 7, OLD)
            .canary("prod-01"),
    );
    assert_eq!(
        plan(&fleet, &SERIAL3),
        [
            vec!["prod-01"],
            vec!["prod-02", "prod-03", "prod-04"],
            vec!["prod-05", "prod-06", "prod-07"]
        ],
        "the canary, then batches of three"
    );
    fleet
}

fn pull_fails() -> Value {
    json!({"match": "docker pull", "action": "fail", "rc": 1, "scope": "shim",
           "stderr": "Error response from daemon: manifest for simplelogin/app-ci:v4.66.1 not found: manifest unknown"})
}
