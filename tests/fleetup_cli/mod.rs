//! Driving the built `fleetup` binary against the test fleet, and reading what the hosts
//! say: `mod fleetup_cli;` beside `mod fleet;` in an integration test.
//!
//! ```ignore
//! let r = run(&fleet, &["--serial", "3"]);
//! r.assert_exit(0);
//! assert_healthy_at(&fleet, "prod-01", TARGET);
//! ```
// Every test crate that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::fleet::{self, CommandRecord, Fleet};
use serde_json::Value;

pub const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const PLAYBOOK: &str = "playbooks/simplelogin-upgrade.yml";
pub const TARGET: &str = "v4.66.1";
pub const IMAGE: &str = "simplelogin/app-ci";
/// Longest any single run may take before the test gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The extra variables every run gives: the target (`TARGET`, spelled out because a const
/// cannot format it in) and a health gate short enough that a host that never gets healthy
/// fails its verify in seconds.
pub const VARS: [&str; 4] = [
    "-e",
    "sl_version=v4.66.1",
    "-e",
    r#"{"sl_health_timeout": 5}"#,
];

/// Schema heads of the versions these tests use (tests/fleet/sim/releases.rs RELEASES).
pub fn head(version: &str) -> &'static str {
    match version {
        "v4.64.2" => "2c2093c82bc0",
        "v4.65.0" => "3ebfbaeb76c0",
        "v4.65.2" => "5047fcbd57c7",
        "v4.66.0" => "818b4a856f3f",
        "v4.66.1" => "fd79503179dd",
        "v4.67.0" => "bb4b0d33ff1a",
        "v4.67.1" => "c5e1d4a7f209",
        v => panic!("no schema head recorded here for {v}"),
    }
}

pub const APP_CONTAINERS: [&str; 4] = ["sl-db", "sl-app", "sl-email", "sl-job-runner"];

// --- Running fleetup --------------------------------------------------------------------

/// A `fleetup` in flight: its output goes to files, so a chatty run never blocks on a pipe.
pub struct Running {
    /// Public so a test can kill the run mid-way, or see that it ended too soon.
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

/// How a `fleetup` process ended: its exit code and its JSON event lines.
pub struct Finished {
    pub code: i32,
    pub events: Vec<Value>,
    pub stderr: String,
}

/// Starts `fleetup <args>` from the repository, output to files in the fleet's tmp dir.
pub fn spawn_args(fleet: &Fleet, args: &[String]) -> Running {
    spawn_args_env(fleet, args, &[])
}

pub fn s(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `fleetup run -i INV PLAYBOOK -e ... --known-hosts K --yes --output json <extra>`.
pub fn spawn_run(fleet: &Fleet, playbook: &Path, extra: &[&str]) -> Running {
    spawn_run_env(fleet, playbook, extra, &[])
}

/// Runs `fleetup run` with the shipped playbook.
pub fn run(fleet: &Fleet, extra: &[&str]) -> Finished {
    spawn_run(fleet, Path::new(PLAYBOOK), extra).wait()
}

/// `fleetup <args>` run to its end (history, show, plan: nothing long).
pub fn cli(args: &[String]) -> Output {
    cli_env(args, &[])
}

impl Running {
    pub fn stderr_now(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for the process, killing it (and failing the test) past `RUN_LIMIT`.
    fn exit_status(&mut self) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for fleetup") {
                return status;
            }
            if self.started.elapsed() > RUN_LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "fleetup ran longer than {RUN_LIMIT:?}; stderr:\n{}",
                    self.stderr_now()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait(mut self) -> Finished {
        let status = self.exit_status();
        let stdout = std::fs::read_to_string(&self.out).expect("fleetup's stdout");
        let stderr = self.stderr_now();
        let events = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line is not a JSON event ({e}): {l:?}; stderr:\n{stderr}")
                })
            })
            .collect();
        Finished {
            code: status.code().expect("fleetup ended by a signal"),
            events,
            stderr,
        }
    }
}

impl Finished {
    pub fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    pub fn run_started(&self) -> &Value {
        let started = self.of("run_started");
        assert_eq!(started.len(), 1, "one run_started:\n{}", self.dump());
        started[0]
    }

    pub fn run_id(&self) -> String {
        self.run_started()["run_id"]
            .as_str()
            .expect("run_id")
            .to_string()
    }

    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from(self.run_started()["run_dir"].as_str().expect("run_dir"))
    }

    pub fn host_finished(&self, host: &str) -> &Value {
        let found: Vec<_> = self
            .of("host_finished")
            .into_iter()
            .filter(|e| e["host"] == host)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{host} should finish exactly once; events:\n{}",
            self.dump()
        );
        found[0]
    }

    pub fn outcome(&self, host: &str) -> String {
        self.host_finished(host)["outcome"]
            .as_str()
            .expect("outcome")
            .to_string()
    }

    pub fn untouched(&self) -> Vec<String> {
        let finished = self.of("run_finished");
        assert_eq!(finished.len(), 1, "one run_finished:\n{}", self.dump());
        finished[0]["untouched"]
            .as_array()
            .expect("untouched")
            .iter()
            .map(|v| v.as_str().expect("a host name").to_string())
            .collect()
    }

    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.code,
            code,
            "exit code; stderr:\n{}\nevents:\n{}",
            self.stderr,
            self.dump()
        );
        let finished = self.of("run_finished");
        assert_eq!(finished.len(), 1, "one run_finished:\n{}", self.dump());
        assert_eq!(finished[0]["exit_code"], code, "run_finished's exit_code");
    }

    pub fn dump(&self) -> String {
        self.events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The batches fleetup plans for the fleet, from `fleetup plan --output json`.
pub fn plan(fleet: &Fleet, extra: &[&str]) -> Vec<Vec<String>> {
    let mut args = strings(&["plan", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.push(PLAYBOOK.into());
    args.extend(strings(&VARS));
    args.extend(strings(&["--output", "json"]));
    args.extend(strings(extra));
    let out = cli(&args);
    assert!(out.status.success(), "plan: {}", fleet::stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    v["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|b| {
            b["hosts"]
                .as_array()
                .expect("hosts")
                .iter()
                .map(|h| h.as_str().expect("host").to_string())
                .collect()
        })
        .collect()
}

// --- What the hosts say -----------------------------------------------------------------

/// A command that changes the host, as its log records it (shims and sessions alike):
/// pulls, stops, removes, runs, compose up, a restore, a backup, the `.env` rewrite.
/// Reading an image's migrations in a throw-away container off any network
/// (`docker run --rm --network none IMAGE alembic heads`) changes nothing.
pub fn is_state_changing(c: &CommandRecord) -> bool {
    let cmd = c.cmd.as_str();
    if c.kind == "session" {
        return cmd.contains("pg_dump") || cmd.contains(".env.fleetup");
    }
    if cmd.starts_with("docker run --rm --network none") {
        return false;
    }
    [
        "docker pull",
        "docker stop",
        "docker rm",
        "docker run",
        "docker start",
        "docker restart",
        "docker kill",
        "docker exec -i",
        "compose up",
        "compose down",
        "compose stop",
        "compose rm",
    ]
    .iter()
    .any(|p| cmd.starts_with(p) || (p.starts_with("compose") && cmd.contains(p)))
        || compose_changes(cmd)
}

/// `docker compose [-p P --project-directory D -f F...] up|down|stop|rm|start|restart`.
fn compose_changes(cmd: &str) -> bool {
    let is_compose = cmd.starts_with("docker compose") || cmd.starts_with("docker-compose");
    is_compose
        && cmd
            .split_whitespace()
            .any(|w| ["up", "down", "stop", "rm", "start", "restart"].contains(&w))
}

pub fn state_changing(log: &[CommandRecord]) -> Vec<String> {
    log.iter()
        .filter(|c| c.ev == "start" && is_state_changing(c))
        .map(|c| format!("{} {}", c.kind, c.cmd))
        .collect()
}

/// The first record of a shim command (not a session) whose line contains `needle`.
pub fn shim<'a>(log: &'a [CommandRecord], ev: &str, needle: &str) -> &'a CommandRecord {
    log.iter()
        .find(|c| c.kind != "session" && c.ev == ev && c.cmd.contains(needle))
        .unwrap_or_else(|| panic!("no `{ev}` of a command with `{needle}` in the log"))
}

/// Commands the host started at or after `t` (unix seconds), with their ends. The end of
/// one started before is left out: the session wrapper logs it once the channel has closed,
/// which can be after fleetup went on (a pre-flight command's end after `run_started`).
pub fn since(fleet: &Fleet, name: &str, t: f64) -> Vec<CommandRecord> {
    let all = fleet.commands(name);
    let before: std::collections::HashSet<String> = all
        .iter()
        .filter(|c| c.ev == "start" && c.t < t)
        .map(|c| c.id.clone())
        .collect();
    all.into_iter()
        .filter(|c| c.t >= t && !before.contains(&c.id))
        .collect()
}

/// The backups the playbook wrote on a host: `(path, size, mtime)`.
pub fn backups(fleet: &Fleet, name: &str) -> Vec<(PathBuf, u64, f64)> {
    let dir = fleet.app_path(name).join("backups");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut out: Vec<_> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sql.gz"))
        .map(|e| {
            let m = e.metadata().expect("backup metadata");
            let mtime = m
                .modified()
                .expect("mtime")
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs_f64();
            (e.path(), m.len(), mtime)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The host serves `version`, healthy, from its own state and over SSH: all four
/// containers run the right images, the schema is the version's head, init ran for it,
/// `.env` names it, nothing of an upgrade is left behind and `/health` answers `success`.
pub fn assert_healthy_at(fleet: &Fleet, name: &str, version: &str) {
    let st = fleet.state(name);
    let ctx = || format!("{name}: state {st:#}");
    assert_eq!(st["serving"], version, "{} serves", ctx());
    assert_eq!(st["env_version"], version, "{}: .env's SL_VERSION", ctx());
    assert_eq!(st["db"]["schema"], head(version), "{}: schema", ctx());
    assert_eq!(st["db"]["init"], head(version), "{}: init", ctx());
    let containers = st["containers"].as_array().expect("containers");
    for c in APP_CONTAINERS {
        let found: Vec<_> = containers.iter().filter(|x| x["name"] == c).collect();
        assert_eq!(found.len(), 1, "{}: one {c}", ctx());
        assert_eq!(found[0]["status"], "running", "{}: {c} runs", ctx());
        if c != "sl-db" {
            assert_eq!(
                found[0]["image"],
                format!("{IMAGE}:{version}"),
                "{}: {c}'s image",
                ctx()
            );
        }
    }
    assert_eq!(
        containers.len(),
        APP_CONTAINERS.len(),
        "{}: nothing but the four containers (no sl-migration, sl-init left)",
        ctx()
    );
    let health = fleet.ssh(name, "curl -fsS http://127.0.0.1:7777/health");
    assert!(
        health.status.success(),
        "{name}: /health over ssh: {}",
        fleet::stderr(&health)
    );
    assert_eq!(fleet::stdout(&health).trim(), "success", "{name}: /health");
}

// --- The journal and the hosts' own records ----------------------------------------------

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// `<fleet dir>/.fleetup/`: the default state dir, beside the inventory.
pub fn state_dir(fleet: &Fleet) -> PathBuf {
    fleet.dir().join(".fleetup")
}

/// The run directories under a state dir, oldest first.
pub fn run_dirs(state: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(state.join("runs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

pub fn run_json(run_dir: &Path) -> Value {
    let p = run_dir.join("run.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("run.json ({e}): {text}"))
}

/// `events.jsonl` read strictly: every complete line (ended by a newline) must be a JSON
/// object; a last line without its newline is what a kill may leave, and is returned apart.
pub fn journal(run_dir: &Path) -> (Vec<Value>, Option<String>) {
    let path = run_dir.join("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (complete, partial) = match text.rfind('\n') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text.as_str()),
    };
    let events = complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "a complete line of {} is not JSON ({e}): {l:?}",
                    path.display()
                )
            });
            assert!(v["event"].is_string(), "not an event: {l}");
            v
        })
        .collect();
    let partial = (!partial.is_empty()).then(|| partial.to_string());
    (events, partial)
}

/// `events.jsonl` read as a tolerant reader would: lines that do not parse are left out.
pub fn journal_lenient(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("events.jsonl"))
        .expect("events.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

pub fn cmds(log: &[CommandRecord]) -> Vec<String> {
    log.iter()
        .map(|c| format!("{} {} {} @{}", c.ev, c.kind, c.cmd, c.t))
        .collect()
}

/// The host logged no command at all from `t` on.
pub fn assert_not_touched_since(fleet: &Fleet, name: &str, t: f64, what: &str) {
    let log = since(fleet, name, t);
    assert!(
        log.is_empty(),
        "{name} must not be touched {what}, yet it logged:\n{}",
        cmds(&log).join("\n")
    );
}

/// The lines of `<app>/.fleetup/audit.log` on a host.
pub fn audit(fleet: &Fleet, name: &str) -> Vec<String> {
    std::fs::read_to_string(fleet.app_path(name).join(".fleetup").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

// --- Runs with an environment, and runs read as text (staged rollouts) ------------------

/// Starts `fleetup <args>` as `spawn_args` does, with `env` added to its environment (e.g.
/// `FLEETUP_NOW`, the instant the run believes it starts at).
pub fn spawn_args_env(fleet: &Fleet, args: &[String], env: &[(&str, &str)]) -> Running {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out = fleet.tmp().join(format!("fleetup-{n}.out"));
    let err = fleet.tmp().join(format!("fleetup-{n}.err"));
    let child = Command::new(FLEETUP)
        .current_dir(REPO)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run fleetup");
    Running {
        child,
        out,
        err,
        started: Instant::now(),
    }
}

/// `spawn_run` (`--output json`) with `env` added to fleetup's environment.
pub fn spawn_run_env(
    fleet: &Fleet,
    playbook: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let mut args = strings(&["run", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.push(s(playbook));
    args.extend(strings(&VARS));
    args.push("--known-hosts".into());
    args.push(s(&fleet.known_hosts_path()));
    args.extend(strings(&["--yes", "--output", "json"]));
    args.extend(strings(extra));
    spawn_args_env(fleet, &args, env)
}

/// `cli` with `env` added to fleetup's environment.
pub fn cli_env(args: &[String], env: &[(&str, &str)]) -> Output {
    Command::new(FLEETUP)
        .current_dir(REPO)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run fleetup")
}

/// A `fleetup` run without `--output json`, as it ended: what it printed, as text.
pub struct FinishedText {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl FinishedText {
    /// What the operator saw: stdout then stderr.
    pub fn screen(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Running {
    /// What the run printed on stdout so far (its JSON lines, the last maybe partial).
    pub fn stdout_now(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The complete JSON event lines printed so far.
    pub fn events_now(&self) -> Vec<Value> {
        self.stdout_now()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Waits for a run whose stdout is text, not JSON lines.
    pub fn wait_text(mut self) -> FinishedText {
        let status = self.exit_status();
        FinishedText {
            code: status.code().expect("fleetup ended by a signal"),
            stdout: self.stdout_now(),
            stderr: self.stderr_now(),
            took: self.started.elapsed(),
        }
    }
}
