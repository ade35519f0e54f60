//! A pause between batches verifies the hosts already upgraded, because a problem that
//! shows only after some minutes must halt the run before it spreads.

use super::*;

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
    assert_a_prompt_pause_without_a_terminal_is_refused_up_front(&fleet);
    let (r, bad_at) = run_until_the_canary_goes_bad_in_the_second_pause(&fleet);
    assert_the_pause_after_the_canary_verified_it_and_went_on(&r);
    assert_the_canary_failed_its_verification_after_batch_2(&r);
    assert_halted_before_prod03_started(&r);
    assert_not_touched_since(&fleet, "prod-03", bad_at, "after the halt");
    assert_never_changed(&fleet, "prod-03");
    fleet.clear_faults("prod-01");
    assert_healthy_at(&fleet, "prod-02", TARGET);
}

/// Nobody could answer the prompt, so the run is refused before any host is contacted.
fn assert_a_prompt_pause_without_a_terminal_is_refused_up_front(fleet: &Fleet) {
    let prompt = playbook_with(fleet, "prompt.yml", &["pause_between_batches: prompt"]);
    let r = run_playbook_at(fleet, &prompt, &["--serial", "1"], None);
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
}

/// A run with a pause after the canary and between batches; once the pause after batch 2
/// has begun, prod-01's app goes down. The run to its end (exit 2), and when it went bad.
fn run_until_the_canary_goes_bad_in_the_second_pause(fleet: &Fleet) -> (Finished, f64) {
    let paused = playbook_with(
        fleet,
        "paused.yml",
        &["pause_after_canary: 2s", "pause_between_batches: 3s"],
    );
    let running = spawn_run_env(fleet, &paused, &["--serial", "1"], &[]);
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
    (r, bad_at)
}

/// The pause after the canary: verified it, healthy, went on.
fn assert_the_pause_after_the_canary_verified_it_and_went_on(r: &Finished) {
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
}

/// The pause after batch 2 verifies both upgraded hosts, and the canary fails, saying why.
fn assert_the_canary_failed_its_verification_after_batch_2(r: &Finished) {
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
}

/// One halt, on the failed verification in batch 2: the problem did not reach prod-03.
fn assert_halted_before_prod03_started(r: &Finished) {
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
}

impl fleetup_cli::Running {
    /// Whether the process has ended (a zombie not yet reaped counts as ended).
    fn has_ended(&self) -> bool {
        !fleet::pid_alive(self.child.id() as i32)
    }
}
