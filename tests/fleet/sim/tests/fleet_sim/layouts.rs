//! Tests of the simulated host's layouts, database and containers (see
//! shared/simplelogin-host.md): a module of fleet_sim.rs, fleet-sim's own tests.

use crate::fleet::*;
use crate::{health, one, run_ok, with_app, MIGRATE, PSQL};
use serde_json::json;
use std::time::{Duration, Instant};

fn port_of(f: &Fleet, h: &str, name: &str) -> String {
    run_ok(f, h, &format!("docker inspect -f '{{{{(index .NetworkSettings.Networks \"sl-network\").IPAddress}}}}' {name}")).trim().to_string()
}

#[test]
fn readme_layout_is_docker_run_with_flags_read_back_by_inspect() {
    let f = Fleet::start(
        Spec::new()
            .host(
                HostSpec::new("r-01", "production", "v4.66.1")
                    .layout("readme")
                    .image("simplelogin/app")
                    .v_prefix(false)
                    .extra_args("sl-app", &["-e", "EXTRA_FLAG=kept"]),
            )
            .host(HostSpec::new("r-02", "production", "v4.67.0").layout("readme")),
    );
    let h = "r-01";
    let app = f.app_path(h).display().to_string();
    sl_app_is_a_docker_run_whose_flags_inspect_reads_back(&f, h, &app);
    images_and_several_names_inspect_as_docker_does(&f, h);
    let ip = containers_answer_on_their_own_network_address(&f, h);
    sl_app_recreated_keeps_its_flags_and_the_published_port(&f, h, &app, &ip);
}

/// No compose file: sl-app is a plain `docker run`, and `docker inspect` shows its image,
/// extra flags, env file, port, restart policy and network as given.
fn sl_app_is_a_docker_run_whose_flags_inspect_reads_back(f: &Fleet, h: &str, app: &str) {
    let ls = run_ok(f, h, &format!("ls -A '{app}'"));
    assert_eq!(
        ls, "dkim.key\ndkim.pub.key\nsimplelogin.env\nsl\n",
        "no compose file, no .env"
    );
    let js: serde_json::Value =
        serde_json::from_str(&run_ok(f, h, "docker inspect sl-app")).unwrap();
    let c = &js[0];
    assert_eq!(c["Name"], "/sl-app");
    assert_eq!(c["Config"]["Image"], "simplelogin/app:4.66.1");
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"EXTRA_FLAG=kept") && env.contains(&"PYTHON_VERSION=3.10.13"),
        "{env:?}"
    );
    assert_eq!(
        c["HostConfig"]["Binds"][2],
        format!("{app}/simplelogin.env:/code/.env")
    );
    assert_eq!(
        c["HostConfig"]["PortBindings"]["7777/tcp"],
        json!([{"HostIp": "127.0.0.1", "HostPort": "7777"}])
    );
    assert_eq!(
        c["HostConfig"]["RestartPolicy"],
        json!({"Name": "always", "MaximumRetryCount": 0})
    );
    assert_eq!(c["HostConfig"]["NetworkMode"], "sl-network");
    assert_eq!(c["Config"]["Cmd"][0], "gunicorn");
    assert_eq!(c["Mounts"][0]["Type"], "bind");
    assert!(c["Config"]["Labels"]["com.docker.compose.project"].is_null());
}

/// A pulled image's own env, the other containers' command and ports by `-f`, and
/// several names at once, as docker prints them.
fn images_and_several_names_inspect_as_docker_does(f: &Fleet, h: &str) {
    let img: serde_json::Value = serde_json::from_str(&run_ok(f, h, "docker pull -q simplelogin/app-ci:v4.67.0 >/dev/null && docker image inspect simplelogin/app-ci:v4.67.0")).unwrap();
    assert!(img[0]["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&json!("PYTHON_VERSION=3.12.8")));
    assert_eq!(run_ok(f, h, "docker inspect -f '{{.Config.Cmd}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}}' sl-email"), "[python email_handler.py] null /code\n");
    assert_eq!(run_ok(f, h, "docker inspect -f '{{range $k, $v := .HostConfig.PortBindings}}{{$k}}{{end}} {{.HostConfig.RestartPolicy.Name}}' sl-db"), "5432/tcp always\n");
    // Several names, one missing: the found ones as one array, the error, exit 1.
    let o = f.ssh(h, "docker inspect -f '{{.Name}}' sl-db nope sl-app");
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (Some(1), "/sl-db\n/sl-app\n".to_string())
    );
    assert_eq!(stderr(&o), "Error: No such object: nope\n");
}

/// sl-app answers on its own address always, on 127.0.0.1 while published; the address
/// is the host's own (another host's cannot reach it), and sl-email's SMTP port answers
/// on its. Returns sl-app's address.
fn containers_answer_on_their_own_network_address(f: &Fleet, h: &str) -> String {
    let ip = port_of(f, h, "sl-app");
    assert!(ip.starts_with("172.18."), "{ip}");
    assert_eq!(
        run_ok(f, h, &format!("curl -fsS http://{ip}:7777/version")),
        "v4.66.1"
    );
    assert_eq!(
        run_ok(f, "r-02", "curl -fsS http://127.0.0.1:7777/version"),
        "v4.67.0"
    );
    let o = f.ssh("r-02", &format!("curl -fsS -m 5 http://{ip}:7777/health"));
    assert_eq!(
        o.status.code(),
        Some(7),
        "another host's container address does not answer"
    );
    let smtp = port_of(f, h, "sl-email");
    assert!(run_ok(
        f,
        h,
        &format!("curl -s -m 5 telnet://{smtp}:20381 </dev/null")
    )
    .starts_with("220 "));
    ip
}

/// Re-created with the recorded flags, it keeps them and gets an address of its own; a
/// second container cannot take its published port (created, not started).
fn sl_app_recreated_keeps_its_flags_and_the_published_port(
    f: &Fleet,
    h: &str,
    app: &str,
    ip: &str,
) {
    run_ok(f, h, "docker stop sl-app && docker rm sl-app");
    assert_eq!(
        f.ssh(h, "curl -sS http://127.0.0.1:7777/health")
            .status
            .code(),
        Some(7)
    );
    run_ok(f, h, &format!("docker run -d --name sl-app -e EXTRA_FLAG=kept -v {app}/simplelogin.env:/code/.env -p 127.0.0.1:7777:7777 --restart always --network sl-network simplelogin/app:4.66.1"));
    assert_ne!(port_of(f, h, "sl-app"), ip);
    assert_eq!(health(f, h), (0, "success".into()));
    let o = f.ssh(
        h,
        "docker run -d --name other -p 127.0.0.1:7777:7777 simplelogin/app:4.66.1",
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Bind for 127.0.0.1:7777 failed: port is already allocated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        run_ok(
            f,
            h,
            "docker ps -a --filter name=other --format '{{.Status}}'"
        ),
        "Created\n"
    );
}

#[test]
fn springcomp_layout_migrates_on_up_and_carries_compose_labels() {
    let f = Fleet::start(
        Spec::new().host(HostSpec::new("s-01", "production", "v4.66.0").layout("springcomp")),
    );
    let h = "s-01";
    let app = f.app_path(h).display().to_string();
    let env = run_ok(&f, h, &format!("cat '{app}/.env'"));
    assert!(
        env.contains("SL_IMAGE=app-ci")
            && env.contains("SL_VERSION=v4.66.0")
            && env.contains("POSTGRES_USER=sl_admin"),
        "{env}"
    );
    let labels = run_ok(&f, h, "docker inspect -f '{{index .Config.Labels \"com.docker.compose.project\"}} {{index .Config.Labels \"com.docker.compose.service\"}} {{index .Config.Labels \"com.docker.compose.project.working_dir\"}} {{index .Config.Labels \"com.docker.compose.project.config_files\"}}' sl-app");
    assert_eq!(
        labels,
        format!("simplelogin app {app} {app}/docker-compose.yaml\n")
    );
    assert_eq!(run_ok(&f, h, "docker inspect -f '{{.HostConfig.RestartPolicy.Name}} {{json .HostConfig.PortBindings}}' sl-app"), "unless-stopped {}\n");
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker ps -a --filter status=exited --format '{{.Names}} {{.State}}' | sort"
        ),
        "sl-init exited\nsl-migration exited\n"
    );
    assert_eq!(
        f.ssh(h, "curl -s http://127.0.0.1:7777/health")
            .status
            .code(),
        Some(7),
        "not published"
    );
    let ip = run_ok(
        &f,
        h,
        "docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' sl-app",
    );
    assert_eq!(
        run_ok(
            &f,
            h,
            &format!("curl -fsS http://{}:7777/health", ip.trim())
        ),
        "success"
    );
    // `up -d` with a new version migrates through its migration and init services.
    run_ok(&f, h, &format!("cd '{app}' && sed -i 's/^SL_VERSION=.*/SL_VERSION=v4.66.1/' .env && docker compose up -d"));
    assert_eq!(f.state(h)["db"]["schema"], "fd79503179dd");
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker exec sl-db psql -U sl_admin simplelogin -tAc 'SELECT count(*) FROM job'"
        ),
        "4\n"
    );
    let ran: Vec<_> = f
        .commands(h)
        .into_iter()
        .filter(|c| c.kind == "container" && c.ev == "end")
        .map(|c| c.cmd)
        .collect();
    assert_eq!(ran, ["alembic upgrade head", "python init_app.py"]);
}

#[test]
fn clean_dump_over_a_newer_schema_fails_or_leaves_tables() {
    let f = Fleet::start(
        Spec::new()
            .group("production", "c", 2, "v4.66.1")
            .with("c-02", |h| HostSpec {
                version: "v4.67.0".into(),
                ..h
            }),
    );
    // v4.66.1 → v4.67.0: the new table references alias; the --clean restore stops on it.
    let h = "c-01";
    run_ok(
        &f,
        h,
        "docker exec sl-db pg_dump --clean --if-exists -U myuser simplelogin > ~/old.sql",
    );
    assert!(
        run_ok(&f, h, "head -c 100000 ~/old.sql").contains("DROP TABLE IF EXISTS public.users;")
    );
    run_ok(&f, h, &with_app(&f, h, "v4.67.0", MIGRATE));
    let o = f.ssh(h, &format!("{PSQL} -v ON_ERROR_STOP=1 < ~/old.sql"));
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("ERROR:  cannot drop constraint alias_pkey on table public.alias because other objects depend on it"), "{}", stderr(&o));
    assert!(stderr(&o).contains("DETAIL:  constraint alias_audit_log_alias_id_fkey on table public.alias_audit_log depends on index public.alias_pkey"), "{}", stderr(&o));
    assert_eq!(
        f.state(h)["db"]["schema"],
        "bb4b0d33ff1a",
        "the revision is still the new one"
    );
    // v4.67.0 → v4.67.1: only an unrelated table is added; the restore "works" but leaves
    // it, and the next upgrade fails for ever.
    let h = "c-02";
    run_ok(
        &f,
        h,
        "docker exec sl-db pg_dump --clean --if-exists -U myuser simplelogin > ~/old.sql",
    );
    run_ok(&f, h, &with_app(&f, h, "v4.67.1", MIGRATE));
    run_ok(&f, h, &format!("{PSQL} -v ON_ERROR_STOP=1 -1 < ~/old.sql"));
    assert_eq!(f.state(h)["db"]["schema"], "bb4b0d33ff1a");
    assert!(f
        .sql(
            h,
            "SELECT tablename FROM pg_tables WHERE schemaname='public'"
        )
        .contains("user_audit_log"));
    let o = f.ssh(h, &with_app(&f, h, "v4.67.1", MIGRATE));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("psycopg2.errors.DuplicateTable) relation \"user_audit_log\" already exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        f.state(h)["db"]["schema"],
        "bb4b0d33ff1a",
        "the failed migration left nothing"
    );
    // DROP TABLE of a referenced table, and a transaction that rolls back on error.
    let o = f.ssh(
        h,
        "echo 'DROP TABLE users;' | docker exec -i sl-db psql -U myuser simplelogin",
    );
    assert!(
        stderr(&o).contains("ERROR:  cannot drop table users because other objects depend on it")
            && stderr(&o).contains("HINT:  Use DROP ... CASCADE"),
        "{}",
        stderr(&o)
    );
    let o = f.ssh(h, "printf 'BEGIN;\\nDELETE FROM email_log;\\nSELECT nope FROM users;\\nCOMMIT;\\n' | docker exec -i sl-db psql -U myuser simplelogin");
    assert!(stdout(&o).ends_with("ROLLBACK\n"), "{}", stdout(&o));
    assert_eq!(f.sql(h, "SELECT count(*) FROM email_log"), "20\n");
    let size: u64 = run_ok(&f, h, "docker exec sl-db psql -U myuser -d simplelogin -t -A -c \"SELECT pg_database_size('simplelogin')\"").trim().parse().unwrap();
    assert!(size > 7_000_000, "{size}");
}

#[test]
fn a_slow_migration_finishes_in_the_daemon_when_its_client_is_killed() {
    let f = one("v4.66.0");
    let h = "h-01";
    let mut r = rule("alembic upgrade", "slow");
    r["seconds"] = json!(2.0);
    r["scope"] = json!("shim");
    f.fault(h, r);
    let mut child = f
        .ssh_command(h, &with_app(&f, h, "v4.66.1", MIGRATE))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f
        .commands(h)
        .iter()
        .any(|c| c.kind == "container" && c.ev == "start")
    {
        assert!(Instant::now() < deadline, "the migration never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker ps --filter name=sl-migration --format '{{.Names}} {{.State}}'"
        ),
        "sl-migration running\n"
    );
    assert_eq!(f.state(h)["db"]["schema"], "818b4a856f3f");
    assert_eq!(run_ok(&f, h, "docker wait sl-migration"), "0\n");
    assert_eq!(f.state(h)["db"]["schema"], "fd79503179dd");
    assert_eq!(
        run_ok(&f, h, "docker ps -a --filter name=sl-migration -q"),
        "",
        "--rm removed it"
    );
    let ran = f
        .commands(h)
        .iter()
        .filter(|c| c.kind == "container" && c.cmd == "alembic upgrade head" && c.ev == "end")
        .count();
    assert_eq!(ran, 1);
}

#[test]
fn a_stopped_email_handler_writes_the_mail_it_was_handling_first() {
    let f = one("v4.66.1");
    let h = "h-01";
    assert_eq!(f.sql(h, "SELECT count(*) FROM email_log"), "20\n");
    f.sql(h, "INSERT INTO users (email) VALUES ('new@example.org')");
    let before = run_ok(&f, h, "docker exec sl-db pg_dump -U myuser simplelogin");
    assert!(before.contains("new@example.org"));
    run_ok(&f, h, "docker stop sl-email sl-app");
    assert_eq!(f.sql(h, "SELECT count(*) FROM email_log"), "22\n");
    let after = run_ok(&f, h, "docker exec sl-db pg_dump -U myuser simplelogin");
    assert!(after.matches("\n21\t").count() > before.matches("\n21\t").count());
    run_ok(&f, h, "docker start sl-email && docker rm -f sl-email");
    assert_eq!(f.sql(h, "SELECT count(*) FROM email_log"), "23\n");
}

#[test]
fn broken_spec_host_and_old_versions() {
    let f = Fleet::start(
        Spec::new()
            .host(HostSpec::new("b-01", "production", "v4.66.1").broken())
            .host(HostSpec::new("o-01", "production", "v4.47.1"))
            .host(
                HostSpec::new("o-02", "production", "v3.4.0")
                    .layout("readme")
                    .image("simplelogin/app")
                    .v_prefix(false),
            ),
    );
    let st = f.state("b-01");
    assert_eq!(st["db"]["schema"], "818b4a856f3f");
    assert_eq!(health(&f, "b-01"), (0, "success".into()));
    assert_eq!(
        run_ok(
            &f,
            "b-01",
            "docker ps --filter status=restarting --format '{{.Names}}'"
        ),
        "sl-job-runner\n"
    );
    assert_eq!(
        f.ssh("o-01", "curl -fsS http://127.0.0.1:7777/health")
            .status
            .code(),
        Some(22),
        "404 before v4.48.0"
    );
    assert_eq!(
        run_ok(&f, "o-02", "docker inspect -f '{{.Config.Image}}' sl-app"),
        "simplelogin/app:3.4.0\n"
    );
}

/// docker lists a container's mounts from a Go map, starting at a random place each time:
/// an unchanged container's mounts come in another order from one inspect to the next,
/// always the same mounts.
#[test]
fn inspect_lists_an_unchanged_containers_mounts_in_changing_order() {
    let f = Fleet::start(Spec::new().host(HostSpec::new("m-01", "production", "v4.66.1")));
    let mut orders = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let out = run_ok(
            &f,
            "m-01",
            "docker inspect --format '{{json .Mounts}}' sl-app",
        );
        let mounts: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        orders.insert(
            mounts
                .iter()
                .map(|m| m["Destination"].to_string())
                .collect::<Vec<_>>(),
        );
    }
    let mut sets: Vec<Vec<String>> = orders.iter().cloned().collect();
    sets.iter_mut().for_each(|o| o.sort());
    sets.dedup();
    assert_eq!(sets.len(), 1, "the same mounts every time: {orders:?}");
    assert!(sets[0].len() > 1, "sl-app has several mounts: {orders:?}");
    assert!(
        orders.len() > 1,
        "listed in more than one order: {orders:?}"
    );
}
