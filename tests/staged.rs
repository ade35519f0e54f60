//! Staged rollouts (issue 7): the promotion gate from staging to production with its soak
//! time, pauses that verify the upgraded hosts, and maintenance windows (the wait with its
//! countdown, `--no-wait`, a batch deferred when it does not fit what is left of the window,
//! then resumed in the next one, and a window across a daylight-saving change). The built
//! `fleetup` runs the shipped playbook (or a copy of it with a pause) against the simulated
//! fleet; time is moved with `FLEETUP_NOW`, never waited for; every claim is proven from the
//! hosts' own command logs and state, the journal and what the operator sees.

mod fleet;
mod fleetup_cli;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet::{Fleet, HostSpec, Spec};
use fleetup_cli::{
    assert_healthy_at, assert_not_touched_since, audit, cli_env, cmds, journal, now, run_dirs,
    run_json, since, spawn_args_env, spawn_run_env, state_changing, state_dir, strings, Finished,
    PLAYBOOK, TARGET, VARS,
};
use serde_json::{json, Value};

const OLD: &str = "v4.65.0";
const GATE: [&str; 2] = ["--require-staged", "staging"];
const WINDOW: &str = "daily 09:00-10:01 UTC";

/// The real time `hours` from now, RFC 3339, for `FLEETUP_NOW`.
fn hours_from_now(hours: u64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours as i64);
    fleetup::clock::rfc3339(at)
}

// --- Running fleetup --------------------------------------------------------------------

/// `fleetup run` of the shipped playbook, `--output json`, at the instant `at` (`None`: now).
fn run_at(fleet: &Fleet, extra: &[&str], at: Option<&str>) -> Finished {
    run_playbook_at(fleet, Path::new(PLAYBOOK), extra, at)
}

fn run_playbook_at(fleet: &Fleet, playbook: &Path, extra: &[&str], at: Option<&str>) -> Finished {
    let env: Vec<(&str, &str)> = at.map(|t| ("FLEETUP_NOW", t)).into_iter().collect();
    spawn_run_env(fleet, playbook, extra, &env).wait()
}

/// `fleetup run -i INV --resume <id> --known-hosts K --yes --output json` at `at`.
fn resume_at(fleet: &Fleet, id: &str, at: &str) -> Finished {
    let mut args = strings(&["run", "-i"]);
    args.push(fleetup_cli::s(&fleet.inventory_path()));
    args.extend(strings(&["--resume", id, "--known-hosts"]));
    args.push(fleetup_cli::s(&fleet.known_hosts_path()));
    args.extend(strings(&["--yes", "--output", "json"]));
    spawn_args_env(fleet, &args, &[("FLEETUP_NOW", at)]).wait()
}

/// `fleetup plan -i INV <shipped playbook> -e sl_version=.. <extra>` at `at`: its text.
fn plan_text(inventory: &Path, extra: &[&str], at: Option<&str>) -> String {
    let mut args = strings(&["plan", "-i"]);
    args.push(fleetup_cli::s(inventory));
    args.push(PLAYBOOK.into());
    args.extend(strings(&VARS));
    args.extend(strings(extra));
    let env: Vec<(&str, &str)> = at.map(|t| ("FLEETUP_NOW", t)).into_iter().collect();
    let out = cli_env(&args, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fleetup plan {extra:?} at {at:?}: {}",
        fleet::stderr(&out)
    );
    fleet::stdout(&out)
}

/// The line of `plan`'s text that starts with `label` (`gate`, `windows`, `estimate`).
fn plan_line(text: &str, label: &str) -> String {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{label:<10}")))
        .collect();
    assert_eq!(found.len(), 1, "one `{label}` line in the plan:\n{text}");
    found[0].to_string()
}

/// A copy of the shipped playbook in the fleet's tmp dir with `lines` added to `rollout:`,
/// beside a copy of the vars file it reads (`vars_files: [simplelogin-facts.yml]`).
fn playbook_with(fleet: &Fleet, name: &str, lines: &[&str]) -> PathBuf {
    let facts = Path::new(fleetup_cli::REPO)
        .join(PLAYBOOK)
        .with_file_name("simplelogin-facts.yml");
    std::fs::copy(&facts, fleet.tmp().join("simplelogin-facts.yml"))
        .expect("copy simplelogin-facts.yml beside the playbook");
    let text = std::fs::read_to_string(Path::new(fleetup_cli::REPO).join(PLAYBOOK))
        .expect("the shipped playbook");
    assert_eq!(
        text.lines().filter(|l| *l == "rollout:").count(),
        1,
        "the shipped playbook has one `rollout:` line"
    );
    let added: String = lines.iter().map(|l| format!("\n  {l}")).collect();
    let path = fleet.tmp().join(name);
    std::fs::write(
        &path,
        text.replacen("\nrollout:", &format!("\nrollout:{added}"), 1),
    )
    .expect("write the playbook");
    path
}

impl Finished {
    /// The single `gate_checked` event, which comes right after `run_started`.
    fn gate_checked(&self) -> &Value {
        let found = self.of("gate_checked");
        assert_eq!(found.len(), 1, "one gate_checked:\n{}", self.dump());
        let pos = |kind: &str| self.events.iter().position(|e| e["event"] == kind).unwrap();
        assert_eq!(
            pos("gate_checked"),
            pos("run_started") + 1,
            "gate_checked comes right after run_started:\n{}",
            self.dump()
        );
        for k in ["require_staged", "soak_ms", "verdict", "detail", "runs"] {
            assert!(
                found[0].get(k).is_some(),
                "gate_checked has {k}: {}",
                found[0]
            );
        }
        found[0]
    }

    fn batches_started(&self) -> Vec<u64> {
        self.of("batch_started")
            .iter()
            .map(|e| e["batch"].as_u64().expect("batch"))
            .collect()
    }

    /// The index of the first event of `kind` matching `pred`.
    fn index(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.events
            .iter()
            .position(|e| e["event"] == kind && pred(e))
            .unwrap_or_else(|| panic!("no matching `{kind}` event:\n{}", self.dump()))
    }
}

/// The promotion gate refused the run: exit 6 and the message that says what is missing.
fn assert_refused(r: &Finished, says: &[&str]) {
    assert_eq!(
        r.code,
        6,
        "the gate refuses with exit 6; stderr:\n{}\nevents:\n{}",
        r.stderr,
        r.dump()
    );
    // Only a rehearsal's warning (FLEETUP_NOW) may come before the refusal.
    let first = r
        .stderr
        .lines()
        .find(|l| !l.starts_with("warning: FLEETUP_NOW"))
        .unwrap_or_default();
    assert!(
        first.starts_with("error: the promotion gate refuses this run:"),
        "stderr starts with the refusal:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.trim_end().ends_with("No host was changed."),
        "the refusal ends with `No host was changed.`:\n{}",
        r.stderr
    );
    for w in says {
        assert!(
            r.stderr.contains(w),
            "the refusal says `{w}`:\n{}",
            r.stderr
        );
    }
    assert!(
        r.of("batch_started").is_empty() && r.of("host_started").is_empty(),
        "a refused run starts no batch:\n{}",
        r.dump()
    );
}

// --- The journal ------------------------------------------------------------------------

/// The one run directory that is not in `before`.
fn new_run_dir(fleet: &Fleet, before: &[PathBuf]) -> PathBuf {
    let new: Vec<PathBuf> = run_dirs(&state_dir(fleet))
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "the run left one new run directory: {new:?}");
    new[0].clone()
}

/// run.json's `gate`, with the verdict `verdict`, for `--require-staged staging`.
fn assert_gate_recorded(run_dir: &Path, verdict: &str) -> Value {
    let rj = run_json(run_dir);
    let gate = &rj["gate"];
    assert_eq!(gate["verdict"], verdict, "run.json's gate: {rj:#}");
    assert_eq!(gate["require_staged"], "staging", "{gate}");
    assert_eq!(
        gate["soak_ms"], 86_400_000u64,
        "the soak defaults to 24h: {gate}"
    );
    gate.clone()
}

// --- What the hosts say -----------------------------------------------------------------

/// Nothing ever changed the host: no state-changing command in its whole log, and it still
/// serves the old version (read from its state, without contacting it).
fn assert_never_changed(fleet: &Fleet, name: &str) {
    let changes = state_changing(&fleet.commands(name));
    assert!(
        changes.is_empty(),
        "{name} must not be changed, yet it ran: {changes:?}"
    );
    let st = fleet.state(name);
    assert_eq!(st["serving"], OLD, "{name} still serves {OLD}: {st:#}");
    assert_eq!(st["env_version"], OLD, "{name}'s .env: {st:#}");
}

/// A fault that takes the host's app down as the probe sees it: `/health` cannot connect
/// (curl exit 7). Not an HTTP error (curl -f exit 22): the probe reads that as a version
/// without `/health` (404 before v4.48.0).
fn app_down() -> Value {
    json!({"match": "/health", "action": "fail", "rc": 7, "scope": "shim",
           "stderr": "curl: (7) Failed to connect to 127.0.0.1 port 7777 after 0 ms: Connection refused"})
}

// --- 1-3. The promotion gate ------------------------------------------------------------

/// Two staging hosts and three production hosts (prod-01 the canary), all at v4.65.0. The
/// gate refuses production without a staging run, lets staging itself run, refuses
/// production while staging soaks (real clock), or when a staged host is unhealthy now;
/// `--skip-gate` overrides it, recorded; 25 hours later (`FLEETUP_NOW`) it lets production
/// through, naming the staging run.
#[test]
fn the_promotion_gate_lets_production_follow_a_soaked_healthy_staging() {
    let fleet = Fleet::start(
        Spec::new()
            .group("staging", "stg", 2, OLD)
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );
    let prod = ["prod-01", "prod-02", "prod-03"];
    let missing = "no successful run took stg-01, stg-02 of `staging` to v4.66.1";

    // `plan` tells before any run.
    let text = plan_text(&fleet.inventory_path(), &GATE, None);
    let gate = plan_line(&text, "gate");
    assert!(
        gate.contains("`staging` must run v4.66.1 for 24h00m")
            && gate.contains("REFUSES the run now")
            && gate.contains(missing),
        "{text}"
    );

    // 1. Production without any staging run: refused, nothing changed anywhere.
    let before = run_dirs(&state_dir(&fleet));
    let r = run_at(&fleet, &GATE, None);
    assert_refused(&r, &[missing]);
    for h in fleet.hosts() {
        assert_never_changed(&fleet, &h.name);
    }
    let recorded = assert_gate_recorded(&new_run_dir(&fleet, &before), "refused");
    assert!(
        recorded["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(missing),
        "{recorded}"
    );

    // 2. Staging alone needs no gate: it is how the evidence is made.
    let staging = run_at(&fleet, &[&GATE[..], &["--limit", "staging"]].concat(), None);
    staging.assert_exit(0);
    let g = staging.gate_checked();
    assert_eq!(g["verdict"], "not_required", "{g}");
    assert_eq!(g["require_staged"], "staging", "{g}");
    assert_eq!(g["soak_ms"], 86_400_000u64, "{g}");
    let staging_id = staging.run_id();
    assert_gate_recorded(&staging.run_dir(), "not_required");
    for h in ["stg-01", "stg-02"] {
        assert_eq!(staging.outcome(h), "ok", "{}", staging.dump());
        assert_healthy_at(&fleet, h, TARGET);
    }
    for h in prod {
        assert_never_changed(&fleet, h);
    }

    // Production before the soak ends (the real clock: seconds after staging): refused.
    let before = run_dirs(&state_dir(&fleet));
    let r = run_at(
        &fleet,
        &[&GATE[..], &["--limit", "production"]].concat(),
        None,
    );
    assert_refused(
        &r,
        &[
            "`staging` has run v4.66.1 for only",
            &format!("(run {staging_id})"),
            "the soak is 24h00m: 23h59m left",
        ],
    );
    for h in prod {
        assert_never_changed(&fleet, h);
    }
    let recorded = assert_gate_recorded(&new_run_dir(&fleet, &before), "refused");
    assert!(
        recorded["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("has run v4.66.1 for only"),
        "{recorded}"
    );

    // 3. --skip-gate overrides it, and says so: on screen, in the journal, on the host.
    let skipped = run_at(
        &fleet,
        &[&GATE[..], &["--limit", "prod-03", "--skip-gate"]].concat(),
        None,
    );
    skipped.assert_exit(0);
    assert!(
        skipped.stderr.contains("WARNING: --skip-gate"),
        "{}",
        skipped.stderr
    );
    let g = skipped.gate_checked();
    assert_eq!(g["verdict"], "skipped", "{g}");
    assert_gate_recorded(&skipped.run_dir(), "skipped");
    assert_eq!(skipped.outcome("prod-03"), "ok", "{}", skipped.dump());
    assert_healthy_at(&fleet, "prod-03", TARGET);
    let lines = audit(&fleet, "prod-03");
    let of_run: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&format!("run={}", skipped.run_id())))
        .collect();
    assert!(
        !of_run.is_empty(),
        "prod-03 has an audit line of the run: {lines:?}"
    );
    for l in &of_run {
        assert!(
            l.ends_with(" gate=skipped"),
            "the override is on the host: {l:?}"
        );
    }
    for h in ["prod-01", "prod-02"] {
        assert_never_changed(&fleet, h);
    }

    // 25 hours later, but a staged host is not healthy now: refused, checked read-only.
    let later = hours_from_now(25);
    fleet.fault("stg-02", app_down());
    let t = now();
    let r = run_at(
        &fleet,
        &[&GATE[..], &["--limit", "production"]].concat(),
        Some(&later),
    );
    assert_refused(&r, &["stg-02 is not healthy now:"]);
    fleet.clear_faults("stg-02");
    // The seed's broken state: /health still says success, the schema is behind the image.
    fleet.sql(
        "stg-01",
        "UPDATE alembic_version SET version_num = '818b4a856f3f'",
    );
    let r = run_at(
        &fleet,
        &[&GATE[..], &["--limit", "production"]].concat(),
        Some(&later),
    );
    assert_refused(&r, &["stg-01 is not healthy now:", "schema behind"]);
    fleet.sql(
        "stg-01",
        "UPDATE alembic_version SET version_num = 'fd79503179dd'",
    );
    for h in ["stg-01", "stg-02"] {
        let changes = state_changing(&since(&fleet, h, t));
        assert!(changes.is_empty(), "{h} is checked read-only: {changes:?}");
    }
    for h in ["prod-01", "prod-02"] {
        assert_never_changed(&fleet, h);
    }

    // `plan` 25 hours later: the gate passes as far as the journal tells.
    let text = plan_text(&fleet.inventory_path(), &GATE, Some(&later));
    let gate = plan_line(&text, "gate");
    assert!(
        gate.contains("passes") && !gate.contains("REFUSES") && gate.contains(&staging_id),
        "{text}"
    );

    // Staging healthy and soaked: production runs, and the gate names the staging run.
    let t = now();
    let promoted = run_at(
        &fleet,
        &[&GATE[..], &["--limit", "production"]].concat(),
        Some(&later),
    );
    promoted.assert_exit(0);
    let g = promoted.gate_checked();
    assert_eq!(g["verdict"], "passed", "{g}");
    assert!(
        g["runs"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| *r == staging_id.as_str())),
        "the gate names the staging run {staging_id}: {g}"
    );
    assert_gate_recorded(&promoted.run_dir(), "passed");
    for h in ["prod-01", "prod-02"] {
        assert_eq!(promoted.outcome(h), "ok", "{}", promoted.dump());
    }
    // The staged hosts were checked live (their health asked), not changed.
    for h in ["stg-01", "stg-02"] {
        let log = since(&fleet, h, t);
        assert!(
            log.iter()
                .any(|c| c.kind == "curl" && c.ev == "start" && c.cmd.contains("/health")),
            "{h}'s health is checked live:\n{}",
            cmds(&log).join("\n")
        );
        assert!(
            state_changing(&log).is_empty(),
            "{h}: {:?}",
            state_changing(&log)
        );
    }
    for h in prod {
        assert_healthy_at(&fleet, h, TARGET);
    }
}

// --- 4. A pause verifies the upgraded hosts ---------------------------------------------

/// prod-01 (the canary), prod-02, prod-03, one a batch. A `prompt` pause without a
/// terminal is refused up front. Then: the pause after the canary verifies it and goes on;
/// during the pause after batch 2 the canary goes bad: the run halts, prod-03 never starts.
#[test]
fn a_host_that_goes_bad_during_a_pause_halts_the_run() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 3, OLD)
            .canary("prod-01"),
    );

    let prompt = playbook_with(&fleet, "prompt.yml", &["pause_between_batches: prompt"]);
    let r = run_playbook_at(&fleet, &prompt, &["--serial", "1"], None);
    assert_eq!(r.code, 5, "stderr:\n{}", r.stderr);
    assert!(
        r.stderr.contains("prompt") && r.stderr.contains("not a terminal"),
        "{}",
        r.stderr
    );
    for h in fleet.hosts() {
        assert!(
            fleet.commands(&h.name).is_empty(),
            "{}: refused up front, nothing contacted: {:?}",
            h.name,
            cmds(&fleet.commands(&h.name))
        );
    }

    let paused = playbook_with(
        &fleet,
        "paused.yml",
        &["pause_after_canary: 2s", "pause_between_batches: 3s"],
    );
    let running = spawn_run_env(&fleet, &paused, &["--serial", "1"], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let second_pause = running
            .events_now()
            .iter()
            .any(|e| e["event"] == "pause_started" && e["batch"] == 2);
        if second_pause {
            break;
        }
        if running.has_ended() {
            panic!(
                "fleetup ended before its second pause; stdout:\n{}\nstderr:\n{}",
                running.stdout_now(),
                running.stderr_now()
            );
        }
        assert!(Instant::now() < deadline, "no second pause in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let bad_at = now();
    fleet.fault("prod-01", app_down());
    let r = running.wait();
    r.assert_exit(2);

    // The pause after the canary: verified it, healthy, went on.
    let p1 = r.index("pause_started", |e| e["batch"] == 1);
    assert_eq!(
        r.events[p1],
        json!({"at_ms": r.events[p1]["at_ms"], "event": "pause_started", "batch": 1,
               "duration_ms": 2000, "prompt": false, "verifying": 1}),
    );
    let v1 = r.index("host_verified", |e| e["host"] == "prod-01");
    assert_eq!(r.events[v1]["ok"], true, "{}", r.dump());
    let f1 = r.index("pause_finished", |e| e["batch"] == 1);
    let b2 = r.index("batch_started", |e| e["batch"] == 2);
    assert!(p1 < v1 && v1 < f1 && f1 < b2, "{}", r.dump());
    assert_eq!(r.outcome("prod-02"), "ok", "{}", r.dump());

    // The pause after batch 2: the canary fails its verification, the run halts.
    let p2 = r.index("pause_started", |e| e["batch"] == 2);
    assert_eq!(r.events[p2]["duration_ms"], 3000, "{}", r.events[p2]);
    assert_eq!(r.events[p2]["prompt"], false, "{}", r.events[p2]);
    assert_eq!(
        r.events[p2]["verifying"], 2,
        "prod-01 and prod-02 are verified: {}",
        r.events[p2]
    );
    let bad = r.index("host_verified", |e| {
        e["host"] == "prod-01" && e["ok"] == false
    });
    assert!(p2 < bad, "{}", r.dump());
    assert!(
        r.events[bad]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "the failed verification says why: {}",
        r.events[bad]
    );
    let halted = r.of("halted");
    assert_eq!(halted.len(), 1, "{}", r.dump());
    assert_eq!(
        halted[0]["reason"],
        json!({"reason": "verify_failed", "hosts": ["prod-01"]}),
        "{}",
        halted[0]
    );
    assert_eq!(halted[0]["batch"], 2, "{}", halted[0]);
    assert_eq!(r.batches_started(), [1, 2], "{}", r.dump());
    assert_eq!(r.untouched(), ["prod-03"]);
    assert!(
        r.of("host_started").iter().all(|e| e["host"] != "prod-03"),
        "{}",
        r.dump()
    );
    assert_not_touched_since(&fleet, "prod-03", bad_at, "after the halt");
    assert_never_changed(&fleet, "prod-03");
    fleet.clear_faults("prod-01");
    assert_healthy_at(&fleet, "prod-02", TARGET);
}

impl fleetup_cli::Running {
    /// Whether the process has ended (a zombie not yet reaped counts as ended).
    fn has_ended(&self) -> bool {
        !fleet::pid_alive(self.child.id() as i32)
    }
}

// --- 5. A batch that does not fit the rest of the window is deferred, then resumed -------

/// prod-01 (the canary, its pull slowed to 20 s), then prod-02..04 in one batch at forks 1,
/// in the window `daily 09:00-10:01 UTC` from 09:59:40: the pre-flight of the four hosts
/// (P, about 5 s: each probe watches the restart counts for a second) and batch 1 (no
/// estimate yet; T ≥ 20 s, about 22 s, its own probe and verifications included) run; batch
/// 2 would take about 3T ≥ 60 s, more than the 80 s - P - T left, yet the window is still
/// open: deferred because it does not fit, exit 3, said on screen. Resumed in the next
/// morning's window, the run finishes without touching prod-01 again. The margins hold
/// both ways: the window stays open unless P + T take three times as long as here (27 s;
/// a loaded machine), and batch 2 cannot fit however fast the rest is (4T + P > 80 s).
/// With a 6 s pull and 34 s left, as before, a fast machine could fit batch 2 and a loaded
/// one close the window first.
#[test]
fn a_batch_that_does_not_fit_the_window_is_deferred_then_resumed_in_the_next() {
    let fleet = Fleet::start(
        Spec::new()
            .group("production", "prod", 4, OLD)
            .canary("prod-01"),
    );
    fleet.fault(
        "prod-01",
        json!({"match": "docker pull", "action": "slow", "seconds": 20, "scope": "shim", "times": 1}),
    );
    let later = ["prod-02", "prod-03", "prod-04"];
    // A text run, as an operator sees it.
    let mut args = strings(&["run", "-i"]);
    args.push(fleetup_cli::s(&fleet.inventory_path()));
    args.push(PLAYBOOK.into());
    args.extend(strings(&VARS));
    args.push("--known-hosts".into());
    args.push(fleetup_cli::s(&fleet.known_hosts_path()));
    args.extend(strings(&[
        "--yes", "--serial", "3", "--forks", "1", "--window", WINDOW,
    ]));
    let r = spawn_args_env(&fleet, &args, &[("FLEETUP_NOW", "2026-12-03T09:59:40Z")]).wait_text();
    let screen = r.screen();
    assert_eq!(r.code, 3, "deferred: exit 3; the screen:\n{screen}");
    assert!(
        r.took >= Duration::from_secs(20),
        "batch 1 ran: {:?}",
        r.took
    );
    let dirs = run_dirs(&state_dir(&fleet));
    assert_eq!(dirs.len(), 1, "one run: {dirs:?}");
    let id = dirs[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a run id")
        .to_string();
    for w in [
        "DEFERRED: batch 2 of 2 does not start: it would take about ",
        "deferred: batch 2 and the ones after it wait for the next maintenance window (",
        "2026-12-04 09:00",
        &format!("resume the run with `fleetup run --resume {id}`"),
    ] {
        assert!(screen.contains(w), "the screen says `{w}`:\n{screen}");
    }

    // The journal: the deferral as an event, batch 2 and 3 untouched.
    let (events, _) = journal(&dirs[0]);
    let dump = || {
        events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deferred: Vec<&Value> = events.iter().filter(|e| e["event"] == "deferred").collect();
    assert_eq!(deferred.len(), 1, "one deferred event:\n{}", dump());
    let d = deferred[0];
    assert_eq!(d["batch"], 2, "{d}");
    assert_eq!(d["of"], 2, "{d}");
    assert_eq!(d["next_start"], "2026-12-04T09:00:00Z", "{d}");
    assert!(
        d["next_start_local"]
            .as_str()
            .is_some_and(|s| s.contains("2026-12-04 09:00")),
        "{d}"
    );
    assert!(
        d["estimate_ms"].as_u64().is_some_and(|ms| ms >= 60_000),
        "batch 2's estimate is three times the canary's time, over 20 s: {d}"
    );
    assert!(d["reason"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "run_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{}", dump());
    assert_eq!(finished[0]["exit_code"], 3, "{}", finished[0]);
    assert_eq!(finished[0]["untouched"], json!(later), "{}", finished[0]);
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "batch_started" && e["batch"] != 1),
        "no batch after the first starts:\n{}",
        dump()
    );
    assert_healthy_at(&fleet, "prod-01", TARGET);
    for h in later {
        assert_never_changed(&fleet, h);
    }

    // The next morning's window: --resume runs the deferred batches.
    let t = now();
    let resumed = resume_at(&fleet, &id, "2026-12-04T09:00:00Z");
    resumed.assert_exit(0);
    assert_eq!(resumed.run_id(), id);
    let rr = resumed.of("run_resumed");
    assert_eq!(rr.len(), 1, "{}", resumed.dump());
    assert_eq!(rr[0]["finished"], json!(["prod-01"]), "{}", rr[0]);
    assert_eq!(resumed.batches_started(), [2], "{}", resumed.dump());
    assert!(resumed.of("deferred").is_empty(), "{}", resumed.dump());
    for h in later {
        assert_eq!(resumed.outcome(h), "ok", "{}", resumed.dump());
    }
    // Before this test's own health check logs its commands there.
    assert_not_touched_since(&fleet, "prod-01", t, "by the resumed run");
    for h in ["prod-01", "prod-02", "prod-03", "prod-04"] {
        assert_healthy_at(&fleet, h, TARGET);
    }
}

// --- 6. Outside the window: --no-wait refuses, otherwise a countdown ---------------------

/// Three seconds before the window opens: `--no-wait` refuses (exit 3) without contacting
/// a host; without it, `run` counts down on stderr, contacts nothing until the window
/// opens, then upgrades.
#[test]
fn outside_the_window_no_wait_refuses_and_run_counts_down() {
    let fleet = Fleet::start(
        Spec::new()
            .host(HostSpec::new("prod-01", "production", OLD))
            .host(HostSpec::new("prod-02", "production", OLD)),
    );
    let at = [("FLEETUP_NOW", "2026-12-03T08:59:57Z")];

    let r = spawn_run_env(
        &fleet,
        Path::new(PLAYBOOK),
        &["--window", WINDOW, "--no-wait"],
        &at,
    )
    .wait();
    assert_eq!(r.code, 3, "stderr:\n{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "DEFERRED: batch 1 of 2 does not start: --no-wait, and the maintenance window ({WINDOW}) has no room for it now; the next window with room for it opens Thu 2026-12-03 09:00 UTC. Nothing was contacted"
        )),
        "{}",
        r.stderr
    );
    // The journal says so: `history` shows the run as deferred, and --resume continues it.
    let dirs = run_dirs(&state_dir(&fleet));
    let (events, _) = journal(dirs.last().expect("a run directory"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "deferred", "{events:?}");
    assert_eq!(
        events[0]["next_start"], "2026-12-03T09:00:00Z",
        "{events:?}"
    );
    for h in ["prod-01", "prod-02"] {
        assert!(
            fleet.commands(h).is_empty(),
            "{h}: nothing contacted: {:?}",
            cmds(&fleet.commands(h))
        );
    }

    let t0 = now();
    let started = Instant::now();
    let r = spawn_run_env(&fleet, Path::new(PLAYBOOK), &["--window", WINDOW], &at).wait();
    let took = started.elapsed();
    r.assert_exit(0);
    assert!(
        took >= Duration::from_millis(2500),
        "the run waited for the window: {took:?}"
    );
    let waiting = format!("waiting for the maintenance window ({WINDOW}): batch 1 starts in ");
    let w = r
        .stderr
        .find(&waiting)
        .unwrap_or_else(|| panic!("the countdown on stderr:\n{}", r.stderr));
    let line = r.stderr[w..].lines().next().unwrap_or_default();
    assert!(
        line.contains("2026-12-03 09:00") && line.ends_with("; Ctrl-C cancels"),
        "{line}"
    );
    let open = r
        .stderr
        .find("the maintenance window is open: starting")
        .unwrap_or_else(|| panic!("the window opens on stderr:\n{}", r.stderr));
    assert!(w < open, "{}", r.stderr);
    for h in ["prod-01", "prod-02"] {
        let log = fleet.commands(h);
        let first = log.first().unwrap_or_else(|| panic!("{h} was upgraded"));
        assert!(
            first.t >= t0 + 2.5,
            "{h}: nothing before the window opens (the pre-flight neither); the first command {:.2} s after the start: {} {}",
            first.t - t0,
            first.kind,
            first.cmd
        );
        assert_eq!(r.outcome(h), "ok", "{}", r.dump());
        assert_healthy_at(&fleet, h, TARGET);
    }
}

/// Ctrl-C while `run` waits for the window ends it at once with exit 99, and no host was
/// contacted: the run had not started.
#[test]
fn ctrl_c_during_the_wait_for_the_window_ends_the_run_before_it_starts() {
    let fleet = Fleet::start(Spec::new().host(HostSpec::new("prod-01", "production", OLD)));
    let at = [("FLEETUP_NOW", "2026-12-03T08:59:30Z")];
    let running = spawn_run_env(&fleet, Path::new(PLAYBOOK), &["--window", WINDOW], &at);
    let waiting = Instant::now();
    while !running
        .stderr_now()
        .contains("waiting for the maintenance window")
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "no countdown: {}",
            running.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(running.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT to fleetup");
    let r = running.wait();
    assert_eq!(r.code, 99, "stderr:\n{}", r.stderr);
    assert!(
        r.stderr
            .contains("interrupted before the run started: no host was changed."),
        "{}",
        r.stderr
    );
    assert!(
        fleet.commands("prod-01").is_empty(),
        "nothing contacted: {:?}",
        cmds(&fleet.commands("prod-01"))
    );
}

// --- 7. A window across a daylight-saving change ----------------------------------------

/// `sun 02:00-05:00 Europe/Paris` on the nights the clocks change, seen by `plan`: on
/// 2026-10-25 (05:00 CEST becomes 05:00 CET) the window ends at 04:00 UTC, the night is four
/// hours long; on 2027-03-28 it ends at 03:00 UTC (05:00 CEST), so at 03:30 UTC it is shut.
#[test]
fn a_window_across_a_daylight_saving_change() {
    let dir = tempfile::tempdir().expect("a tmp dir");
    let inventory = dir.path().join("inventory.yml");
    std::fs::write(
        &inventory,
        "all:\n  children:\n    simplelogin:\n      children:\n        production:\n          hosts:\n            prod-01:\n              canary: true\n            prod-02:\n            prod-03:\n",
    )
    .expect("write the inventory");
    let paris = ["--window", "sun 02:00-05:00 Europe/Paris"];
    let windows_at = |at: &str| {
        let text = plan_text(&inventory, &paris, Some(at));
        assert!(
            text.lines().any(|l| l.starts_with("estimate  ")),
            "the plan has an estimate: {text}"
        );
        let line = plan_line(&text, "windows");
        assert!(
            line.contains("sun 02:00-05:00 Europe/Paris (3 hosts): "),
            "{text}"
        );
        line
    };

    // Autumn: 03:30 UTC is 04:30 CET, inside; the window closes at 05:00 CET (04:00 UTC).
    let line = windows_at("2026-10-25T03:30:00Z");
    assert!(
        line.contains("open now, closes in ")
            && (line.contains("closes in 29m") || line.contains("closes in 30m"))
            && line.contains("(Sun 2026-10-25 05:00 CET)"),
        "{line}"
    );
    // At 00:30 UTC (02:30 CEST, the first of the two 02:30s) it has 3h30m to run.
    let line = windows_at("2026-10-25T00:30:00Z");
    assert!(
        line.contains("open now, closes in 3h") && line.contains("(Sun 2026-10-25 05:00 CET)"),
        "{line}"
    );
    // Spring: 03:30 UTC is 05:30 CEST, after the window; the next is a week later.
    let line = windows_at("2027-03-28T03:30:00Z");
    assert!(
        line.contains("closed now, opens in ") && line.contains("(Sun 2027-04-04 02:00 CEST)"),
        "{line}"
    );
}
