//! Tests of the docker and docker compose shims' surface (error messages and exit codes,
//! .env and the environment): apart because fleetup reads what docker prints, so the
//! shims must print what the real ones do: a module of fleet_sim.rs, fleet-sim's own tests.

use crate::fleet::*;
use crate::{health, one, run_ok, with_app};

#[test]
fn docker_errors_match_the_real_ones() {
    let f = one("v4.65.0");
    let h = "h-01";
    let cases: &[(&str, i32, &str)] = &[
        ("docker inspect nope", 1, "Error: No such object: nope"),
        ("docker stop nope", 1, "Error response from daemon: No such container: nope"),
        ("docker rm nope", 1, "Error response from daemon: No such container: nope"),
        ("docker rm sl-app", 1, "Error response from daemon: cannot remove container \"/sl-app\": container is running: stop the container before removing or force remove"),
        ("docker pull simplelogin/app-ci:v9.9.9", 1, "Error response from daemon: manifest for simplelogin/app-ci:v9.9.9 not found: manifest unknown: manifest unknown"),
        ("docker exec nope true", 1, "Error response from daemon: No such container: nope"),
        ("docker frobnicate", 1, "docker: 'frobnicate' is not a docker command."),
    ];
    for (cmd, rc, msg) in cases {
        let o = f.ssh(h, cmd);
        assert_eq!(o.status.code(), Some(*rc), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{cmd}: {}", stderr(&o));
    }
    // A kept container blocks its name.
    run_ok(&f, h, "docker run --name sl-migration --network sl-network simplelogin/app-ci:v4.65.0 alembic upgrade head");
    let o = f.ssh(h, "docker run --name sl-migration --network sl-network simplelogin/app-ci:v4.65.0 alembic upgrade head");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("docker: Error response from daemon: Conflict. The container name \"/sl-migration\" is already in use by container \""), "{}", stderr(&o));
    let o = f.ssh(h, "docker run --rm simplelogin/app-ci:v9.9.9 true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("Unable to find image 'simplelogin/app-ci:v9.9.9' locally"));
    assert!(stderr(&o).contains("manifest unknown"));
    // docker run pulls a missing known image.
    let o = f.ssh(
        h,
        "docker run --rm --network sl-network simplelogin/app-ci:v4.66.1 alembic current",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run_ok(&f, h, "docker images --format '{{.Repository}}:{{.Tag}}'")
            .contains("simplelogin/app-ci:v4.66.1")
    );
    // inspect: JSON without --format, the usual fields with it.
    let js: serde_json::Value =
        serde_json::from_str(&run_ok(&f, h, "docker inspect sl-app")).unwrap();
    assert_eq!(js[0]["Config"]["Image"], "simplelogin/app-ci:v4.65.0");
    assert_eq!(
        run_ok(&f, h, "docker inspect -f '{{.State.Running}}' sl-db").trim(),
        "true"
    );
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker ps --filter name=sl-app --format '{{.Names}}'"
        )
        .trim(),
        "sl-app"
    );
    // compose with an unknown version fails before touching anything.
    let o = f.ssh(
        h,
        &with_app(&f, h, "v9.9.9", "SL_VERSION=$V docker compose up -d"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("manifest for simplelogin/app-ci:v9.9.9 not found"),
        "{}",
        stderr(&o)
    );
    assert_eq!(health(&f, h).0, 0);
    let o = f.ssh(h, "cd /tmp && docker compose ps");
    assert!(stderr(&o).contains("no configuration file provided: not found"));
}

#[test]
fn compose_reads_env_and_the_environment_wins() {
    let f = one("v4.66.0");
    let h = "h-01";
    run_ok(
        &f,
        h,
        &with_app(
            &f,
            h,
            "v4.66.1",
            "docker compose stop && SL_VERSION=$V docker compose up -d",
        ),
    );
    // v4.66.1 shares v4.66.0's schema head: no migration needed.
    assert_eq!(
        run_ok(&f, h, "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.1"
    );
    // docker-compose (v1 spelling) and -f work as well; .env still says v4.66.0.
    let app = f.app_path(h).display().to_string();
    run_ok(
        &f,
        h,
        &format!("docker-compose -f '{app}/docker-compose.yml' up -d"),
    );
    assert_eq!(
        run_ok(&f, h, "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.0"
    );
    // SetEnv over SSH reaches the command (sshd has AcceptEnv SL_*).
    let o = std::process::Command::new("/usr/bin/ssh")
        .args(["-o", "SetEnv=SL_VERSION=v4.66.1", "-i"])
        .arg(f.key_path())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", f.known_hosts_path().display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p"])
        .arg(f.port(h).to_string())
        .arg("fleetup-test@127.0.0.1")
        .arg(format!("cd '{app}' && docker compose up -d && docker compose ps --format '{{{{.Service}}}} {{{{.Image}}}}'"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("sl-app simplelogin/app-ci:v4.66.1"),
        "{}",
        stdout(&o)
    );
    let down = f.ssh(h, &format!("cd '{app}' && docker compose down"));
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(f.state(h)["containers"].as_array().unwrap().is_empty());
    assert_eq!(health(&f, h).0, 7);
}

#[test]
fn ps_lists_as_docker_and_compose_do() {
    let f = Fleet::start(
        Spec::new().host(HostSpec::new("s-01", "production", "v4.66.0").layout("springcomp")),
    );
    let h = "s-01";
    let table = run_ok(&f, h, "docker ps");
    let header = table.lines().next().unwrap_or_default();
    assert!(header.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(header.trim_end().ends_with("NAMES"), "{table}");
    assert!(
        table.lines().any(|l| l.trim_end().ends_with("sl-app")),
        "{table}"
    );
    let ids = run_ok(&f, h, "docker ps -q");
    assert_eq!(ids.lines().count(), table.lines().count() - 1, "{ids}");
    assert!(ids.lines().all(|id| id.len() == 12), "{ids}");
    // docker prints one object a line; compose one array.
    for line in run_ok(&f, h, "docker ps --format json").lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row["Names"].is_string(), "{line}");
    }
    let app = f.app_path(h).display().to_string();
    let table = run_ok(&f, h, &format!("cd '{app}' && docker compose ps"));
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("SERVICE"),
        "{table}"
    );
    let rows = run_ok(
        &f,
        h,
        &format!("cd '{app}' && docker compose ps --format json"),
    );
    let rows: serde_json::Value = serde_json::from_str(rows.trim()).unwrap();
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
    assert_eq!(
        run_ok(&f, h, &format!("cd '{app}' && docker compose ps -q"))
            .lines()
            .count(),
        rows.as_array().map_or(0, Vec::len)
    );
}
