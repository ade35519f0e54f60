//! Tests of upgrading a simulated host by hand: the broken upgrade, init before alembic,
//! a dump restored over a migrated schema. Apart because they are the failures fleetup
//! exists to catch, so the simulator must reproduce them exactly: a module of fleet_sim.rs,
//! fleet-sim's own tests.

use crate::fleet::*;
use crate::{health, one, run_ok, with_app, INIT, MIGRATE, PSQL};
use std::time::Duration;

#[test]
fn broken_upgrade_is_reproduced_and_the_correct_one_works() {
    let f = one("v4.66.0");
    let h = "h-01";
    // The naive upgrade: new image, restart, no migration. Nothing at the surface says so.
    run_ok(&f, h, &with_app(&f, h, "v4.66.1", "docker pull simplelogin/app-ci:$V && docker stop sl-app sl-email sl-job-runner && docker rm sl-app sl-email sl-job-runner && sed -i \"s/^SL_VERSION=.*/SL_VERSION=$V/\" .env && docker compose up -d"));
    assert_eq!(health(&f, h), (0, "success".into()));
    assert_eq!(
        run_ok(&f, h, "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.1"
    );
    let st = run_ok(
        &f,
        h,
        "docker inspect --format '{{.Config.Image}} {{.State.Status}}' sl-app sl-job-runner",
    );
    assert_eq!(
        st,
        "simplelogin/app-ci:v4.66.1 running\nsimplelogin/app-ci:v4.66.1 restarting\n"
    );
    let count = |f: &Fleet| -> u64 {
        run_ok(f, h, "docker inspect -f '{{.RestartCount}}' sl-job-runner")
            .trim()
            .parse()
            .unwrap()
    };
    let c1 = count(&f);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(count(&f) > c1, "the restart count climbs");
    let o = f.ssh(h, "docker logs sl-job-runner");
    assert!(
        stderr(&o).contains("column job.priority does not exist"),
        "{}",
        stderr(&o)
    );
    // The schema revision is what tells: not the image's head.
    assert_eq!(run_ok(&f, h, "docker exec sl-db psql -U myuser -d simplelogin -tAc 'SELECT version_num FROM alembic_version'"), "818b4a856f3f\n");
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker run --rm simplelogin/app-ci:v4.66.1 alembic heads"
        ),
        "fd79503179dd (head)\n"
    );
    // Migrate and init from the new image: the job runner recovers, its count stays put.
    let out = f.ssh(h, &with_app(&f, h, "v4.66.1", MIGRATE));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Running upgrade 818b4a856f3f -> fd79503179dd, add job priority"),
        "{}",
        stderr(&out)
    );
    run_ok(&f, h, &with_app(&f, h, "v4.66.1", INIT));
    assert_eq!(
        run_ok(&f, h, "docker inspect -f '{{.State.Status}}' sl-job-runner"),
        "running\n"
    );
    let c2 = count(&f);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(count(&f), c2);
    let st = f.state(h);
    assert_eq!(st["serving"], "v4.66.1");
    assert_eq!(st["env_version"], "v4.66.1");
    assert_eq!(st["db"]["schema"], "fd79503179dd");
    // --rm containers are gone, the name can be used again.
    assert!(!run_ok(&f, h, "docker ps -a --format '{{.Names}}'").contains("sl-migration"));
}

#[test]
fn init_before_alembic_fails_and_old_versions_have_no_version_endpoint() {
    let f = one("v4.64.2");
    let h = "h-01";
    let o = f.ssh(h, "curl -fsS http://127.0.0.1:7777/version");
    assert_eq!(o.status.code(), Some(22));
    assert!(
        stderr(&o).contains("curl: (22) The requested URL returned error: 404"),
        "{}",
        stderr(&o)
    );
    let o = f.ssh(
        h,
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7777/version",
    );
    assert_eq!(stdout(&o), "404");
    run_ok(&f, h, "docker pull simplelogin/app-ci:v4.65.2");
    let o = f.ssh(h, &with_app(&f, h, "v4.65.2", INIT));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Traceback") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    // The running app still serves v4.64.2 until the schema moves under it.
    assert_eq!(health(&f, h).0, 0);
    // Migration without the DB on the network fails like the real one.
    let o = f.ssh(
        h,
        "docker run --rm simplelogin/app-ci:v4.65.2 alembic upgrade head",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("could not translate host name \"sl-db\""),
        "{}",
        stderr(&o)
    );
    // flask db upgrade (the old README) does not work on current images.
    assert_eq!(
        f.ssh(
            h,
            "docker run --rm --network sl-network simplelogin/app-ci:v4.65.2 flask db upgrade"
        )
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn pg_dump_then_psql_restores_the_schema() {
    let f = one("v4.65.0");
    let h = "h-01";
    let dump = pg_dump_is_a_whole_plain_sql_dump(&f, h);
    run_ok(
        &f,
        h,
        "mkdir -p ~/b && docker exec sl-db pg_dump -U myuser simplelogin | gzip > ~/b/db.sql.gz",
    );
    newer_schema_is_not_migrated_back_by_an_older_image(&f, h);
    restore_in_one_transaction_brings_the_dumped_schema_back(&f, h, &dump);
    psql_and_pg_dump_fail_as_postgres_does(&f, h);
}

/// `pg_dump` prints the whole schema and data as plain SQL (the revision, the tables, their
/// rows and constraints). Returns the dump.
fn pg_dump_is_a_whole_plain_sql_dump(f: &Fleet, h: &str) -> String {
    let dump = run_ok(f, h, "docker exec sl-db pg_dump -U myuser simplelogin");
    assert!(
        dump.contains("PostgreSQL database dump complete") && dump.contains("3ebfbaeb76c0"),
        "{dump}"
    );
    assert!(
        dump.contains("CREATE TABLE public.alias (")
            && dump.contains("COPY public.users (id, created_at, email, name) FROM stdin;"),
        "{dump}"
    );
    assert!(dump.contains("ALTER TABLE ONLY public.alias\n    ADD CONSTRAINT alias_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id);"), "{dump}");
    dump
}

/// Migrated to v4.67.0's schema: the old app still serves on it, and only a restore can
/// take it back.
fn newer_schema_is_not_migrated_back_by_an_older_image(f: &Fleet, h: &str) {
    run_ok(f, h, &with_app(f, h, "v4.67.0", MIGRATE));
    assert_eq!(f.state(h)["db"]["schema"], "bb4b0d33ff1a");
    // The old app keeps serving on the newer schema: /health does not look at it.
    assert_eq!(health(f, h).0, 0);
    // An older image cannot migrate a newer schema back.
    let o = f.ssh(h, &with_app(f, h, "v4.65.0", MIGRATE));
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("Can't locate revision identified by 'bb4b0d33ff1a'"));
}

/// Restored from the backup, the database dumps as it did before the migration.
fn restore_in_one_transaction_brings_the_dumped_schema_back(f: &Fleet, h: &str, dump: &str) {
    // Without -i docker exec gives psql no stdin: nothing is restored.
    run_ok(
        f,
        h,
        "gunzip -c ~/b/db.sql.gz | docker exec sl-db psql -U myuser simplelogin",
    );
    assert_eq!(f.state(h)["db"]["schema"], "bb4b0d33ff1a");
    // Drop and re-create the schema, restore, in one transaction that stops at an error.
    run_ok(f, h, &format!("(echo 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;'; gunzip -c ~/b/db.sql.gz) | {PSQL} -v ON_ERROR_STOP=1 --single-transaction"));
    let st = f.state(h);
    assert_eq!(st["db"]["schema"], "3ebfbaeb76c0");
    assert_eq!(st["db"]["users"], 3);
    assert!(!f
        .sql(
            h,
            "SELECT tablename FROM pg_tables WHERE schemaname='public'"
        )
        .contains("alias_audit_log"));
    assert_eq!(
        run_ok(f, h, "docker exec sl-db pg_dump -U myuser simplelogin"),
        dump
    );
}

/// The errors a backup or restore must recognise: bad SQL (exit 0 unless ON_ERROR_STOP),
/// an unknown role or database, sl-db stopped.
fn psql_and_pg_dump_fail_as_postgres_does(f: &Fleet, h: &str) {
    let o = f.ssh(h, &format!("echo 'this is not sql;' | {PSQL}"));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("psql:<stdin>:1: ERROR:  syntax error at or near \"this\""),
        "{}",
        stderr(&o)
    );
    let o = f.ssh(
        h,
        &format!("echo 'this is not sql;' | {PSQL} -v ON_ERROR_STOP=1"),
    );
    assert_eq!(o.status.code(), Some(3));
    let o = f.ssh(h, "docker exec sl-db pg_dump -U postgres simplelogin");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("role \"postgres\" does not exist"));
    let o = f.ssh(h, "docker exec sl-db psql -U myuser -d nope -c 'SELECT 1'");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("FATAL:  database \"nope\" does not exist"),
        "{}",
        stderr(&o)
    );
    run_ok(f, h, "docker stop sl-db");
    let o = f.ssh(h, "docker exec sl-db pg_dump -U myuser simplelogin");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Error response from daemon: container ")
            && stderr(&o).contains(" is not running"),
        "{}",
        stderr(&o)
    );
}
