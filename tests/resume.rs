//! Nothing lost (issue 6): the run journal, `--resume`, the host lock, the audit log on the
//! hosts, `history` and `show`. The built `fleetup` binary runs the shipped playbook against
//! the simulated fleet as an operator would (`--known-hosts`, strict host keys, `--yes`,
//! `--output json`), is killed with SIGKILL, halted, resumed, run twice at once; every claim
//! is proven from the hosts' own command logs and state, and from the files the run left.

mod fleet;
mod fleetup_cli;

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

/// `fleetup history -i INV --output json`: one object per run.
fn history_json(fleet: &Fleet, extra: &[&str]) -> Vec<Value> {
    let mut args = strings(&["history", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.extend(strings(&["--output", "json"]));
    args.extend(strings(extra));
    let out = cli(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "history: {}",
        fleet::stderr(&out)
    );
    fleet::stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("history line is not JSON ({e}): {l:?}"))
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

// --- 1. kill -9 in the middle of batch 2, then --resume ----------------------------------

#[test]
fn kill_9_mid_batch_2_then_resume_finishes_without_touching_finished_hosts() {
    let fleet = seven_hosts();
    // prod-03's pull takes long enough for prod-02 and prod-04 to finish and for fleetup to
    // be killed while prod-03 is in it.
    fleet.fault(
        "prod-03",
        json!({"match": "docker pull", "action": "slow", "seconds": 20, "scope": "shim", "times": 1}),
    );
    let mut running = spawn_run(&fleet, Path::new(PLAYBOOK), &SERIAL3);

    // Watch the journal until prod-03 is in its pull and prod-02, prod-04 have finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_dir = loop {
        if let Some(status) = running.child.try_wait().expect("try_wait") {
            panic!(
                "fleetup ended ({status}) before it could be killed; stderr:\n{}",
                running.stderr_now()
            );
        }
        let dirs = run_dirs(&state_dir(&fleet));
        assert!(dirs.len() <= 1, "one run, one run dir: {dirs:?}");
        if let Some(dir) = dirs.first() {
            if dir.join("events.jsonl").exists() {
                let (events, _) = journal(dir);
                let pulling = events.iter().any(|e| {
                    e["event"] == "step_started"
                        && e["host"] == "prod-03"
                        && e["name"] == "pull the new image"
                });
                let done = |h: &str| {
                    events
                        .iter()
                        .any(|e| e["event"] == "host_finished" && e["host"] == h)
                };
                if pulling && done("prod-02") && done("prod-04") {
                    break dir.clone();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "prod-03 never reached its pull with prod-02 and prod-04 finished; journal: {:?}",
            run_dirs(&state_dir(&fleet))
                .first()
                .map(|d| std::fs::read_to_string(d.join("events.jsonl")))
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let the finished hosts' last commands (the lock's release) end.
    std::thread::sleep(Duration::from_millis(300));

    // While the run's process lives, it cannot be resumed; nothing is contacted.
    let before = log_lengths(&fleet);
    let refused = resume(&fleet, "last", &[]);
    assert_eq!(
        refused.code,
        5,
        "resuming a live run; stderr:\n{}\nevents:\n{}",
        refused.stderr,
        refused.dump()
    );
    assert!(
        refused.stderr.contains("still running"),
        "says the run is still running: {}",
        refused.stderr
    );
    let before: Vec<_> = before.into_iter().filter(|(h, _)| h != "prod-03").collect();
    assert_nothing_run_since(&fleet, &before, "a refused resume of a live run");

    // kill -9.
    let pid = running.child.id();
    running.child.kill().expect("SIGKILL fleetup");
    let status = running.child.wait().expect("reap fleetup");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let killed_at = now();

    // The journal reads back: every complete line parses, and it says where prod-03 was.
    let (events, _partial) = journal(&run_dir);
    let started: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "run_started")
        .collect();
    assert_eq!(started.len(), 1, "one run_started in the journal");
    let id = started[0]["run_id"].as_str().expect("run_id").to_string();
    assert_eq!(
        Path::new(started[0]["run_dir"].as_str().expect("run_dir")),
        run_dir,
        "run_started's run_dir is the journal's directory"
    );
    assert_eq!(
        run_dir.file_name().unwrap().to_str().unwrap(),
        id,
        "the run dir is named by the run id"
    );
    let prod03: Vec<_> = events.iter().filter(|e| e["host"] == "prod-03").collect();
    let last = prod03.last().expect("prod-03 in the journal");
    assert_eq!(
        last["event"], "step_started",
        "prod-03's last event: {last}"
    );
    assert_eq!(
        last["name"], "pull the new image",
        "prod-03's last event: {last}"
    );
    for h in ["prod-01", "prod-02", "prod-04"] {
        let f: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "host_finished" && e["host"] == h)
            .collect();
        assert_eq!(f.len(), 1, "{h} finished once in the journal");
        assert_eq!(f[0]["outcome"], "ok", "{h}: {}", f[0]);
    }
    assert!(
        !events.iter().any(|e| e["event"] == "run_finished"),
        "a killed run has no run_finished"
    );
    // The host's own log shows the pull really began, after its step_started was on disk.
    let p3_log = fleet.commands("prod-03");
    let pull = shim(&p3_log, "start", "docker pull");
    assert!(pull.t * 1000.0 + 1.0 >= last["at_ms"].as_f64().unwrap());

    let rj = run_json(&run_dir);
    assert_eq!(rj["pid"], pid, "run.json records fleetup's pid: {rj:#}");
    assert_eq!(
        rj["controller"],
        hostname(),
        "run.json's controller: {rj:#}"
    );
    assert!(rj["operator"].is_string(), "run.json's operator: {rj:#}");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("playbook.yml")).expect("the playbook's copy"),
        std::fs::read_to_string(Path::new(REPO).join(PLAYBOOK)).unwrap(),
        "playbook.yml is a copy of the playbook"
    );

    // `history` knows the run was killed: no run_finished, and its process is gone.
    let h = history_of(&fleet, &id, &[]);
    assert_eq!(h["ended"], "killed", "history: {h}");

    // Resume.
    let pre_resume: Vec<Vec<CommandRecord>> = (1..=7)
        .map(|i| fleet.commands(&format!("prod-{i:02}")))
        .collect();
    let resumed = resume(&fleet, "last", &[]);
    resumed.assert_exit(0);
    assert_eq!(resumed.run_id(), id, "the same run id:\n{}", resumed.dump());
    assert_eq!(resumed.run_dir(), run_dir, "the same run dir");
    let r = resumed.run_resumed();
    assert_eq!(r["run_id"], id.as_str(), "{r}");
    assert_eq!(r["attempt"], 2, "{r}");
    assert_eq!(
        host_set(&r["finished"]),
        set(&["prod-01", "prod-02", "prod-04"]),
        "{r}"
    );
    let interrupted = r["interrupted"].as_array().expect("interrupted: a list");
    assert_eq!(interrupted.len(), 1, "one host interrupted: {r}");
    assert_eq!(interrupted[0]["host"], "prod-03", "{r}");
    assert_eq!(interrupted[0]["step"], "pull the new image", "{r}");
    let retry = host_set(&r["retry"]);
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert!(!retry.contains(h), "{h} finished: not retried: {r}");
    }

    // Only prod-03 and batch 3 ran, batches keeping their numbers.
    assert_eq!(
        resumed.started_hosts(),
        set(&["prod-03", "prod-05", "prod-06", "prod-07"]),
        "{}",
        resumed.dump()
    );
    assert_eq!(resumed.batches_started(), [2, 3], "{}", resumed.dump());
    for h in ["prod-03", "prod-05", "prod-06", "prod-07"] {
        assert_eq!(resumed.outcome(h), "ok", "{h}: {}", resumed.dump());
    }
    let started_in = |h: &str| {
        resumed
            .of("host_started")
            .iter()
            .find(|e| e["host"] == h)
            .map(|e| e["batch"].clone())
    };
    assert_eq!(started_in("prod-03"), Some(json!(2)));
    assert_eq!(started_in("prod-05"), Some(json!(3)));

    // The hosts' own logs: finished hosts were not touched after the kill, not even by a
    // pre-flight; every host migrated exactly once over both runs; every host at target.
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert_not_touched_since(&fleet, h, killed_at, "after the kill (it had finished)");
        assert_upgraded(&fleet, h, &fleet.commands(h));
    }
    for (i, log) in pre_resume.iter().enumerate().skip(4) {
        let h = format!("prod-{:02}", i + 1);
        assert!(
            state_changing(log).is_empty(),
            "{h} was not started before the kill: {:?}",
            state_changing(log)
        );
        assert_upgraded(&fleet, &h, &fleet.commands(&h));
    }
    let p3 = since(&fleet, "prod-03", killed_at);
    assert_healthy_at(&fleet, "prod-03", TARGET);
    let p3_pull = p3
        .iter()
        .filter(|c| c.kind == "docker" && c.ev == "end" && c.cmd.starts_with("docker pull"))
        .find(|c| c.rc == Some(0))
        .is_some();
    assert!(
        p3_pull,
        "prod-03 pulled again after the kill: {:?}",
        cmds(&p3)
    );
    // Batch 2 (prod-03) ended before batch 3 began.
    let p3_up = shim(&p3, "end", UP_EMAIL).t;
    for h in ["prod-05", "prod-06", "prod-07"] {
        let pull = shim(&fleet.commands(h), "start", "docker pull").t;
        assert!(
            p3_up < pull,
            "{h} pulled ({pull}) before batch 2 ended ({p3_up})"
        );
    }
    for i in 1..=7 {
        let h = format!("prod-{i:02}");
        assert_migrated_once(&fleet, &h);
        assert_no_lock(&fleet, &h);
    }

    // The journal goes on in the same file: the resumed run's events are appended.
    let all = journal_lenient(&run_dir);
    assert!(all.len() >= resumed.events.len());
    assert_eq!(
        all[all.len() - resumed.events.len()..],
        resumed.events[..],
        "events.jsonl ends with exactly what the resumed run printed"
    );
    assert_eq!(history_of(&fleet, &id, &[])["ended"], "completed");
}

// --- 2. --resume after a halt, the fault removed ----------------------------------------

#[test]
fn resume_after_halt_with_the_fault_removed_finishes_the_fleet() {
    let fleet = seven_hosts();
    fleet.fault("prod-03", pull_fails());

    let first = run(&fleet, &SERIAL3);
    first.assert_exit(2);
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert_eq!(first.outcome(h), "ok", "{h}: {}", first.dump());
    }
    let failed = first.host_finished("prod-03");
    assert_eq!(failed["outcome"], "failed", "{}", first.dump());
    assert_eq!(failed["failed_step"], "pull the new image");
    let halted = first.of("halted");
    assert_eq!(halted.len(), 1, "halted:\n{}", first.dump());
    assert_eq!(halted[0]["batch"], 2);
    assert_eq!(first.untouched(), ["prod-05", "prod-06", "prod-07"]);
    for h in ["prod-05", "prod-06", "prod-07"] {
        let log = first.rollout_log(&fleet, h);
        assert!(log.is_empty(), "{h}: batch 3 untouched: {:?}", cmds(&log));
        assert!(state_changing(&fleet.commands(h)).is_empty());
    }
    let id = first.run_id();
    let run_dir = first.run_dir();
    assert!(
        run_dir.starts_with(state_dir(&fleet).join("runs")),
        "the run dir {} is under the default state dir",
        run_dir.display()
    );
    // The journal is exactly what the run printed.
    let (events, partial) = journal(&run_dir);
    assert_eq!(partial, None, "a finished run leaves no partial line");
    assert_eq!(
        events, first.events,
        "events.jsonl = the JSON events printed"
    );
    assert_eq!(history_of(&fleet, &id, &[])["ended"], "halted");

    fleet.clear_faults("prod-03");
    let resumed_at = now();
    // `-e` may be given again (the same values).
    let second = resume(&fleet, "last", &VARS);
    second.assert_exit(0);
    assert_eq!(second.run_id(), id);
    assert_eq!(second.run_dir(), run_dir);
    let r = second.run_resumed();
    assert_eq!(r["attempt"], 2, "{r}");
    assert_eq!(
        host_set(&r["finished"]),
        set(&["prod-01", "prod-02", "prod-04"]),
        "{r}"
    );
    assert!(host_set(&r["retry"]).contains("prod-03"), "{r}");
    for h in ["prod-01", "prod-02", "prod-04"] {
        assert!(!host_set(&r["retry"]).contains(h), "{r}");
    }
    assert_eq!(r["interrupted"], json!([]), "{r}");
    assert_eq!(
        second.started_hosts(),
        set(&["prod-03", "prod-05", "prod-06", "prod-07"]),
        "{}",
        second.dump()
    );
    assert_eq!(second.batches_started(), [2, 3], "{}", second.dump());
    for h in ["prod-03", "prod-05", "prod-06", "prod-07"] {
        assert_eq!(second.outcome(h), "ok", "{h}: {}", second.dump());
    }
    assert!(second.untouched().is_empty());

    for h in ["prod-01", "prod-02", "prod-04"] {
        assert_not_touched_since(
            &fleet,
            h,
            resumed_at,
            "by the resumed run (it had finished)",
        );
        assert_upgraded(&fleet, h, &fleet.commands(h));
    }
    let p3 = since(&fleet, "prod-03", resumed_at);
    assert!(
        !state_changing(&p3).is_empty(),
        "prod-03 was upgraded by the resumed run"
    );
    assert_healthy_at(&fleet, "prod-03", TARGET);
    let p3_up = shim(&p3, "end", UP_EMAIL).t;
    for h in ["prod-05", "prod-06", "prod-07"] {
        assert_upgraded(&fleet, h, &fleet.commands(h));
        let pull = shim(&fleet.commands(h), "start", "docker pull").t;
        assert!(p3_up < pull, "{h} pulled before batch 2 (prod-03) ended");
    }
    for i in 1..=7 {
        let h = format!("prod-{i:02}");
        assert_migrated_once(&fleet, &h);
        assert_no_lock(&fleet, &h);
    }

    // One journal for both attempts: the first run's events, then the resumed run's.
    let (events, partial) = journal(&run_dir);
    assert_eq!(partial, None);
    let expected: Vec<Value> = first.events.iter().chain(&second.events).cloned().collect();
    assert_eq!(
        events, expected,
        "events.jsonl = both attempts' events, in order"
    );
    assert_eq!(run_dirs(&state_dir(&fleet)), [run_dir], "one run dir");
    assert_eq!(history_of(&fleet, &id, &[])["ended"], "completed");
}

// --- 3. A changed playbook is not resumed unless forced ---------------------------------

#[test]
fn resume_refuses_a_changed_playbook_unless_forced() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );
    let copy = fleet.tmp().join("upgrade.yml");
    std::fs::copy(Path::new(REPO).join(PLAYBOOK), &copy).expect("copy the playbook");
    // The playbook reads its settings from simplelogin-facts.yml beside it (`vars_files:`).
    let facts = Path::new(REPO)
        .join(PLAYBOOK)
        .with_file_name("simplelogin-facts.yml");
    std::fs::copy(&facts, fleet.tmp().join("simplelogin-facts.yml")).expect("copy the vars file");
    fleet.fault("prod-01", pull_fails());

    let first = spawn_run(&fleet, &copy, &[]).wait();
    first.assert_exit(2);
    assert_eq!(first.outcome("prod-01"), "failed", "{}", first.dump());
    assert_eq!(first.untouched(), ["prod-02", "prod-03"]);
    let id = first.run_id();
    let rj = run_json(&first.run_dir());
    assert!(
        rj.to_string().contains("upgrade.yml"),
        "run.json names the playbook: {rj:#}"
    );

    // Rollout flags do not go with --resume (the plan is the journal's).
    let before = log_lengths(&fleet);
    let r = resume(&fleet, "last", &["--serial", "1"]);
    assert_eq!(r.code, 5, "--resume with --serial; stderr:\n{}", r.stderr);
    assert_nothing_run_since(&fleet, &before, "--resume with --serial");

    // The playbook changed since the run started: refused, nothing contacted.
    let mut text = std::fs::read_to_string(&copy).unwrap();
    text.push_str("# edited after the run started\n");
    std::fs::write(&copy, text).unwrap();
    fleet.clear_faults("prod-01");
    let before = log_lengths(&fleet);
    let r = resume(&fleet, "last", &[]);
    assert_eq!(
        r.code,
        5,
        "resume of a changed playbook; stderr:\n{}\nevents:\n{}",
        r.stderr,
        r.dump()
    );
    assert!(
        r.stderr.contains("changed"),
        "says what changed: {}",
        r.stderr
    );
    assert_nothing_run_since(&fleet, &before, "a refused resume (playbook changed)");
    for h in ["prod-01", "prod-02", "prod-03"] {
        assert_healthy_at(&fleet, h, OLD);
    }

    // --force: resumed anyway, to the end.
    let forced = resume(&fleet, &id, &["--force"]);
    forced.assert_exit(0);
    assert_eq!(forced.run_id(), id);
    let r = forced.run_resumed();
    assert!(host_set(&r["retry"]).contains("prod-01"), "{r}");
    assert_eq!(host_set(&r["finished"]), set(&[]), "{r}");
    for h in ["prod-01", "prod-02", "prod-03"] {
        assert_eq!(forced.outcome(h), "ok", "{h}: {}", forced.dump());
        assert_healthy_at(&fleet, h, TARGET);
        assert_migrated_once(&fleet, h);
        assert_no_lock(&fleet, h);
    }
}

// --- 4. Two runs at once ----------------------------------------------------------------

#[test]
fn two_runs_at_once_upgrade_every_host_once_and_report_locks() {
    let hosts = names("prod", 1..=5);
    let fleet = Fleet::start(Spec::new().group("production", "prod", 5, OLD));
    for h in &hosts {
        // Each upgrade lasts long enough for the other run to find the host locked.
        fleet.fault(
            h,
            json!({"match": "docker pull", "action": "slow", "seconds": 3, "scope": "shim"}),
        );
    }
    let a = spawn_run(&fleet, Path::new(PLAYBOOK), &ALL_AT_ONCE);
    let b = spawn_run(&fleet, Path::new(PLAYBOOK), &ALL_AT_ONCE);
    let (a, b) = (a.wait(), b.wait());
    let runs = [&a, &b];
    let ids = [a.run_id(), b.run_id()];
    assert_ne!(ids[0], ids[1], "two runs, two run ids");
    assert_ne!(a.run_dir(), b.run_dir(), "two runs, two run dirs");
    let dirs = run_dirs(&state_dir(&fleet));
    assert_eq!(dirs.len(), 2, "{dirs:?}");

    let mut lock_reports = 0;
    for h in &hosts {
        // Every host upgraded exactly once, and is at the target.
        assert_migrated_once(&fleet, h);
        assert_healthy_at(&fleet, h, TARGET);
        assert_no_lock(&fleet, h);
        let outcomes: Vec<String> = runs.iter().map(|r| r.outcome(h)).collect();
        let ok: Vec<usize> = (0..2).filter(|&i| outcomes[i] == "ok").collect();
        assert_eq!(
            ok.len(),
            1,
            "{h}: upgraded by exactly one run: {outcomes:?}"
        );
        let winner = ok[0];
        let other = 1 - winner;
        let loser = runs[other].host_finished(h);
        match loser["outcome"].as_str().unwrap() {
            // It came after the winner released the host, and found it done.
            "skipped" => {}
            "failed" => {
                assert_eq!(loser["failed_step"], "host lock", "{h}: {loser}");
                let message = loser["message"].as_str().expect("a message");
                assert!(
                    message.contains(&format!("locked by run {}", ids[winner])),
                    "{h}: names the run holding the lock ({}): {message}",
                    ids[winner]
                );
                let holder = run_json(&runs[winner].run_dir());
                for k in ["operator", "controller"] {
                    let v = holder[k].as_str().expect(k);
                    assert!(
                        message.contains(v),
                        "{h}: the message names the {k} {v}: {message}"
                    );
                }
                lock_reports += 1;
            }
            o => panic!("{h}: unexpected outcome {o} in the other run: {loser}"),
        }
        // The host tells its own story: one audit line of an upgrade, by the winner.
        let lines = audit(&fleet, h);
        let upgrades: Vec<_> = lines
            .iter()
            .map(|l| (l, audit_fields(l)))
            .filter(|(_, f)| f["outcome"] == "ok")
            .collect();
        assert_eq!(
            upgrades.len(),
            1,
            "{h}: one audit line of an upgrade: {lines:?}"
        );
        assert_eq!(upgrades[0].1["run"], ids[winner], "{h}: {lines:?}");
        assert_eq!(upgrades[0].1["from"], OLD, "{h}: {lines:?}");
        assert_eq!(upgrades[0].1["to"], TARGET, "{h}: {lines:?}");
    }
    assert!(
        lock_reports >= 1,
        "the runs overlapped, so one reported a locked host:\nA:\n{}\nB:\n{}",
        a.dump(),
        b.dump()
    );
    for r in runs {
        let failures: Vec<_> = r
            .of("host_finished")
            .into_iter()
            .filter(|e| e["outcome"] != "ok" && e["outcome"] != "skipped")
            .collect();
        assert_eq!(
            r.code,
            if failures.is_empty() { 0 } else { 2 },
            "{}",
            r.stderr
        );
    }
}

// --- 5. Stale and live locks ------------------------------------------------------------

#[test]
fn stale_lock_is_reported_and_broken_only_with_the_flag() {
    let fleet = Fleet::start(Spec::new().group("production", "prod", 4, OLD));
    let me = hostname();
    let now_s = now() as u64;
    // prod-01: this machine, a dead pid: stale. prod-02: another machine, now: live.
    // prod-03: another machine, 7 hours ago (the playbook's stale_after is 6h): stale.
    let owners = [
        (
            "prod-01",
            json!({"run_id": "20250101T000000-001", "operator": "alice",
            "controller": me, "pid": dead_pid(), "started": now_s}),
        ),
        (
            "prod-02",
            json!({"run_id": "20250101T000000-002", "operator": "bob",
            "controller": "other-machine", "pid": 4242, "started": now_s}),
        ),
        (
            "prod-03",
            json!({"run_id": "20250101T000000-003", "operator": "carol",
            "controller": "other-machine", "pid": 4343, "started": now_s - 7 * 3600}),
        ),
    ];
    for (h, owner) in &owners {
        plant_lock(&fleet, h, owner);
    }
    let owner_json = |h: &str| {
        std::fs::read_to_string(lock_dir(&fleet, h).join("owner.json"))
            .unwrap_or_else(|e| panic!("{h}: the lock is still there: {e}"))
    };
    let planted: Vec<String> = owners.iter().map(|(h, _)| owner_json(h)).collect();

    // Without --break-lock (and with --state-dir): the locked hosts are not run.
    let state = fleet.tmp().join("state");
    let state_arg = s(&state);
    let mut args: Vec<&str> = ALL_AT_ONCE.to_vec();
    args.extend(["--state-dir", state_arg.as_str()]);
    let first = run(&fleet, &args);
    first.assert_exit(2);
    assert!(
        first.run_dir().starts_with(state.join("runs")),
        "--state-dir holds the run: {}",
        first.run_dir().display()
    );
    assert!(first.run_dir().join("events.jsonl").is_file());
    assert!(!state_dir(&fleet).join("runs").exists() || run_dirs(&state_dir(&fleet)).is_empty());
    assert_eq!(
        history_of(&fleet, &first.run_id(), &["--state-dir", &state_arg])["ended"],
        "halted"
    );
    for (h, words) in [
        ("prod-01", vec!["stale lock", "--break-lock"]),
        (
            "prod-02",
            vec!["locked by run 20250101T000000-002", "bob", "other-machine"],
        ),
        ("prod-03", vec!["stale lock", "--break-lock"]),
    ] {
        let f = first.host_finished(h);
        assert_eq!(f["outcome"], "failed", "{h}: {f}");
        assert_eq!(f["failed_step"], "host lock", "{h}: {f}");
        let message = f["message"].as_str().expect("a message");
        for w in words {
            assert!(
                message.contains(w),
                "{h}: the message says `{w}`: {message}"
            );
        }
        // Not run: nothing but the lock attempt, no pre-flight command, no change.
        let log = first.rollout_log(&fleet, h);
        let shims: Vec<_> = log.iter().filter(|c| c.kind != "session").collect();
        assert!(
            shims.is_empty(),
            "{h}: no command but the lock attempt: {:?}",
            cmds(&log)
        );
        assert!(state_changing(&fleet.commands(h)).is_empty());
        assert_healthy_at(&fleet, h, OLD);
    }
    for (i, (h, _)) in owners.iter().enumerate() {
        assert_eq!(
            owner_json(h),
            planted[i],
            "{h}: the lock was left as it was"
        );
    }
    assert_eq!(first.outcome("prod-04"), "ok", "{}", first.dump());
    assert_upgraded(&fleet, "prod-04", &fleet.commands("prod-04"));
    assert_no_lock(&fleet, "prod-04");

    // With --break-lock: the stale locks are taken over, the live one is not.
    let mut args: Vec<&str> = ALL_AT_ONCE.to_vec();
    args.push("--break-lock");
    let second = run(&fleet, &args);
    second.assert_exit(2);
    for h in ["prod-01", "prod-03"] {
        assert_eq!(second.outcome(h), "ok", "{h}: {}", second.dump());
        assert_upgraded(&fleet, h, &fleet.commands(h));
        assert_no_lock(&fleet, h);
        let lines = audit(&fleet, h);
        assert!(
            lines.iter().any(|l| {
                let f = audit_fields(l);
                f["run"] == second.run_id() && f["outcome"] == "ok"
            }),
            "{h}: audit line of the upgrade: {lines:?}"
        );
    }
    let live = second.host_finished("prod-02");
    assert_eq!(live["outcome"], "failed", "{live}");
    assert_eq!(live["failed_step"], "host lock", "{live}");
    let message = live["message"].as_str().expect("a message");
    assert!(
        message.contains("locked by run 20250101T000000-002"),
        "a live lock is never broken: {message}"
    );
    assert_eq!(
        owner_json("prod-02"),
        planted[1],
        "the live lock is untouched"
    );
    assert!(state_changing(&fleet.commands("prod-02")).is_empty());
    assert_healthy_at(&fleet, "prod-02", OLD);
    assert_eq!(second.outcome("prod-04"), "skipped", "{}", second.dump());
    assert_eq!(migrations(&fleet, "prod-04"), 1);
    assert_no_lock(&fleet, "prod-04");
}

// --- 6. history, show, and the audit line -----------------------------------------------

#[test]
fn history_and_show_print_what_happened() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );
    assert_eq!(
        plan(&fleet, &[]),
        [vec!["prod-01"], vec!["prod-02"], vec!["prod-03"]]
    );
    fleet.fault("prod-03", pull_fails());
    let secret = "s3cr3t-t0ken-value";
    let token = format!("api_token={secret}");

    let first = run(&fleet, &["-e", &token]);
    first.assert_exit(2);
    assert_eq!(first.outcome("prod-03"), "failed", "{}", first.dump());
    let id = first.run_id();
    let run_dir = first.run_dir();

    // run.json: the inputs as resolved, the secret redacted.
    let rj_text = std::fs::read_to_string(run_dir.join("run.json")).expect("run.json");
    assert!(
        !rj_text.contains(secret),
        "the token is redacted: {rj_text}"
    );
    assert!(
        rj_text.contains("********"),
        "redacted as ********: {rj_text}"
    );
    assert!(
        rj_text.contains(TARGET),
        "the extra vars are recorded: {rj_text}"
    );
    let rj = run_json(&run_dir);
    assert_eq!(rj["controller"], hostname(), "{rj:#}");
    for k in ["operator", "controller", "pid", "started"] {
        assert!(!rj[k].is_null(), "run.json has {k}: {rj:#}");
    }

    let h = history_of(&fleet, &id, &[]);
    assert_eq!(h["ended"], "halted", "{h}");
    assert_eq!(h["ok"], 2, "{h}");
    assert_eq!(h["failed"], 1, "{h}");

    fleet.clear_faults("prod-03");
    let second = resume(&fleet, "last", &["-e", &token]);
    second.assert_exit(0);
    assert_eq!(second.run_id(), id);
    assert_eq!(second.outcome("prod-03"), "ok", "{}", second.dump());

    // history, json: one object per run.
    let all = history_json(&fleet, &[]);
    assert_eq!(all.len(), 1, "one run (resumed, not a new one): {all:#?}");
    let h = &all[0];
    for k in [
        "run_id",
        "started",
        "playbook",
        "target",
        "hosts",
        "ok",
        "failed",
        "duration_ms",
        "ended",
    ] {
        assert!(h.get(k).is_some(), "history has {k}: {h}");
    }
    assert_eq!(h["run_id"], id.as_str());
    assert_eq!(h["ended"], "completed", "{h}");
    assert_eq!(h["hosts"], 3, "{h}");
    assert_eq!(h["ok"], 3, "{h}");
    // The target version: a string, or the list of the run's targets (the contract does not
    // say which).
    assert!(
        h["target"] == TARGET || h["target"] == json!([TARGET]),
        "history's target is {TARGET}: {h}"
    );
    assert!(
        h["playbook"]
            .as_str()
            .unwrap_or_default()
            .contains("simplelogin-upgrade"),
        "{h}"
    );
    assert!(h["duration_ms"].as_u64().is_some(), "{h}");

    // history, text: the table.
    let mut args = strings(&["history", "-i"]);
    args.push(s(&fleet.inventory_path()));
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", fleet::stderr(&out));
    let text = fleet::stdout(&out);
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("RUN"))
        .unwrap_or_else(|| panic!("a header: {text}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["RUN", "STARTED", "PLAYBOOK", "TARGET", "OK", "FAILED", "DURATION", "ENDED"],
        "{text}"
    );
    let rows: Vec<_> = text.lines().filter(|l| l.contains(&id)).collect();
    assert_eq!(rows.len(), 1, "one row for the run: {text}");
    assert!(
        rows[0].contains("completed") && rows[0].contains(TARGET),
        "{text}"
    );

    // show last: the recap again, every host with its outcome.
    let mut args = strings(&["show", "last", "-i"]);
    args.push(s(&fleet.inventory_path()));
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", fleet::stderr(&out));
    let text = fleet::stdout(&out);
    let recap = &text[text
        .find("RECAP")
        .unwrap_or_else(|| panic!("a RECAP: {text}"))..];
    for host in ["prod-01", "prod-02", "prod-03"] {
        let row = recap
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host))
            .unwrap_or_else(|| panic!("a row for {host}: {text}"));
        assert_eq!(
            row.split_whitespace().nth(1),
            Some("ok"),
            "{host}'s outcome: {text}"
        );
    }
    // The same by its id.
    let mut args = strings(&["show", &id, "-i"]);
    args.push(s(&fleet.inventory_path()));
    let by_id = cli(&args);
    assert_eq!(by_id.status.code(), Some(0), "{}", fleet::stderr(&by_id));
    assert!(fleet::stdout(&by_id).contains("RECAP"));

    // show last --host prod-03: its log, both attempts.
    let mut args = strings(&["show", "last", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.extend(strings(&["--host", "prod-03"]));
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", fleet::stderr(&out));
    let text = fleet::stdout(&out);
    // The step, the command as it ran (its script, after `$ `), the first attempt's error,
    // and the end of the second attempt (the last step's message).
    for w in [
        "=== ",
        "pull the new image",
        &format!("$ set -e\ndocker pull {IMAGE}:{TARGET}\n"),
        "manifest unknown",
        "at v4.66.1; the database before it: ",
    ] {
        assert!(text.contains(w), "prod-03's log shows `{w}`:\n{text}");
    }
    let log_file = run_dir.join("hosts").join("prod-03.log");
    assert!(log_file.is_file(), "hosts/prod-03.log");

    // The audit lines on the hosts.
    let me = hostname();
    for host in ["prod-01", "prod-02", "prod-03"] {
        let lines = audit(&fleet, host);
        let fields: Vec<_> = lines.iter().map(|l| audit_fields(l)).collect();
        assert!(
            fields
                .iter()
                .all(|f| f["run"] == id && f["controller"] == me),
            "{host}: {lines:?}"
        );
        let ok: Vec<_> = fields
            .iter()
            .filter(|f| f["from"] == OLD && f["to"] == TARGET && f["outcome"] == "ok")
            .collect();
        assert_eq!(
            ok.len(),
            1,
            "{host}: from={OLD} to={TARGET} outcome=ok: {lines:?}"
        );
        let raw = lines.iter().find(|l| l.contains("outcome=ok")).unwrap();
        assert!(
            raw.contains(&format!("run={id}"))
                && raw.contains("from=v4.65.0 to=v4.66.1 outcome=ok"),
            "{raw}"
        );
    }
    let p3: Vec<_> = audit(&fleet, "prod-03")
        .iter()
        .map(|l| audit_fields(l)["outcome"].clone())
        .collect();
    assert_eq!(
        p3,
        ["failed", "ok"],
        "prod-03: the failed attempt, then the upgrade"
    );

    // Each step's end in the host's log: `--- exit code 0 in 0.1s` (checked last, after everything
    // else this test proves).
    let log = std::fs::read_to_string(&log_file).expect("hosts/prod-03.log");
    let step_ends: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("--- ") && l.contains(" in ") && l.ends_with('s'))
        .collect();
    assert!(
        !step_ends.is_empty()
            && step_ends
                .iter()
                .any(|l| l.starts_with("--- exit code 0 in ")),
        "steps end with `--- exit code 0 in <duration>` in the host's log; its step ends are: {:?}",
        &step_ends[..step_ends.len().min(3)]
    );
}

// --- 7. kill -9 after the point of no return, then --resume -------------------------------

/// Killed while a host migrates (its app already stopped and removed): the resumed run
/// finishes the host from its pre-flight, tolerating the containers that are gone, and keeps
/// the backup the first attempt took before the stop, the only dump of the database as the
/// old version left it, instead of dumping a possibly half-migrated schema.
#[test]
fn kill_9_mid_migration_then_resume_finishes_the_host_with_its_first_backup() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );
    fleet.fault(
        "prod-03",
        json!({"match": "alembic upgrade head", "action": "hang", "scope": "shim", "times": 1}),
    );
    let mut running = spawn_run(&fleet, Path::new(PLAYBOOK), &["--serial", "2"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            running.child.try_wait().expect("try_wait").is_none(),
            "fleetup ended before it could be killed; stderr:\n{}",
            running.stderr_now()
        );
        let migrating = fleet.commands("prod-03").iter().any(|c| {
            c.kind == "docker" && c.ev == "start" && c.cmd.contains("alembic upgrade head")
        });
        // The journal appears once the pre-flight is over.
        let journaled = run_dirs(&state_dir(&fleet))
            .into_iter()
            .find(|dir| dir.join("events.jsonl").exists());
        let prod02_done = journaled.is_some_and(|dir| {
            journal_lenient(&dir)
                .iter()
                .any(|e| e["event"] == "host_finished" && e["host"] == "prod-02")
        });
        if migrating && prod02_done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prod-03 never reached its migration with prod-02 finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.child.kill().expect("SIGKILL fleetup");
    running.child.wait().expect("reap fleetup");
    let killed_at = now();
    let first_backups = backups(&fleet, "prod-03");
    assert_eq!(
        first_backups.len(),
        1,
        "the first attempt's backup: {first_backups:?}"
    );
    let down = fleet.ssh("prod-03", "curl -fsS -m 5 http://127.0.0.1:7777/health");
    assert!(
        !down.status.success(),
        "prod-03's app is down after the kill"
    );
    // The upgrade in progress is on the host: the settings read before the stop, and the
    // path of the dump taken after it.
    let in_progress = in_progress_dir(&fleet, "prod-03");
    let settings = std::fs::read_to_string(in_progress.join("settings.json")).unwrap_or_else(|e| {
        panic!(
            "the killed upgrade left its settings in {}: {e}",
            in_progress.display()
        )
    });
    let saved: Value = serde_json::from_str(&settings).expect("settings.json is JSON");
    assert!(
        saved["containers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x["Name"] == "/sl-app")),
        "settings.json holds sl-app as it ran before the stop: {settings}"
    );
    let marker = std::fs::read_to_string(in_progress.join("backup"))
        .expect("the in-progress dir names the dump");
    assert_eq!(
        Path::new(marker.trim()),
        first_backups[0].0,
        "the in-progress dir names the first attempt's dump"
    );

    let r = resume(&fleet, "last", &[]);
    r.assert_exit(0);
    let resumed = r.run_resumed();
    assert_eq!(
        resumed["interrupted"],
        json!([{"host": "prod-03", "step": "migrate the database"}]),
        "{resumed}"
    );
    assert_healthy_at(&fleet, "prod-03", TARGET);
    let after = since(&fleet, "prod-03", killed_at);
    let dumps: Vec<_> = after
        .iter()
        .filter(|c| c.ev == "start" && c.cmd.contains("pg_dump") && c.kind != "session")
        .collect();
    assert!(
        dumps.is_empty(),
        "no second dump of a half-upgraded database; after the kill:\n{}",
        cmds(&after).join("\n")
    );
    assert_eq!(
        backups(&fleet, "prod-03"),
        first_backups,
        "the first attempt's backup is still the only one"
    );
    let alembic = shim(&after, "end", "alembic upgrade head");
    assert_eq!(alembic.rc, Some(0), "the resumed migration succeeded");
    assert!(
        !in_progress_dir(&fleet, "prod-03").exists(),
        "a finished upgrade leaves no upgrade in progress behind"
    );
    assert_eq!(
        resumed["finished"],
        json!(["prod-01", "prod-02"]),
        "{resumed}"
    );
    for h in ["prod-01", "prod-02"] {
        // Before this test's own health check logs its commands there.
        assert_not_touched_since(&fleet, h, killed_at, "after the kill");
        assert_healthy_at(&fleet, h, TARGET);
    }
}
