//! End-to-end tests of the SimpleLogin upgrade: the built `fleetup` binary runs the shipped
//! playbook (`playbooks/simplelogin-upgrade.yml`) against the simulated fleet exactly as an
//! operator would (`run -i ... --known-hosts ... --yes --output json`, strict host keys),
//! and every claim is proven from the hosts' own state and command logs, not from what
//! fleetup says about them.
//!
//! The helpers, the happy path and the backup's naming are here; what goes wrong is in
//! `tests/upgrade/`: a broken upgrade caught (`broken.rs`), failures mid-upgrade
//! (`mid_upgrade.rs`).

#[path = "upgrade/broken.rs"]
mod broken;
mod fleet;
mod fleetup_cli;
#[path = "upgrade/mid_upgrade.rs"]
mod mid_upgrade;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet::{CommandRecord, Fleet, HostSpec, Spec};
use fleetup_cli::{
    backups, head, is_state_changing, plan, run, shim, since, spawn_run, Finished, IMAGE, PLAYBOOK,
    REPO, TARGET,
};
use serde_json::{json, Value};

// --- Running fleetup --------------------------------------------------------------------

/// Keep reconnection tests fast.
const FAST_RECONNECT: [&str; 4] = ["--reconnect-attempts", "3", "--reconnect-delay", "0.2"];

impl Finished {
    /// When the rollout itself began: the fleet-wide read-only pre-flight runs before it,
    /// on every host, so "touched by the rollout" means "a command after this".
    fn rollout_start(&self) -> f64 {
        self.run_started()["at_ms"].as_f64().expect("at_ms") / 1000.0
    }

    /// A host's command log from the rollout's start on (the pre-flight left out).
    fn rollout_log(&self, fleet: &Fleet, name: &str) -> Vec<CommandRecord> {
        since(fleet, name, self.rollout_start())
    }

    fn started(&self, host: &str) -> bool {
        self.of("host_started").iter().any(|e| e["host"] == host)
    }

    /// What a host's step printed on stderr (its tail), as the run reported it.
    fn stderr_of(&self, host: &str, step: &str) -> String {
        let done = self.of("step_finished");
        let found = done.iter().find(|e| e["host"] == host && e["name"] == step);
        found.unwrap_or_else(|| panic!("no step `{step}` on {host}:\n{}", self.dump()))
            ["stderr_tail"]
            .to_string()
    }
}

// --- What the hosts say -----------------------------------------------------------------

/// Every host in these tests sits in `production` (or `staging`) under `simplelogin`.
fn host(name: &str, group: &str, version: &str) -> HostSpec {
    HostSpec::new(name, group, version)
}

/// The commands as a compose host logs them: compose is run as the project was started
/// (`docker compose -p P --project-directory D -f F up -d --no-deps SERVICES`).
const APP_UP: &str = "up -d --no-deps sl-app sl-job-runner";
const EMAIL_UP: &str = "up -d --no-deps sl-email";
const MIGRATION: &str = "alembic upgrade head";
const PG_DUMP: &str = "docker exec sl-db pg_dump";
const RESTORE: &str = "docker exec -i sl-db psql";
/// The rollback's first command.
const ROLLBACK_RM: &str = "docker rm -f sl-app sl-email sl-job-runner sl-migration sl-init";

/// What changed a host in `log`: [`is_state_changing`], and compose's `up` as the playbook
/// spells it, but not the read-only throw-away container that reads an image's migrations
/// (`docker run --rm --network none IMAGE alembic heads`, `... alembic show REV`).
fn state_changing(log: &[CommandRecord]) -> Vec<String> {
    let changes = |c: &CommandRecord| {
        let cmd = c.cmd.as_str();
        if cmd.starts_with("docker run --rm --network none ")
            && (cmd.ends_with(" alembic heads") || cmd.contains(" alembic show "))
        {
            return false;
        }
        let compose = cmd.starts_with("docker compose ") || cmd.starts_with("docker-compose ");
        is_state_changing(c) || (compose && cmd.split(' ').any(|w| w == "up"))
    };
    log.iter()
        .filter(|c| c.ev == "start" && changes(c))
        .map(|c| format!("{} {}", c.kind, c.cmd))
        .collect()
}

/// The database dumps an upgrade took on a host, not the `.after-failure` ones a rollback
/// keeps of the database as the new version left it.
fn dumps(fleet: &Fleet, name: &str) -> Vec<(PathBuf, u64, f64)> {
    let after = |p: &Path| p.to_string_lossy().ends_with(".after-failure.sql.gz");
    backups(fleet, name)
        .into_iter()
        .filter(|b| !after(&b.0))
        .collect()
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip");
    assert!(out.status.success(), "gzip -dc {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`fleetup_cli::assert_healthy_at`], and `docker inspect` over SSH names `version`'s
/// image for sl-app: what an operator would check after an upgrade, so these tests do too.
fn assert_healthy_at(fleet: &Fleet, name: &str, version: &str) {
    fleetup_cli::assert_healthy_at(fleet, name, version);
    let image = fleet.ssh(name, "docker inspect --format '{{.Config.Image}}' sl-app");
    assert_eq!(
        fleet::stdout(&image).trim(),
        format!("{IMAGE}:{version}"),
        "{name}: docker inspect sl-app"
    );
}

/// When the first `/health` that answered after `t` ended, as the host logged it.
fn health_after(log: &[CommandRecord], t: f64) -> f64 {
    let answered = |c: &&CommandRecord| c.kind == "curl" && c.ev == "end" && c.rc == Some(0);
    let found = log
        .iter()
        .filter(answered)
        .find(|c| c.t > t && c.cmd.ends_with("/health"));
    found.expect("a /health that answered").t
}

/// The start and end of the first command (not a session) with `needle`, which succeeded.
fn ran(log: &[CommandRecord], needle: &str) -> (f64, f64) {
    let end = shim(log, "end", needle);
    assert_eq!(end.rc, Some(0), "`{needle}` succeeded");
    (shim(log, "start", needle).t, end.t)
}

/// The named moments came in this order.
fn assert_in_order(name: &str, order: &[(&str, f64)]) {
    for w in order.windows(2) {
        let ((a, ta), (b, tb)) = (w[0], w[1]);
        assert!(ta <= tb, "{name}: {a} ({ta}) must come before {b} ({tb})");
    }
}

/// A host upgraded correctly from `old` in the log records `log`: pull, stop, backup (non-
/// empty, the old schema and the settings in it, written after the stop and before the
/// migration), migrate, init, start the app and the job runner, /health, sl-email last, in
/// that order; then healthy at the target.
fn assert_upgraded(fleet: &Fleet, name: &str, old: &str, log: &[CommandRecord]) {
    assert_healthy_at(fleet, name, TARGET);
    let new_image = format!("{IMAGE}:{TARGET}");
    let (pull, stop, removed) = (
        ran(log, &format!("docker pull {new_image}")),
        ran(log, "docker stop "),
        ran(log, "docker rm sl-"),
    );
    let (dump, migration, init) = (
        ran(log, PG_DUMP),
        ran(log, MIGRATION),
        ran(log, "init_app.py"),
    );
    let (up, email_up) = (ran(log, APP_UP), ran(log, EMAIL_UP));
    let alembic = &shim(log, "start", MIGRATION).cmd;
    assert!(
        alembic.contains(&new_image) && alembic.contains("--network sl-network"),
        "{name}: alembic runs from the NEW image on sl-network: {alembic}"
    );
    assert!(shim(log, "start", "init_app.py").cmd.contains(&new_image));
    assert_in_order(
        name,
        &[
            ("pull ends", pull.1),
            ("stop starts", stop.0),
            ("the app containers are removed", removed.1),
            ("backup starts", dump.0),
            ("backup ends", dump.1),
            ("alembic starts", migration.0),
            ("alembic ends", migration.1),
            ("init_app.py starts", init.0),
            ("init_app.py ends", init.1),
            ("sl-app and sl-job-runner start", up.0),
            ("/health answers", health_after(log, up.1)),
            ("sl-email starts", email_up.0),
        ],
    );

    let files = backups(fleet, name);
    assert_eq!(files.len(), 1, "{name}: one database backup: {files:?}");
    let (path, size, mtime) = &files[0];
    assert!(*size > 0, "{name}: the backup is not empty");
    let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!("simplelogin-{old}-{}-", head(old));
    assert!(
        file_name.starts_with(&prefix),
        "{name}: {file_name} names {old}, its schema"
    );
    assert_in_order(
        name,
        &[
            ("stop", removed.1),
            ("backup written", *mtime),
            ("alembic", migration.0),
        ],
    );
    assert!(
        gunzip(path).contains(head(old)),
        "{name}: the dump holds the old schema"
    );
    let settings = path.with_extension("").with_extension("settings");
    let copies = std::fs::read_dir(&settings).map(|d| d.count()).unwrap_or(0);
    assert!(
        copies > 0,
        "{name}: settings copied in {}",
        settings.display()
    );
}

/// Nothing ran on the host but the fleet-wide read-only pre-flight before the rollout.
fn assert_untouched(fleet: &Fleet, r: &Finished, name: &str, version: &str) {
    let log = r.rollout_log(fleet, name);
    assert!(
        log.is_empty(),
        "{name} must not be contacted by the rollout: {:?}",
        log.iter().map(|c| &c.cmd).collect::<Vec<_>>()
    );
    let all = fleet.commands(name);
    assert!(
        state_changing(&all).is_empty(),
        "{name}: the pre-flight changed nothing: {:?}",
        state_changing(&all)
    );
    let st = fleet.state(name);
    assert_eq!(st["serving"], version, "{name} still serves {version}");
}

/// Waits (a minute at most) until the host has logged the start of a command `pred` takes.
fn wait_for(fleet: &Fleet, name: &str, pred: impl Fn(&CommandRecord) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet
        .commands(name)
        .iter()
        .any(|c| c.ev == "start" && pred(c))
    {
        assert!(Instant::now() < deadline, "{name}: it never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// When a host was busy: its first session's start to its last session's end.
fn busy(log: &[CommandRecord]) -> (f64, f64) {
    let t = |ev: &'static str| {
        log.iter()
            .filter(move |c| c.kind == "session" && c.ev == ev)
            .map(|c| c.t)
    };
    let start = t("start").reduce(f64::min).expect("a session");
    (start, t("end").reduce(f64::max).expect("a session end"))
}

// --- 1. The happy path ------------------------------------------------------------------

#[test]
fn a_mixed_fleet_is_upgraded_and_the_current_host_is_left_alone() {
    let versions = [
        ("stg-01", "staging", "v4.64.2"),
        ("stg-02", "staging", "v4.65.0"),
        ("prod-01", "production", "v4.65.0"),
        ("prod-02", "production", TARGET),
        ("prod-03", "production", "v4.64.2"),
        ("prod-04", "production", "v4.65.0"),
        ("prod-05", "production", "v4.64.2"),
    ];
    let mut spec = Spec::new();
    for (name, group, version) in versions {
        spec = spec.host(host(name, group, version));
    }
    let fleet = Fleet::start(spec.canary("prod-01"));
    let batches = plan(&fleet, &[]);
    assert_eq!(
        batches,
        [
            vec!["stg-01", "stg-02"],
            vec!["prod-01"],
            vec!["prod-02"],
            vec!["prod-03", "prod-04", "prod-05"],
        ],
        "staging first (rollout.staged_first), then production's canary alone"
    );

    let r = run(&fleet, &[]);
    r.assert_exit(0);
    assert!(r.of("halted").is_empty(), "no halt:\n{}", r.dump());
    assert!(r.untouched().is_empty());
    let log_of = |(name, _, _): &(&'static str, _, _)| (*name, r.rollout_log(&fleet, name));
    let logs: std::collections::HashMap<_, _> = versions.iter().map(log_of).collect();

    for (name, _, old) in versions {
        let log = &logs[name];
        if old == TARGET {
            assert_eq!(r.outcome(name), "skipped", "{name}");
            assert_eq!(r.host_finished(name)["changed"], false);
            assert!(
                state_changing(log).is_empty(),
                "{name} is already current: nothing may change it, yet it ran {:?}",
                state_changing(log)
            );
            assert!(backups(&fleet, name).is_empty(), "{name}: no backup");
            assert_healthy_at(&fleet, name, TARGET);
        } else {
            assert_eq!(r.outcome(name), "ok", "{name}: {}", r.dump());
            assert_eq!(r.host_finished(name)["changed"], true);
            assert_upgraded(&fleet, name, old, log);
        }
    }

    // Staging ended before the canary began, and the canary before any other production
    // host (from the logs as the run left them, before the checks above added their own).
    let (canary_start, canary_end) = busy(&logs["prod-01"]);
    for (name, group, _) in versions.iter().filter(|v| v.0 != "prod-01") {
        let (start, end) = busy(&logs[*name]);
        let staging = *group == "staging";
        let (first, then) = if staging {
            (end, canary_start)
        } else {
            (canary_end, start)
        };
        assert!(
            first < then,
            "{name} ({start}..{end}) and the canary overlap"
        );
    }
}

/// A host upgraded by a later run: its commands since `since`, and its newest backup.
fn assert_upgraded_again(fleet: &Fleet, name: &str, old: &str, since: usize) {
    let log = fleet.commands(name);
    let log = &log[since..];
    assert_healthy_at(fleet, name, TARGET);
    let removed = shim(log, "end", "docker rm sl-");
    let alembic = shim(log, "start", MIGRATION);
    let init = shim(log, "start", "init_app.py");
    let up = shim(log, "start", APP_UP);
    assert!(shim(log, "end", MIGRATION).t <= init.t && init.t < up.t);
    let newest = dumps(fleet, name)
        .into_iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("a backup");
    assert!(
        removed.t <= newest.2 && newest.2 <= alembic.t,
        "{name}: the newest backup was taken after the stop, before the migration"
    );
    assert!(newest.1 > 0);
    assert!(gunzip(&newest.0).contains(head(old)));
}

// --- The backup never overwrites an earlier one -----------------------------------------

#[test]
fn a_backup_taken_in_the_same_second_as_an_earlier_one_keeps_both() {
    // Two attempts within one second name their dumps alike:
    // `simplelogin-<old>-<schema>-<UTC second>`. Stand in for the earlier one with a dump and
    // a settings copy under every name the next minute could produce, as the login user;
    // and keep them all from pruning (`sl_backups_kept`), which is not what this tests.
    let fleet = Fleet::start(
        Spec::new()
            .host(host("p-01", "production", "v4.65.0"))
            .canary("p-01"),
    );
    let backups_dir = fleet.app_path("p-01").join("backups");
    let script = format!(
        "set -eu; mkdir -p {dir}; now=$(date +%s); i=-2; while [ $i -le 60 ]; do \
         b={dir}/simplelogin-v4.65.0-{schema}-$(date -u -d @$((now + i)) +%Y%m%dT%H%M%SZ); \
         echo earlier-dump-$i | gzip > $b.sql.gz; mkdir $b.settings; \
         echo earlier-$i > $b.settings/earlier; i=$((i + 1)); done",
        dir = fleet::sh_quote(&backups_dir.display().to_string()),
        schema = head("v4.65.0"),
    );
    let made = fleet.ssh("p-01", &script);
    assert!(made.status.success(), "{}", fleet::stderr(&made));
    let earlier = backups(&fleet, "p-01");
    assert_eq!(earlier.len(), 63);
    let since = fleet.commands("p-01").len();

    let r = run(&fleet, &["-e", r#"{"sl_backups_kept": 100}"#]);
    r.assert_exit(0);
    assert_eq!(r.outcome("p-01"), "ok", "{}", r.dump());
    assert_upgraded_again(&fleet, "p-01", "v4.65.0", since);
    for (path, _, _) in &earlier {
        let dump = gunzip(path);
        assert!(
            dump.starts_with("earlier-dump-"),
            "{} was overwritten",
            path.display()
        );
        let settings = path.with_extension("").with_extension("settings");
        let files: Vec<_> = std::fs::read_dir(&settings).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "{}: written into", settings.display());
        let kept = std::fs::read_to_string(settings.join("earlier")).unwrap();
        assert!(
            kept.starts_with("earlier-"),
            "the settings copy was overwritten"
        );
    }
    assert_eq!(backups(&fleet, "p-01").len(), 64, "one new backup");
}

// --- A host's own secrets stay on the host ----------------------------------------------

/// springcomp's compose file gives every container its `.env`, so the database password
/// (in `DB_URI`) and `FLASK_SECRET` are in each container's environment, and in what
/// `docker inspect` prints. The steps that read or carry it are `no_log`: neither the
/// events nor the run dir (which only its owner may read) hold them, and the host is
/// upgraded all the same. A README host whose operator gave sl-app its `DB_URI` by `-e`
/// has it again in the re-created sl-app, read from a file on the host, not from the
/// commands, which are logged.
#[test]
fn a_hosts_own_secrets_stay_out_of_the_events_and_the_run_dir() {
    const README_URI: &str = "DB_URI=postgresql://myuser:mypassword@sl-db:5432/simplelogin";
    let springcomp = host("sc-01", "production", "v4.65.0").layout("springcomp");
    let readme = host("rd-01", "production", "v4.65.0")
        .layout("readme")
        .extra_args("sl-app", &["-e", README_URI]);
    let fleet = Fleet::start(Spec::new().host(springcomp).host(readme));
    let env = std::fs::read_to_string(fleet.app_path("sc-01").join(".env")).unwrap();
    let secrets = ["sl-secret-pw", "fleet-sim-not-a-secret", "mypassword"];
    for secret in &secrets[..2] {
        assert!(env.contains(secret), "the host's .env holds {secret}");
    }
    let r = run(&fleet, &[]);
    r.assert_exit(0);
    for h in ["sc-01", "rd-01"] {
        assert_eq!(r.outcome(h), "ok", "{}", r.dump());
    }
    assert_eq!(fleet.state("sc-01")["env_version"], TARGET, "upgraded");
    let rd = fleet.state("rd-01");
    let app = (rd["containers"].as_array().unwrap().iter()).find(|c| c["name"] == "sl-app");
    let app = app.expect("rd-01 runs sl-app");
    assert!(app["image"].as_str().unwrap().ends_with(TARGET), "{app}");
    assert!(
        app["env"].as_array().unwrap().contains(&json!(README_URI)),
        "the re-created sl-app has its DB_URI: {app}"
    );

    let run_dir = r.run_dir();
    let mode = std::fs::metadata(&run_dir).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    let mut files = vec![run_dir];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
    }
    let events = serde_json::to_string(&r.events).unwrap();
    for secret in secrets {
        assert!(
            !events.contains(secret) && !r.stderr.contains(secret),
            "{secret} shown"
        );
    }
    let log = std::fs::read_to_string(r.run_dir().join("hosts/sc-01.log")).unwrap();
    assert!(
        log.contains("discover the host\n$ (hidden: no_log)\n(output hidden: no_log)\n"),
        "the step is named, what it printed is not:\n{log}"
    );
    let log = std::fs::read_to_string(r.run_dir().join("hosts/rd-01.log")).unwrap();
    assert!(
        log.contains("--env-file") && log.contains("upgrade-in-progress/sl-app.env"),
        "sl-app's own environment is read from its file:\n{log}"
    );
}
