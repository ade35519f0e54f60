//! Maintenance windows: a run waits for its window, refuses with --no-wait, defers a batch
//! that cannot end inside it and resumes in the next one, across a daylight-saving change
//! too, because an upgrade must not spill out of the time the operator announced.

use super::*;

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
    let (id, dir) = run_until_batch_2_is_deferred_on_screen(&fleet);
    assert_the_journal_defers_batch_2_and_leaves_it_untouched(&dir, &later);
    assert_healthy_at(&fleet, "prod-01", TARGET);
    for h in later {
        assert_never_changed(&fleet, h);
    }
    assert_the_next_mornings_resume_finishes_the_rest(&fleet, &id, &later);
}

/// A text run, as an operator sees it, from 09:59:40: batch 1 runs, batch 2 is deferred
/// (exit 3) and the screen says until when and how to resume. The run's id and directory.
fn run_until_batch_2_is_deferred_on_screen(fleet: &Fleet) -> (String, PathBuf) {
    let mut args = strings(&["run", "-i"]);
    args.push(fleetup_cli::s(&fleet.inventory_path()));
    args.push(PLAYBOOK.into());
    args.extend(strings(&VARS));
    args.push("--known-hosts".into());
    args.push(fleetup_cli::s(&fleet.known_hosts_path()));
    args.extend(strings(&[
        "--yes", "--serial", "3", "--forks", "1", "--window", WINDOW,
    ]));
    let r = spawn_args_env(fleet, &args, &[("FLEETUP_NOW", "2026-12-03T09:59:40Z")]).wait_text();
    let screen = r.screen();
    assert_eq!(r.code, 3, "deferred: exit 3; the screen:\n{screen}");
    assert!(
        r.took >= Duration::from_secs(20),
        "batch 1 ran: {:?}",
        r.took
    );
    let dirs = run_dirs(&state_dir(fleet));
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
    (id, dirs[0].clone())
}

/// The journal: the deferral as an event, batch 2 and 3 untouched.
fn assert_the_journal_defers_batch_2_and_leaves_it_untouched(dir: &Path, later: &[&str]) {
    let (events, _) = journal(dir);
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
}

/// The next morning's window: --resume runs the deferred batches and leaves prod-01, done
/// the day before, alone.
fn assert_the_next_mornings_resume_finishes_the_rest(fleet: &Fleet, id: &str, later: &[&str]) {
    let t = now();
    let resumed = resume_at(fleet, id, "2026-12-04T09:00:00Z");
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
    assert_not_touched_since(fleet, "prod-01", t, "by the resumed run");
    for h in ["prod-01", "prod-02", "prod-03", "prod-04"] {
        assert_healthy_at(fleet, h, TARGET);
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
    assert_no_wait_refuses_and_contacts_nothing(&fleet, &at);
    assert_run_counts_down_then_upgrades_once_the_window_opens(&fleet, &at);
}

fn assert_no_wait_refuses_and_contacts_nothing(fleet: &Fleet, at: &[(&str, &str)]) {
    let r = spawn_run_env(
        fleet,
        Path::new(PLAYBOOK),
        &["--window", WINDOW, "--no-wait"],
        at,
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
    let dirs = run_dirs(&state_dir(fleet));
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
}

/// Without --no-wait the run waits on a countdown, and contacts no host (not even for the
/// pre-flight) before the window opens.
fn assert_run_counts_down_then_upgrades_once_the_window_opens(fleet: &Fleet, at: &[(&str, &str)]) {
    let t0 = now();
    let started = Instant::now();
    let r = spawn_run_env(fleet, Path::new(PLAYBOOK), &["--window", WINDOW], at).wait();
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
        assert_healthy_at(fleet, h, TARGET);
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
