//! The promotion gate: production follows only a staging run that soaked and is healthy
//! now, because what staging has not survived for a day must not reach every customer.

use super::*;

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
    let missing = "no successful run took stg-01, stg-02 of `staging` to v4.66.1";
    assert_production_is_refused_without_a_staging_run(&fleet, missing);
    let staging_id = staging_runs_without_the_gate(&fleet);
    assert_production_waits_for_the_soak(&fleet, &staging_id);
    assert_skip_gate_overrides_and_says_so(&fleet);
    let later = hours_from_now(25);
    assert_an_unhealthy_staged_host_refuses_production(&fleet, &later);
    assert_production_follows_a_soaked_healthy_staging(&fleet, &later, &staging_id);
}

/// The production hosts, prod-01 the canary.
const PROD: [&str; 3] = ["prod-01", "prod-02", "prod-03"];

/// The gate's flags, then `extra`.
fn gate_with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&GATE[..], extra].concat()
}

/// Production without any staging run (1): `plan` says the gate refuses it, and the run
/// is refused, nothing changed anywhere, the refusal recorded.
fn assert_production_is_refused_without_a_staging_run(fleet: &Fleet, missing: &str) {
    let text = plan_text(&fleet.inventory_path(), &GATE, None);
    let gate = plan_line(&text, "gate");
    assert!(
        gate.contains("`staging` must run v4.66.1 for 24h00m")
            && gate.contains("REFUSES the run now")
            && gate.contains(missing),
        "{text}"
    );

    let before = run_dirs(&state_dir(fleet));
    let r = run_at(fleet, &GATE, None);
    assert_refused(&r, &[missing]);
    for h in fleet.hosts() {
        assert_never_changed(fleet, &h.name);
    }
    let recorded = assert_gate_recorded(&new_run_dir(fleet, &before), "refused");
    assert!(
        recorded["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(missing),
        "{recorded}"
    );
}

/// Staging alone needs no gate (2): it is how the evidence is made. Returns its run's id.
fn staging_runs_without_the_gate(fleet: &Fleet) -> String {
    let staging = run_at(fleet, &gate_with(&["--limit", "staging"]), None);
    staging.assert_exit(0);
    let g = staging.gate_checked();
    assert_eq!(g["verdict"], "not_required", "{g}");
    assert_eq!(g["require_staged"], "staging", "{g}");
    assert_eq!(g["soak_ms"], 86_400_000u64, "{g}");
    let staging_id = staging.run_id();
    assert_gate_recorded(&staging.run_dir(), "not_required");
    for h in ["stg-01", "stg-02"] {
        assert_eq!(staging.outcome(h), "ok", "{}", staging.dump());
        assert_healthy_at(fleet, h, TARGET);
    }
    for h in PROD {
        assert_never_changed(fleet, h);
    }
    staging_id
}

/// Production before the soak ends (the real clock: seconds after staging): refused.
fn assert_production_waits_for_the_soak(fleet: &Fleet, staging_id: &str) {
    let before = run_dirs(&state_dir(fleet));
    let r = run_at(fleet, &gate_with(&["--limit", "production"]), None);
    assert_refused(
        &r,
        &[
            "`staging` has run v4.66.1 for only",
            &format!("(run {staging_id})"),
            "the soak is 24h00m: 23h59m left",
        ],
    );
    for h in PROD {
        assert_never_changed(fleet, h);
    }
    let recorded = assert_gate_recorded(&new_run_dir(fleet, &before), "refused");
    assert!(
        recorded["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("has run v4.66.1 for only"),
        "{recorded}"
    );
}

/// `--skip-gate` overrides the gate (3), and says so: on screen, in the journal, on the host.
fn assert_skip_gate_overrides_and_says_so(fleet: &Fleet) {
    let skipped = run_at(
        fleet,
        &gate_with(&["--limit", "prod-03", "--skip-gate"]),
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
    assert_healthy_at(fleet, "prod-03", TARGET);
    let lines = audit(fleet, "prod-03");
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
        assert_never_changed(fleet, h);
    }
}

/// `later` (25 hours on), but a staged host is not healthy now: refused, the staged
/// hosts checked read-only.
fn assert_an_unhealthy_staged_host_refuses_production(fleet: &Fleet, later: &str) {
    fleet.fault("stg-02", app_down());
    let t = now();
    let r = run_at(fleet, &gate_with(&["--limit", "production"]), Some(later));
    assert_refused(&r, &["stg-02 is not healthy now:"]);
    fleet.clear_faults("stg-02");
    // The seed's broken state: /health still says success, the schema is behind the image.
    fleet.sql(
        "stg-01",
        "UPDATE alembic_version SET version_num = '818b4a856f3f'",
    );
    let r = run_at(fleet, &gate_with(&["--limit", "production"]), Some(later));
    assert_refused(&r, &["stg-01 is not healthy now:", "schema behind"]);
    fleet.sql(
        "stg-01",
        "UPDATE alembic_version SET version_num = 'fd79503179dd'",
    );
    for h in ["stg-01", "stg-02"] {
        let changes = state_changing(&since(fleet, h, t));
        assert!(changes.is_empty(), "{h} is checked read-only: {changes:?}");
    }
    for h in ["prod-01", "prod-02"] {
        assert_never_changed(fleet, h);
    }
}

/// `later`, staging healthy and soaked: `plan` says the gate passes, and production runs,
/// the gate naming the staging run; the staged hosts are checked live, not changed.
fn assert_production_follows_a_soaked_healthy_staging(
    fleet: &Fleet,
    later: &str,
    staging_id: &str,
) {
    // `plan` 25 hours later: the gate passes as far as the journal tells.
    let text = plan_text(&fleet.inventory_path(), &GATE, Some(later));
    let gate = plan_line(&text, "gate");
    assert!(
        gate.contains("passes") && !gate.contains("REFUSES") && gate.contains(staging_id),
        "{text}"
    );

    // Staging healthy and soaked: production runs, and the gate names the staging run.
    let t = now();
    let promoted = run_at(fleet, &gate_with(&["--limit", "production"]), Some(later));
    promoted.assert_exit(0);
    let g = promoted.gate_checked();
    assert_eq!(g["verdict"], "passed", "{g}");
    assert!(
        g["runs"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| *r == staging_id)),
        "the gate names the staging run {staging_id}: {g}"
    );
    assert_gate_recorded(&promoted.run_dir(), "passed");
    for h in ["prod-01", "prod-02"] {
        assert_eq!(promoted.outcome(h), "ok", "{}", promoted.dump());
    }
    // The staged hosts were checked live (their health asked), not changed.
    for h in ["stg-01", "stg-02"] {
        let log = since(fleet, h, t);
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
    for h in PROD {
        assert_healthy_at(fleet, h, TARGET);
    }
}
