//! `history` and `show` tell what happened from the journal alone, and every host keeps an
//! audit line of who ran what, because an operator asked "what changed?" must have an answer.

use super::*;

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

    assert_run_json_holds_the_inputs_redacted(&run_dir, secret);

    let h = history_of(&fleet, &id, &[]);
    assert_eq!(h["ended"], "halted", "{h}");
    assert_eq!(h["ok"], 2, "{h}");
    assert_eq!(h["failed"], 1, "{h}");

    fleet.clear_faults("prod-03");
    let second = resume(&fleet, "last", &["-e", &token]);
    second.assert_exit(0);
    assert_eq!(second.run_id(), id);
    assert_eq!(second.outcome("prod-03"), "ok", "{}", second.dump());

    assert_history_json_has_the_one_resumed_run(&fleet, &id);
    assert_history_table_has_its_row(&fleet, &id);
    assert_show_recaps_every_host(&fleet, &id);
    let log_file = assert_show_host_prints_both_attempts(&fleet, &run_dir);
    assert_audit_lines_on_every_host(&fleet, &id);
    assert_steps_end_with_their_exit_code(&log_file);
}

/// run.json: the inputs as resolved, the secret redacted.
fn assert_run_json_holds_the_inputs_redacted(run_dir: &Path, secret: &str) {
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
    let rj = run_json(run_dir);
    assert_eq!(rj["controller"], hostname(), "{rj:#}");
    for k in ["operator", "controller", "pid", "started"] {
        assert!(!rj[k].is_null(), "run.json has {k}: {rj:#}");
    }
}

/// history, json: one object per run, the resumed run's.
fn assert_history_json_has_the_one_resumed_run(fleet: &Fleet, id: &str) {
    let all = history_json(fleet, &[]);
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
    assert_eq!(h["run_id"], id);
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
}

/// history, text: the table, a row for the run.
fn assert_history_table_has_its_row(fleet: &Fleet, id: &str) {
    let text = stdout_of(fleet, &["history"], &[]);
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("RUN"))
        .unwrap_or_else(|| panic!("a header: {text}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["RUN", "STARTED", "PLAYBOOK", "TARGET", "OK", "FAILED", "DURATION", "ENDED"],
        "{text}"
    );
    let rows: Vec<_> = text.lines().filter(|l| l.contains(id)).collect();
    assert_eq!(rows.len(), 1, "one row for the run: {text}");
    assert!(
        rows[0].contains("completed") && rows[0].contains(TARGET),
        "{text}"
    );
}

/// show last: the recap again, every host with its outcome; and the same by its id.
fn assert_show_recaps_every_host(fleet: &Fleet, id: &str) {
    let text = stdout_of(fleet, &["show", "last"], &[]);
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
    assert!(stdout_of(fleet, &["show", id], &[]).contains("RECAP"));
}

/// show last --host prod-03: its log, both attempts; returns the log's file.
fn assert_show_host_prints_both_attempts(fleet: &Fleet, run_dir: &Path) -> PathBuf {
    let text = stdout_of(fleet, &["show", "last"], &["--host", "prod-03"]);
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
    log_file
}

/// The audit lines on the hosts: who ran what, from which version to which, how it ended.
fn assert_audit_lines_on_every_host(fleet: &Fleet, id: &str) {
    let me = hostname();
    for host in ["prod-01", "prod-02", "prod-03"] {
        let lines = audit(fleet, host);
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
    let p3: Vec<_> = audit(fleet, "prod-03")
        .iter()
        .map(|l| audit_fields(l)["outcome"].clone())
        .collect();
    assert_eq!(
        p3,
        ["failed", "ok"],
        "prod-03: the failed attempt, then the upgrade"
    );
}

/// Each step's end in the host's log: `--- exit code 0 in 0.1s` (checked last, after
/// everything else the test proves).
fn assert_steps_end_with_their_exit_code(log_file: &Path) {
    let log = std::fs::read_to_string(log_file).expect("hosts/prod-03.log");
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
