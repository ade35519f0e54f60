//! The `fleetup` binary as an operator runs it: plan, check, exit codes and messages.
//! No host is contacted by any of these commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fleetup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the fleetup binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 10 production hosts (the 4th a canary) and 2 staging hosts.
fn fleet_inventory(dir: &Path) -> PathBuf {
    let mut text = String::from("all:\n  children:\n    simplelogin:\n      children:\n        staging:\n          hosts:\n            stg-1:\n            stg-2:\n        production:\n          hosts:\n");
    for i in 1..=10 {
        text.push_str(&format!("            prod-{i:02}:\n"));
        if i == 4 {
            text.push_str("              canary: true\n");
        }
    }
    let path = dir.join("fleet.yml");
    std::fs::write(&path, text).unwrap();
    path
}

const PLAYBOOK: &str = "playbooks/simplelogin-upgrade.yml";

/// Runs `fleetup COMMAND -i <12-host inventory> PLAYBOOK ARGS...`.
fn on_fleet(command: &str, playbook: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let inv = fleet_inventory(dir.path());
    let mut all = vec![command, "-i", inv.to_str().unwrap(), playbook];
    all.extend_from_slice(args);
    fleetup(&all)
}

#[test]
fn plan_json_canary_alone_then_serial_batches() {
    let args = [
        "-e",
        "sl_version=v4.66.1",
        "--limit",
        "production",
        "--serial",
        "1,3,50%",
    ];
    let out = on_fleet(
        "plan",
        PLAYBOOK,
        &[&args[..], &["--output", "json"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).expect("exactly one JSON object");
    let batches: Vec<(Vec<String>, bool)> = plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let hosts = b["hosts"].as_array().unwrap().iter();
            let hosts = hosts.map(|h| h.as_str().unwrap().to_string());
            (hosts.collect(), b["canary"].as_bool().unwrap())
        })
        .collect();
    let names = |r: &[usize]| r.iter().map(|i| format!("prod-{i:02}")).collect::<Vec<_>>();
    assert_eq!(
        batches,
        vec![
            (names(&[4]), true),
            (names(&[1]), false),
            (names(&[2, 3, 5]), false),
            (names(&[6, 7, 8, 9, 10]), false),
        ]
    );
}

#[test]
fn plan_text_lists_batches_and_verbose_renders_steps() {
    let args = [
        "-e",
        "sl_version=v4.66.1",
        "-e",
        "sl_app_path='/srv/simple login'",
    ];
    let out = on_fleet(
        "plan",
        PLAYBOOK,
        &[&args[..], &["--limit", "staging", "-v"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // serial [1, 5, 25%] of the playbook: one host, then the other.
    assert!(text.contains("batch 1/2  1 host     stg-1\n"), "{text}");
    assert!(text.contains("batch 2/2  1 host     stg-2\n"), "{text}");
    // What a host is (its image, its layout) is read on the host: a step that needs it is
    // previewed as written; one that needs only variables is rendered.
    assert!(
        text.contains("docker pull {{ sl_target_image | quote }}"),
        "{text}"
    );
    assert!(
        text.contains("saved=/var/lib/fleetup/upgrade-in-progress/settings.json"),
        "{text}"
    );
}

#[test]
fn missing_required_variable_is_exit_5_with_place() {
    let out = on_fleet("plan", PLAYBOOK, &[]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    let expected = "playbooks/simplelogin-upgrade.yml:22:17: required_vars[0]: \
                    required variable `sl_version` is not set";
    assert!(err.contains(expected), "{err}");
    assert!(err.contains("nothing was contacted"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn input_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("pb.yml");
    let pb_path = pb.to_str().unwrap();
    let steps =
        "name: t\nhosts: production\nsteps:\n  - name: a\n    shell: echo {{ sl_verison }}\n";
    std::fs::write(&pb, format!("{steps}    retires: 3\n")).unwrap();
    let out = on_fleet("check", pb_path, &[]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    let expected = "pb.yml:6:5: steps[0].retires: unknown key (did you mean `retries`?)";
    assert!(err.contains(expected), "{err}");

    std::fs::write(&pb, steps).unwrap();
    let out = on_fleet("check", pb_path, &["-e", "sl_version=1"]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    let expected = "pb.yml:5:12: steps[0].shell: undefined variable `sl_verison` \
                    (did you mean `sl_version`?), for every host (10)";
    assert!(err.contains(expected), "{err}");
}

#[test]
fn empty_selection_is_an_error() {
    let out = on_fleet(
        "plan",
        PLAYBOOK,
        &["-e", "sl_version=v1", "--limit", "prodution"],
    );
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    let expected = "error: <command line --limit>: --limit: `prodution` matches no host or \
                    group (did you mean `production`?)";
    assert!(err.contains(expected), "{err}");
    let expected = "`prodution` leaves no host of the playbook's `simplelogin`";
    assert!(err.contains(expected), "{err}");
}

#[test]
fn bad_serial_and_usage_errors_are_exit_5() {
    let out = on_fleet("plan", PLAYBOOK, &["--serial", "0"]);
    assert_eq!(out.status.code(), Some(5));
    let err = stderr(&out);
    assert!(err.contains("serial `0` would never start a host"), "{err}");
    let out = fleetup(&["plan", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(5));
    let out = fleetup(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Exit codes"));
}

#[test]
fn check_validates_the_shipped_example() {
    let out = fleetup(&[
        "check",
        "-i",
        "inventories/example.yml",
        PLAYBOOK,
        "-e",
        "sl_version=v4.66.1",
        // The example's addresses are documentation ranges: never contact them.
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok: playbooks/simplelogin-upgrade.yml is valid for 7 hosts"));
    assert!(text.contains("nothing was contacted"), "{text}");
}

#[test]
fn every_command_shows_an_example_in_its_help() {
    for command in ["plan", "check", "run", "exec", "history", "show"] {
        let out = fleetup(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains("Example:"), "{command}");
    }
}
