//! An upgrade cut short past its point of no return: fleetup killed with SIGKILL while the
//! migration runs (or just after it ran), and the operator's Ctrl-Cs (two: roll back; three:
//! leave the host down). The migration is a `docker run --rm` container that the daemon
//! keeps going when its client dies, so what matters is what the HOST ran: every claim is
//! proven from the hosts' command logs (`container` records are the migrations themselves)
//! and state, and from the journal the run left.

mod fleet;
mod fleetup_cli;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet::{CommandRecord, Fleet, Spec};
use fleetup_cli::{
    assert_healthy_at, backups, cli, cmds, head, journal_lenient, now, run_dirs, s, since,
    spawn_args, state_dir, strings, Finished, Running, IMAGE, PLAYBOOK, TARGET, VARS,
};
use serde_json::{json, Value};

const OLD: &str = "v4.65.0";
const MIGRATION: &str = "alembic upgrade head";

// --- Running fleetup --------------------------------------------------------------------

/// `fleetup run -i INV PLAYBOOK -e ... --known-hosts K --yes [--output json] <extra>`.
fn spawn_upgrade(fleet: &Fleet, json_output: bool, extra: &[&str]) -> Running {
    let mut args = strings(&["run", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.push(PLAYBOOK.into());
    args.extend(strings(&VARS));
    args.push("--known-hosts".into());
    args.push(s(&fleet.known_hosts_path()));
    args.push("--yes".into());
    if json_output {
        args.extend(strings(&["--output", "json"]));
    }
    args.extend(strings(extra));
    spawn_args(fleet, &args)
}

/// `fleetup run -i INV --resume last --known-hosts K --yes --output json`.
fn resume_last(fleet: &Fleet) -> Finished {
    let mut args = strings(&["run", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.extend(strings(&["--resume", "last", "--known-hosts"]));
    args.push(s(&fleet.known_hosts_path()));
    args.extend(strings(&["--yes", "--output", "json"]));
    spawn_args(fleet, &args).wait()
}

fn sigint(running: &Running) {
    let pid = nix::unistd::Pid::from_raw(running.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT to fleetup");
}

/// Polls `cond` every 50 ms until it holds; fails the test past `secs`, or when fleetup
/// ends first (it was meant to be caught in the act).
fn wait_until(
    running: &mut Running,
    what: &str,
    secs: u64,
    mut cond: impl FnMut(&Running) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond(running) {
            return;
        }
        if let Some(status) = running.child.try_wait().expect("try_wait") {
            panic!(
                "fleetup ended ({status}) before {what}; stdout:\n{}\nstderr:\n{}",
                running.stdout_now(),
                running.stderr_now()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not within {secs} s: {what}; stdout:\n{}\nstderr:\n{}",
            running.stdout_now(),
            running.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL, and the kernel's word that it was that.
fn kill_9(running: &mut Running) {
    running.child.kill().expect("SIGKILL fleetup");
    let status = running.child.wait().expect("reap fleetup");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(nix::sys::signal::Signal::SIGKILL as i32)
    );
}

// --- The journal ------------------------------------------------------------------------

/// The one run directory of the fleet's journal (the first attempt and its resumes).
fn the_run_dir(fleet: &Fleet) -> PathBuf {
    let dirs = run_dirs(&state_dir(fleet));
    assert_eq!(dirs.len(), 1, "one run, one run dir: {dirs:?}");
    dirs[0].clone()
}

fn journaled(fleet: &Fleet, event: &str, host: &str) -> bool {
    run_dirs(&state_dir(fleet))
        .first()
        .filter(|d| d.join("events.jsonl").exists())
        .is_some_and(|d| {
            journal_lenient(d)
                .iter()
                .any(|e| e["event"] == event && e["host"] == host)
        })
}

/// How the journal says a host ended (the last `host_finished` for it).
fn journal_outcome(run_dir: &Path, host: &str) -> String {
    let events = journal_lenient(run_dir);
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == "host_finished" && e["host"] == host)
        .unwrap_or_else(|| panic!("no host_finished for {host} in the journal: {events:#?}"));
    last["outcome"].as_str().expect("outcome").to_string()
}

/// What fleetup wrote in the run's own log of a host (`hosts/<host>.log`).
fn host_log(run_dir: &Path, host: &str) -> String {
    std::fs::read_to_string(run_dir.join("hosts").join(format!("{host}.log"))).unwrap_or_default()
}

// --- What the hosts say -----------------------------------------------------------------

/// The migrations that ran on the host: `container` records of `alembic upgrade head`,
/// as (id, start, end record if it ended).
fn migrations(log: &[CommandRecord]) -> Vec<(String, f64, Option<CommandRecord>)> {
    log.iter()
        .filter(|c| c.kind == "container" && c.ev == "start" && c.cmd == MIGRATION)
        .map(|c| {
            let end = log.iter().find(|e| e.ev == "end" && e.id == c.id).cloned();
            (c.id.clone(), c.t, end)
        })
        .collect()
}

/// The host is migrating now: a migration container started and has not ended.
fn migrating(fleet: &Fleet, host: &str) -> bool {
    migrations(&fleet.commands(host))
        .iter()
        .any(|(_, _, end)| end.is_none())
}

/// A shim command (not a session) containing `needle` is running on the host now.
fn shim_running(fleet: &Fleet, host: &str, needle: &str) -> bool {
    let log = fleet.commands(host);
    log.iter().any(|c| {
        c.kind != "session"
            && c.ev == "start"
            && c.cmd.contains(needle)
            && !log.iter().any(|e| e.ev == "end" && e.id == c.id)
    })
}

fn assert_migrated_exactly_once(fleet: &Fleet, host: &str) {
    let log = fleet.commands(host);
    let ran = migrations(&log);
    assert_eq!(
        ran.len(),
        1,
        "{host}: exactly one `{MIGRATION}` container; log:\n{}",
        cmds(&log).join("\n")
    );
    let end = ran[0].2.as_ref().expect("the migration ended");
    assert_eq!(end.rc, Some(0), "{host}: the migration succeeded: {end:?}");
}

/// The database dumps the upgrade took (the rollback's `.after-failure` copies aside).
fn dumps(fleet: &Fleet, host: &str) -> Vec<PathBuf> {
    backups(fleet, host)
        .into_iter()
        .map(|b| b.0)
        .filter(|p| !p.to_string_lossy().ends_with(".after-failure.sql.gz"))
        .collect()
}

fn container<'a>(st: &'a Value, name: &str) -> Option<&'a Value> {
    st["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
}

/// A fault only the docker client (shim) sees, never the SSH session whose script names it.
fn on_shim(pattern: &str, action: &str) -> Value {
    json!({"match": pattern, "action": action, "scope": "shim"})
}

// --- 1. kill -9 while the migration runs, then --resume ---------------------------------

/// fleetup dies while both hosts migrate; the migration containers go on in the daemon. The
/// resume waits for each one still running instead of starting a second beside it, reuses
/// the dump the first attempt took, and finishes both hosts.
#[test]
fn kill_9_during_a_slow_migration_then_resume_waits_for_it_and_never_migrates_twice() {
    let fleet = Fleet::start(Spec::new().group("production", "prod", 2, OLD));
    let hosts = ["prod-01", "prod-02"];
    // Long enough that the migration still runs through the resume's two pre-flights and
    // first steps (about 4 s here): the resume must meet it running.
    for h in hosts {
        fleet.fault(
            h,
            json!({"match": "alembic upgrade", "action": "slow", "seconds": 10, "scope": "shim", "times": 1}),
        );
    }
    let mut running = spawn_upgrade(&fleet, true, &["--canary", "none", "--serial", "2"]);
    wait_until(&mut running, "both hosts migrate", 60, |_| {
        hosts.iter().all(|h| migrating(&fleet, h))
    });
    kill_9(&mut running);
    let killed_at = now();

    let first_dumps: Vec<_> = hosts.iter().map(|h| dumps(&fleet, h)).collect();
    for (h, d) in hosts.iter().zip(&first_dumps) {
        assert_eq!(d.len(), 1, "{h}: the first attempt's dump: {d:?}");
        // The client died; the container did not.
        let st = fleet.state(h);
        let m = container(&st, "sl-migration")
            .unwrap_or_else(|| panic!("{h}: sl-migration outlives fleetup: {st:#}"));
        assert_eq!(m["status"], "running", "{h}: {m}");
        assert_eq!(st["db"]["schema"], head(OLD), "{h}: not migrated yet");
    }

    let r = resume_last(&fleet);
    r.assert_exit(0);
    let run_dir = the_run_dir(&fleet);
    for (h, first) in hosts.iter().zip(&first_dumps) {
        assert_eq!(r.outcome(h), "ok", "{h}:\n{}", r.dump());
        assert_healthy_at(&fleet, h, TARGET);
        assert_migrated_exactly_once(&fleet, h);
        let after = since(&fleet, h, killed_at);
        let again: Vec<_> = after
            .iter()
            .filter(|c| c.kind == "docker" && c.ev == "start" && c.cmd.contains(MIGRATION))
            .collect();
        assert!(
            again.is_empty(),
            "{h}: the resume started no migration of its own: {again:?}"
        );
        assert!(
            host_log(&run_dir, h).contains("a migration is still running: waiting for it"),
            "{h}: the resume met the migration running and waited:\n{}",
            host_log(&run_dir, h)
        );
        assert_eq!(
            &dumps(&fleet, h),
            first,
            "{h}: the first attempt's dump is reused, no second one taken"
        );
        let dumped: Vec<_> = after
            .iter()
            .filter(|c| c.kind != "session" && c.ev == "start" && c.cmd.contains("pg_dump"))
            .collect();
        assert!(dumped.is_empty(), "{h}: no dump after the kill: {dumped:?}");
    }
}

// --- 2. kill -9 after the migration ran, then --resume -----------------------------------

/// Whether `host`'s fault rules matching `pattern` have all been taken: a session logs its
/// start a moment before it takes its fault.
fn spent(fleet: &Fleet, host: &str, pattern: &str) -> bool {
    !fleet
        .faults(host)
        .iter()
        .any(|r| r["match"] == pattern && r["times"] != json!(0))
}

/// fleetup dies after the migration container ended but before the host finished: the
/// resume finds the schema at the new head and goes on without migrating again.
#[test]
fn kill_9_after_the_migration_ran_then_resume_finishes_without_migrating_again() {
    let fleet = Fleet::start(Spec::new().group("production", "prod", 1, OLD));
    let h = "prod-01";
    // The step after the migration waits (its script not yet run) until fleetup is
    // killed: else, under load, the app could be started on the target before the kill.
    const INIT: &str = "docker rm -f sl-init";
    fleet.fault(
        h,
        json!({"match": INIT, "action": "hang", "scope": "session", "times": 1}),
    );
    let mut running = spawn_upgrade(&fleet, true, &[]);
    wait_until(
        &mut running,
        "the migration ended and the next step waits",
        60,
        |_| {
            let commands = fleet.commands(h);
            let waits =
                |c: &CommandRecord| c.kind == "session" && c.ev == "start" && c.cmd.contains(INIT);
            let migrated = migrations(&commands)
                .iter()
                .any(|(_, _, end)| end.is_some());
            migrated && commands.iter().any(waits) && spent(&fleet, h, INIT)
        },
    );
    kill_9(&mut running);
    let killed_at = now();
    assert!(
        !journaled(&fleet, "host_finished", h),
        "{h} was killed before it finished"
    );
    let st = fleet.state(h);
    assert_eq!(st["db"]["schema"], head(TARGET), "migrated: {st:#}");
    assert_ne!(
        st["serving"], TARGET,
        "not started on the target yet: {st:#}"
    );
    let first_dumps = dumps(&fleet, h);
    assert_eq!(first_dumps.len(), 1, "{first_dumps:?}");

    let r = resume_last(&fleet);
    r.assert_exit(0);
    assert_eq!(r.outcome(h), "ok", "{}", r.dump());
    assert_healthy_at(&fleet, h, TARGET);
    assert_migrated_exactly_once(&fleet, h);
    let after = since(&fleet, h, killed_at);
    assert!(
        !after
            .iter()
            .any(|c| c.kind == "docker" && c.cmd.contains(MIGRATION)),
        "no migration started after the kill:\n{}",
        cmds(&after).join("\n")
    );
    assert_eq!(dumps(&fleet, h), first_dumps, "the first dump is reused");
}

// --- 3. Two Ctrl-Cs during a hanging migration --------------------------------------------

/// Starts the upgrade of `host` with its migration hanging (and `faults` besides), and
/// presses Ctrl-C twice once it hangs: the second after the first is acknowledged.
fn interrupt_twice_during_the_migration(fleet: &Fleet, host: &str, faults: &[Value]) -> Running {
    fleet.fault(host, on_shim("alembic upgrade", "hang"));
    for f in faults {
        fleet.fault(host, f.clone());
    }
    let mut running = spawn_upgrade(fleet, false, &[]);
    wait_until(&mut running, "the migration hangs", 60, |_| {
        shim_running(fleet, host, MIGRATION)
    });
    sigint(&running);
    wait_until(&mut running, "STOPPING", 10, |r| {
        r.stdout_now().contains("STOPPING")
    });
    sigint(&running);
    running
}

/// Past the point of no return, the second Ctrl-C ends the migration on the host and rolls
/// the host back: the old database revision, the old version's containers running again.
/// The run says it was interrupted, not that a failure threshold was crossed.
#[test]
fn two_ctrl_c_during_the_migration_roll_the_host_back() {
    let fleet = Fleet::start(Spec::new().group("production", "prod", 1, OLD));
    let h = "prod-01";
    let running = interrupt_twice_during_the_migration(&fleet, h, &[]);
    let out = running.wait_text();
    let screen = out.screen();
    assert_eq!(out.code, 99, "{screen}");

    let run_dir = the_run_dir(&fleet);
    assert_eq!(journal_outcome(&run_dir, h), "rolled_back", "{screen}");
    let log = fleet.commands(h);
    let ended = log
        .iter()
        .find(|c| c.kind == "docker" && c.ev == "end" && c.cmd.contains(MIGRATION))
        .unwrap_or_else(|| panic!("the migration's client ended:\n{}", cmds(&log).join("\n")));
    assert!(ended.signal.is_some(), "ended by a signal: {ended:?}");
    assert!(migrations(&log).is_empty(), "no migration container ran");

    let st = fleet.state(h);
    assert_eq!(st["db"]["schema"], head(OLD), "the old revision: {st:#}");
    for c in ["sl-app", "sl-email", "sl-job-runner"] {
        let found = container(&st, c).unwrap_or_else(|| panic!("{c} again: {st:#}"));
        assert_eq!(found["status"], "running", "{c}: {found}");
        assert_eq!(found["image"], format!("{IMAGE}:{OLD}"), "{c}: {found}");
    }
    assert_healthy_at(&fleet, h, OLD);

    let recap = &screen[screen
        .find("RECAP")
        .unwrap_or_else(|| panic!("a recap: {screen}"))..];
    assert!(recap.contains("interrupted"), "says interrupted:\n{recap}");
    assert!(
        !recap.contains("max_fail_percentage"),
        "an interrupted run is not blamed on max_fail_percentage:\n{recap}"
    );
    assert!(
        recap.contains(&format!("{h} was rolled back")),
        "names the rollback:\n{recap}"
    );
}

// --- 4. Three Ctrl-Cs: the rollback is abandoned, then --resume --------------------------

/// The third Ctrl-C ends the rollback too: the host is left down, and said to be so in the
/// recap (with the command that finishes it), in `history` and by `status`; `--resume`
/// then finishes the upgrade.
#[test]
fn three_ctrl_c_leave_the_host_down_and_named_then_resume_finishes_it() {
    let fleet = Fleet::start(Spec::new().group("production", "prod", 1, OLD));
    let h = "prod-01";
    // Only the rollback's restore runs psql in one transaction, from stdin.
    let restore_hangs = on_shim("--single-transaction", "hang");
    let mut running = interrupt_twice_during_the_migration(&fleet, h, &[restore_hangs]);
    wait_until(&mut running, "the rollback's restore hangs", 30, |_| {
        shim_running(&fleet, h, "--single-transaction")
    });
    sigint(&running);
    let out = running.wait_text();
    let screen = out.screen();
    assert_eq!(out.code, 99, "{screen}");

    let run_dir = the_run_dir(&fleet);
    let id = run_dir
        .file_name()
        .expect("the run id")
        .to_string_lossy()
        .into_owned();
    assert_eq!(journal_outcome(&run_dir, h), "abandoned", "{screen}");
    let recap = &screen[screen
        .find("RECAP")
        .unwrap_or_else(|| panic!("a recap: {screen}"))..];
    assert!(
        recap
            .lines()
            .any(|l| l.starts_with(h) && l.contains("DOWN, NOT ROLLED BACK")),
        "{h}'s recap line says DOWN, NOT ROLLED BACK:\n{recap}"
    );
    // Checked last, once history, status and the resume have had their say.
    let resume_cmd = format!("fleetup run --resume {id}");
    let host_line_names_resume = recap
        .lines()
        .any(|l| l.contains("DOWN, NOT ROLLED BACK") && l.contains(&resume_cmd));
    let st = fleet.state(h);
    assert!(st["serving"].is_null(), "{h} is down: {st:#}");

    assert_history_lists_the_host_down(&fleet, &id, h);
    assert_status_says_the_host_is_not_well(&fleet, h);
    // The faults gone, the resume finishes the upgrade from where it was left.
    fleet.clear_faults(h);
    assert_resume_finishes_the_upgrade(&fleet, h);

    assert!(
        host_line_names_resume,
        "a recap line says {h} is DOWN, NOT ROLLED BACK with `{resume_cmd}`:\n{recap}"
    );
}

/// `history` lists run `id` with `h` down.
fn assert_history_lists_the_host_down(fleet: &Fleet, id: &str, h: &str) {
    let mut args = strings(&["history", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.extend(strings(&["--output", "json"]));
    let hist = cli(&args);
    assert_eq!(hist.status.code(), Some(0), "{}", fleet::stderr(&hist));
    let runs: Vec<Value> = fleet::stdout(&hist)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a history line"))
        .collect();
    let this = runs
        .iter()
        .find(|r| r["run_id"] == id)
        .unwrap_or_else(|| panic!("run {id} in the history: {runs:#?}"));
    assert_eq!(this["down"], json!([h]), "{this:#}");
}

/// `status` says the host is not well: exit 2, and names it.
fn assert_status_says_the_host_is_not_well(fleet: &Fleet, h: &str) {
    let mut args = strings(&["status", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.push("--known-hosts".into());
    args.push(s(&fleet.known_hosts_path()));
    let status = cli(&args);
    assert_eq!(
        status.status.code(),
        Some(2),
        "status of a host left down:\n{}\n{}",
        fleet::stdout(&status),
        fleet::stderr(&status)
    );
    assert!(
        fleet::stdout(&status).contains(h),
        "{}",
        fleet::stdout(&status)
    );
}

/// `--resume last` upgrades the host, migrating once, from the one dump of the old
/// database.
fn assert_resume_finishes_the_upgrade(fleet: &Fleet, h: &str) {
    let r = resume_last(fleet);
    r.assert_exit(0);
    assert_eq!(r.outcome(h), "ok", "{}", r.dump());
    assert_healthy_at(fleet, h, TARGET);
    assert_migrated_exactly_once(fleet, h);
    assert_eq!(dumps(fleet, h).len(), 1, "one dump of the old database");
}
