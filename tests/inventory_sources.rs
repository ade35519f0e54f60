//! Where fleetup's inventories come from, through the built binary: scripts that fail,
//! hang or print garbage (an error naming the script, with its stderr, before anything
//! else happens), and the inventory Ansible would read when `-i` is not given.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn fleetup(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(FLEETUP)
        .args(args)
        .current_dir(dir)
        .env_remove("ANSIBLE_INVENTORY")
        .env("ANSIBLE_CONFIG", dir.join("none.cfg"))
        .env("HOME", dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `fleetup inventory -i NAME --list` on a script with `body`: it must exit 5 with
/// every one of `wants` in its stderr.
fn script_fails(name: &str, body: &str, env: &[(&str, &str)], wants: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), name, body);
    refused(dir.path(), &["inventory", "-i", name, "--list"], env, wants);
}

/// `fleetup ARGS` exits 5 at once (nothing contacted), with each of `wants` in stderr.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], wants: &[&str]) {
    let started = Instant::now();
    let o = fleetup(dir, args, env);
    assert!(started.elapsed() < Duration::from_secs(10), "{args:?}");
    assert_eq!(o.status.code(), Some(5), "{args:?}: {}", stderr(&o));
    let e = stderr(&o);
    for want in wants {
        assert!(e.contains(want), "{args:?}: wanted {want}, got {e}");
    }
}

#[test]
fn a_failing_script_is_named_with_its_stderr() {
    script_fails(
        "inv.sh",
        "echo 'cannot reach the CMDB' >&2\nexit 3",
        &[],
        &[
            "inv.sh --list: inventory script failed (exit status: 3)",
            "its stderr: cannot reach the CMDB",
        ],
    );
}

#[test]
fn a_hanging_script_is_stopped_after_the_timeout() {
    // The sleep is a child of the script: the whole process group must go.
    script_fails(
        "slow.sh",
        "echo starting >&2\nsleep 30\necho '{}'",
        &[("FLEETUP_INVENTORY_SCRIPT_TIMEOUT", "0.5")],
        &[
            "slow.sh --list: inventory script did not finish in 0.5s",
            "its stderr: starting",
        ],
    );
}

/// A script that leaves a child running (holding its stdout) is read once it exits.
#[test]
fn a_script_leaving_a_background_child_is_read_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "bg.sh",
        "sleep 30 &\necho '{\"web\": [\"w1\"], \"_meta\": {\"hostvars\": {}}}'",
    );
    let started = Instant::now();
    let o = fleetup(dir.path(), &["inventory", "-i", "bg.sh", "--graph"], &[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("|--w1"));
}

#[test]
fn garbage_is_no_inventory() {
    script_fails(
        "garbage.sh",
        "echo 'Traceback (most recent call last):'",
        &[],
        &["garbage.sh --list: inventory script printed no JSON object: expected value"],
    );
    script_fails(
        "list.sh",
        "echo '[1, 2]'",
        &[],
        &["list.sh --list: inventory script printed no JSON object: found a list"],
    );
    script_fails(
        "badhost.sh",
        "if [ \"$1\" = --list ]; then echo '{\"web\": [\"w1\"]}'; else echo 'oops'; fi",
        &[],
        &["badhost.sh --host w1: inventory script printed no JSON object"],
    );
}

#[test]
fn a_bad_script_stops_a_run_before_any_host_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "inv.sh", "exit 1");
    std::fs::write(
        dir.path().join("play.yml"),
        "hosts: all\nsteps:\n  - name: x\n    shell: 'true'\n",
    )
    .unwrap();
    let o = fleetup(dir.path(), &["check", "-i", "inv.sh", "play.yml"], &[]);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        stderr(&o).contains("inv.sh --list: inventory script failed"),
        "{}",
        stderr(&o)
    );
}

/// Without `-i`, both tools read the inventory the same configuration names.
#[test]
fn without_i_the_inventory_is_the_one_ansible_would_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("from_cfg.ini"), "[cfg]\nc1\n").unwrap();
    std::fs::write(d.join("from_env.ini"), "[env]\ne1\n").unwrap();
    std::fs::write(
        d.join("ansible.cfg"),
        "[defaults]\ninventory = from_cfg.ini\n",
    )
    .unwrap();
    for env in [vec![], vec![("ANSIBLE_INVENTORY", "from_env.ini")]] {
        let run = |program: &str, args: &[&str]| {
            let o = Command::new(program)
                .args(args)
                .current_dir(d)
                .env_remove("ANSIBLE_INVENTORY")
                .env_remove("ANSIBLE_CONFIG")
                .env("HOME", d)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let ours = run(FLEETUP, &["inventory", "--list"]);
        assert_eq!(ours, run("ansible-inventory", &["--list"]));
        let want = if env.is_empty() { "\"c1\"" } else { "\"e1\"" };
        assert!(ours.contains(want), "{ours}");
    }
}

#[test]
fn a_plugin_configuration_is_refused_with_the_export_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aws_ec2.yml"),
        "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
    )
    .unwrap();
    refused(
        dir.path(),
        &["inventory", "-i", "aws_ec2.yml", "--list"],
        &[],
        &[
            "aws_ec2.yml:1:9: plugin: this configures the inventory plugin `amazon.aws.aws_ec2`",
            "ansible-inventory -i aws_ec2.yml --list --export -y > inventory.yml",
        ],
    );
}

/// Unlike Ansible, which warns: the host a mistyped `!` term meant to leave out would be
/// upgraded. Exit 5 before any host is contacted (these addresses answer nothing).
#[test]
fn a_limit_exclusion_that_matches_nothing_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "[simplelogin]\nsl-prod-01 ansible_host=192.0.2.1\nsl-prod-02 ansible_host=192.0.2.2\n[canaries]\nsl-prod-01\n",
    )
    .unwrap();
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/simplelogin-upgrade.yml");
    let playbook = playbook.to_str().unwrap();
    refused(
        dir.path(),
        &["run", "-i", "hosts", playbook, "-e", "sl_version=v4.66.1", "--limit", "simplelogin:!sl-prod-2:&canarie"],
        &[],
        &[
            "--limit: `sl-prod-2` (after `!` or `&`) matches no host or group (did you mean `sl-prod-02`?)",
            "`canarie` (after `!` or `&`) matches no host or group (did you mean `canaries`?)",
        ],
    );
    // A plain term that matches nothing still only warns.
    let o = fleetup(
        dir.path(),
        &[
            "check",
            "--offline",
            "-i",
            "hosts",
            playbook,
            "-e",
            "sl_version=v4.66.1",
            "--limit",
            "simplelogin:nosuch",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
