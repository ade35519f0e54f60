//! Staged rollouts (issue 7): the promotion gate from staging to production with its soak
//! time, pauses that verify the upgraded hosts, and maintenance windows (the wait with its
//! countdown, `--no-wait`, a batch deferred when it does not fit what is left of the window,
//! then resumed in the next one, and a window across a daylight-saving change). The built
//! `fleetup` runs the shipped playbook (or a copy of it with a pause) against the simulated
//! fleet; time is moved with `FLEETUP_NOW`, never waited for; every claim is proven from the
//! hosts' own command logs and state, the journal and what the operator sees.
//!
//! The helpers are here; the tests are in `tests/staged/`: the promotion gate (`gate.rs`),
//! a pause that verifies (`pause.rs`), maintenance windows (`window.rs`).

mod fleet;
mod fleetup_cli;
#[path = "staged/gate.rs"]
mod gate;
#[path = "staged/pause.rs"]
mod pause;
#[path = "staged/window.rs"]
mod window;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet::{Fleet, HostSpec, Spec};
use fleetup_cli::{
    assert_healthy_at, assert_not_touched_since, audit, cli_env, cmds, journal, now, run_dirs,
    run_json, since, spawn_args_env, spawn_run_env, state_changing, state_dir, strings, Finished,
    PLAYBOOK, TARGET, VARS,
};
use serde_json::{json, Value};

const OLD: &str = "v4.65.0";
const GATE: [&str; 2] = ["--require-staged", "staging"];
const WINDOW: &str = "daily 09:00-10:01 UTC";

/// The real time `hours` from now, RFC 3339, for `FLEETUP_NOW`.
fn hours_from_now(hours: u64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours as i64);
    fleetup::clock::rfc3339(at)
}

// --- Running fleetup --------------------------------------------------------------------

/// `fleetup run` of the shipped playbook, `--output json`, at the instant `at` (`None`: now).
fn run_at(fleet: &Fleet, extra: &[&str], at: Option<&str>) -> Finished {
    run_playbook_at(fleet, Path::new(PLAYBOOK), extra, at)
}

fn run_playbook_at(fleet: &Fleet, playbook: &Path, extra: &[&str], at: Option<&str>) -> Finished {
    let env: Vec<(&str, &str)> = at.map(|t| ("FLEETUP_NOW", t)).into_iter().collect();
    spawn_run_env(fleet, playbook, extra, &env).wait()
}

/// `fleetup run -i INV --resume <id> --known-hosts K --yes --output json` at `at`.
fn resume_at(fleet: &Fleet, id: &str, at: &str) -> Finished {
    let mut args = strings(&["run", "-i"]);
    args.push(fleetup_cli::s(&fleet.inventory_path()));
    args.extend(strings(&["--resume", id, "--known-hosts"]));
    args.push(fleetup_cli::s(&fleet.known_hosts_path()));
    args.extend(strings(&["--yes", "--output", "json"]));
    spawn_args_env(fleet, &args, &[("FLEETUP_NOW", at)]).wait()
}

/// `fleetup plan -i INV <shipped playbook> -e sl_version=.. <extra>` at `at`: its text.
fn plan_text(inventory: &Path, extra: &[&str], at: Option<&str>) -> String {
    let mut args = strings(&["plan", "-i"]);
    args.push(fleetup_cli::s(inventory));
    args.push(PLAYBOOK.into());
    args.extend(strings(&VARS));
    args.extend(strings(extra));
    let env: Vec<(&str, &str)> = at.map(|t| ("FLEETUP_NOW", t)).into_iter().collect();
    let out = cli_env(&args, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fleetup plan {extra:?} at {at:?}: {}",
        fleet::stderr(&out)
    );
    fleet::stdout(&out)
}

/// The line of `plan`'s text that starts with `label` (`gate`, `windows`, `estimate`).
fn plan_line(text: &str, label: &str) -> String {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{label:<10}")))
        .collect();
    assert_eq!(found.len(), 1, "one `{label}` line in the plan:\n{text}");
    found[0].to_string()
}

/// A copy of the shipped playbook in the fleet's tmp dir with `lines` added to `rollout:`,
/// beside a copy of the vars file it reads (`vars_files: [simplelogin-facts.yml]`).
fn playbook_with(fleet: &Fleet, name: &str, lines: &[&str]) -> PathBuf {
    let facts = Path::new(fleetup_cli::REPO)
        .join(PLAYBOOK)
        .with_file_name("simplelogin-facts.yml");
    std::fs::copy(&facts, fleet.tmp().join("simplelogin-facts.yml"))
        .expect("copy simplelogin-facts.yml beside the playbook");
    let text = std::fs::read_to_string(Path::new(fleetup_cli::REPO).join(PLAYBOOK))
        .expect("the shipped playbook");
    assert_eq!(
        text.lines().filter(|l| *l == "rollout:").count(),
        1,
        "the shipped playbook has one `rollout:` line"
    );
    let added: String = lines.iter().map(|l| format!("\n  {l}")).collect();
    let path = fleet.tmp().join(name);
    std::fs::write(
        &path,
        text.replacen("\nrollout:", &format!("\nrollout:{added}"), 1),
    )
    .expect("write the playbook");
    path
}

impl Finished {
    /// The single `gate_checked` event, which comes right after `run_started`.
    fn gate_checked(&self) -> &Value {
        let found = self.of("gate_checked");
        assert_eq!(found.len(), 1, "one gate_checked:\n{}", self.dump());
        let pos = |kind: &str| self.events.iter().position(|e| e["event"] == kind).unwrap();
        assert_eq!(
            pos("gate_checked"),
            pos("run_started") + 1,
            "gate_checked comes right after run_started:\n{}",
            self.dump()
        );
        for k in ["require_staged", "soak_ms", "verdict", "detail", "runs"] {
            assert!(
                found[0].get(k).is_some(),
                "gate_checked has {k}: {}",
                found[0]
            );
        }
        found[0]
    }

    fn batches_started(&self) -> Vec<u64> {
        self.of("batch_started")
            .iter()
            .map(|e| e["batch"].as_u64().expect("batch"))
            .collect()
    }

    /// The index of the first event of `kind` matching `pred`.
    fn index(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.events
            .iter()
            .position(|e| e["event"] == kind && pred(e))
            .unwrap_or_else(|| panic!("no matching `{kind}` event:\n{}", self.dump()))
    }
}

/// The promotion gate refused the run: exit 6 and the message that says what is missing.
fn assert_refused(r: &Finished, says: &[&str]) {
    assert_eq!(
        r.code,
        6,
        "the gate refuses with exit 6; stderr:\n{}\nevents:\n{}",
        r.stderr,
        r.dump()
    );
    // Only a rehearsal's warning (FLEETUP_NOW) may come before the refusal.
    let first = r
        .stderr
        .lines()
        .find(|l| !l.starts_with("warning: FLEETUP_NOW"))
        .unwrap_or_default();
    assert!(
        first.starts_with("error: the promotion gate refuses this run:"),
        "stderr starts with the refusal:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.trim_end().ends_with("No host was changed."),
        "the refusal ends with `No host was changed.`:\n{}",
        r.stderr
    );
    for w in says {
        assert!(
            r.stderr.contains(w),
            "the refusal says `{w}`:\n{}",
            r.stderr
        );
    }
    assert!(
        r.of("batch_started").is_empty() && r.of("host_started").is_empty(),
        "a refused run starts no batch:\n{}",
        r.dump()
    );
}

// --- The journal ------------------------------------------------------------------------

/// The one run directory that is not in `before`.
fn new_run_dir(fleet: &Fleet, before: &[PathBuf]) -> PathBuf {
    let new: Vec<PathBuf> = run_dirs(&state_dir(fleet))
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "the run left one new run directory: {new:?}");
    new[0].clone()
}

/// run.json's `gate`, with the verdict `verdict`, for `--require-staged staging`.
fn assert_gate_recorded(run_dir: &Path, verdict: &str) -> Value {
    let rj = run_json(run_dir);
    let gate = &rj["gate"];
    assert_eq!(gate["verdict"], verdict, "run.json's gate: {rj:#}");
    assert_eq!(gate["require_staged"], "staging", "{gate}");
    assert_eq!(
        gate["soak_ms"], 86_400_000u64,
        "the soak defaults to 24h: {gate}"
    );
    gate.clone()
}

// --- What the hosts say -----------------------------------------------------------------

/// Nothing ever changed the host: no state-changing command in its whole log, and it still
/// serves the old version (read from its state, without contacting it).
fn assert_never_changed(fleet: &Fleet, name: &str) {
    let changes = state_changing(&fleet.commands(name));
    assert!(
        changes.is_empty(),
        "{name} must not be changed, yet it ran: {changes:?}"
    );
    let st = fleet.state(name);
    assert_eq!(st["serving"], OLD, "{name} still serves {OLD}: {st:#}");
    assert_eq!(st["env_version"], OLD, "{name}'s .env: {st:#}");
}

/// A fault that takes the host's app down as the probe sees it: `/health` cannot connect
/// (curl exit 7). Not an HTTP error (curl -f exit 22): the probe reads that as a version
/// without `/health` (404 before v4.48.0).
fn app_down() -> Value {
    json!({"match": "/health", "action": "fail", "rc": 7, "scope": "shim",
           "stderr": "curl: (7) Failed to connect to 127.0.0.1 port 7777 after 0 ms: Connection refused"})
}
