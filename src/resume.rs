//! Resuming a run: its journal says what it was given and how far each host got; the
//! inputs as they are now must still be those (or `--force` says to go on anyway); the
//! resume runs what is left, in the plan's own batches.
//!
//! In two steps, because the play is prepared again between them by the caller, who shows
//! its warnings: [`open`] finds and holds the run and reads its record, [`prepare`] checks
//! the prepared play against it and reads what is left from its events. The decisions are
//! pure functions, tested on plain values.

use std::path::{Path, PathBuf};

use crate::events::{GateVerdict, Resumed, Stamped, Verdict};
use crate::journal::{read, Claim, RunDir, RunRecord};
use crate::plan::{Batch, Plan};
use crate::play::{Play, PlayInputs, RolloutOverrides};
use crate::state::RunState;
use crate::vars::Vars;

/// Why a run cannot be resumed. Nothing was contacted.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No such run in the journal (the message says where it looked).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Its `run.json` cannot be read.
    #[error("{0}")]
    Record(String),
    #[error("run {run} was refused by the promotion gate ({detail}) and never started: it cannot be resumed. Start a new run once the gate allows it")]
    GateRefused { run: String, detail: String },
    #[error("run {run} was given secret variables that the journal does not keep: pass them again with -e ({})", .names.join(", "))]
    MissingSecrets { run: String, names: Vec<String> },
    #[error("run {run} cannot resume: since it started, {}. Its plan was made for what it read then: start a new run, or pass --force to resume with the files as they are now", .changes.join("; "))]
    Changed { run: String, changes: Vec<String> },
    #[error("cannot read the journal {}: {source}", .path.display())]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a run's directory cannot be held by this process.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("run {run} is still running in another fleetup process")]
    Busy { run: String },
    #[error("cannot lock the run directory {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Holds `run_dir` for this process; refused when another process runs it.
pub fn claim(run_dir: &RunDir) -> Result<Claim, ClaimError> {
    match run_dir.claim() {
        Ok(Some(claim)) => Ok(claim),
        Ok(None) => Err(ClaimError::Busy {
            run: run_dir.id.clone(),
        }),
        Err(source) => Err(ClaimError::Lock {
            path: run_dir.path.clone(),
            source,
        }),
    }
}

/// A run found in the journal and held by this process, before its play is prepared again.
#[derive(Debug)]
pub struct Paused {
    pub run_dir: RunDir,
    pub claim: Claim,
    pub record: RunRecord,
}

/// Finds run `id` (or `last`) under `state_dir`, holds it, and reads its record. A run the
/// promotion gate refused never started: there is nothing to resume.
pub fn open(state_dir: &Path, id: &str) -> Result<Paused, ResumeError> {
    let run_dir = RunDir::find(state_dir, id).map_err(ResumeError::NotFound)?;
    let claim = claim(&run_dir)?;
    let record = RunRecord::read(&run_dir.path).map_err(ResumeError::Record)?;
    if let Some(gate) = refused(record.gate.as_ref()) {
        return Err(ResumeError::GateRefused {
            run: run_dir.id,
            detail: gate.detail.clone(),
        });
    }
    Ok(Paused {
        run_dir,
        claim,
        record,
    })
}

fn refused(gate: Option<&GateVerdict>) -> Option<&GateVerdict> {
    gate.filter(|g| g.verdict == Verdict::Refused)
}

/// The play's inputs as the run's `record` has them, with the `-e` given now on top (the
/// journal does not keep secrets) and the `--window`s given now instead of the first
/// attempt's, when there are any.
pub fn inputs(record: &RunRecord, extra_vars: &[String], windows: &[String]) -> PlayInputs {
    let mut known = record.extra_vars.clone();
    known.retain(|k, _| !record.redacted.contains(k));
    let mut given = vec![serde_json::Value::Object(known).to_string()];
    given.extend(extra_vars.iter().cloned());
    PlayInputs {
        inventories: record.inventories.clone(),
        playbook: record.playbook.clone(),
        extra_vars: given,
        limit: record.limit.clone(),
        overrides: RolloutOverrides {
            forks: Some(record.rollout.forks),
            max_fail_percentage: Some(record.rollout.max_fail_percentage),
            ..Default::default()
        },
        windows: if windows.is_empty() {
            record.windows.clone()
        } else {
            windows.to_vec()
        },
        ..Default::default()
    }
}

/// A resume ready to run.
#[derive(Debug)]
pub struct Resume {
    pub run_dir: RunDir,
    pub claim: Claim,
    /// The play, planned to run only what is left.
    pub play: Play,
    /// What the resume leaves alone and runs again, and what `--force` let through
    /// (`changes`): told as the run's first event after `run_started`.
    pub resumed: Resumed,
    /// The first attempt's gate verdict: a resume does not ask the gate again.
    pub gate: Option<GateVerdict>,
    /// Lines of the journal that could not be read (and were ignored).
    pub unreadable: usize,
}

/// Checks `play` (prepared from [`inputs`]) against the run's record and plans
/// what is left. With `force`, inputs that changed since the run started are let through.
pub fn prepare(paused: Paused, mut play: Play, force: bool) -> Result<Resume, ResumeError> {
    let Paused {
        run_dir,
        claim,
        record,
    } = paused;
    let missing = missing_secrets(&record.redacted, &play.extra_vars);
    if !missing.is_empty() {
        return Err(ResumeError::MissingSecrets {
            run: run_dir.id,
            names: missing,
        });
    }
    play.set_run_id(&run_dir.id);
    let changes = record.changes(&play);
    if !changes.is_empty() && !force {
        return Err(ResumeError::Changed {
            run: run_dir.id,
            changes,
        });
    }
    let path = run_dir.events_path();
    let (events, unreadable) =
        read::read_events(&path).map_err(|source| ResumeError::Journal { path, source })?;
    let selected = |h: &str| play.host(h).is_some();
    let (plan, mut resumed) = what_is_left(&run_dir.id, &record.plan, &events, selected);
    resumed.changes = changes;
    play.plan = Plan {
        seed: record.seed,
        ..plan
    };
    Ok(Resume {
        run_dir: run_dir.redacting(play.redactor.clone()),
        claim,
        play,
        resumed,
        gate: record.gate,
        unreadable,
    })
}

/// The secret variables the run was given (which the journal does not keep) that `given`
/// does not give again.
pub fn missing_secrets(redacted: &[String], given: &Vars) -> Vec<String> {
    redacted
        .iter()
        .filter(|name| !given.contains_key(name.as_str()))
        .cloned()
        .collect()
}

/// The run's `plan` with only the hosts left to do that are still `selected` (with
/// `--force`, the inventory may no longer select some), and what the resume tells of the
/// others (`changes` left empty). Its attempt is one more than the run's starts so far.
pub fn what_is_left(
    run_id: &str,
    plan: &[Batch],
    events: &[Stamped],
    selected: impl Fn(&str) -> bool,
) -> (Plan, Resumed) {
    // One fold of the journal tells both what is left and how many attempts came before.
    let state = RunState::of(events);
    let left = state.left(plan);
    let batches: Vec<Batch> = left
        .batches
        .into_iter()
        .map(|mut b| {
            b.hosts.retain(|h| selected(h));
            b
        })
        .collect();
    let attempt = 1 + state.attempts();
    let resumed = Resumed {
        run_id: run_id.to_string(),
        attempt,
        finished: left.finished,
        retry: left.retry,
        interrupted: left.interrupted,
        changes: Vec::new(),
    };
    let plan = Plan {
        batches,
        seed: None,
    };
    (plan, resumed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::Event;
    use crate::events::{Interrupted, Outcome};

    fn at(event: Event) -> Stamped {
        Stamped { at_ms: 0, event }
    }

    fn run_started() -> Stamped {
        at(Event::RunStarted {
            run_id: "r1".into(),
            playbook: "upgrade.yml".into(),
            name: "Upgrade".into(),
            pattern: "all".into(),
            limit: None,
            hosts: 4,
            batches: 2,
            forks: 1,
            run_dir: "runs/r1".into(),
        })
    }

    fn started(host: &str) -> Stamped {
        at(Event::HostStarted {
            host: host.into(),
            batch: 1,
            steps: 3,
        })
    }

    fn finished(host: &str, outcome: Outcome) -> Stamped {
        at(Event::HostFinished {
            host: host.into(),
            outcome,
            changed: true,
            changed_steps: 1,
            duration: Duration::from_secs(1),
            failed_step: None,
            message: None,
            log: String::new(),
        })
    }

    fn plan() -> Vec<Batch> {
        let batch = |hosts: &[&str], canary| Batch {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            canary,
            staged: false,
        };
        vec![batch(&["a"], true), batch(&["b", "c", "d"], false)]
    }

    #[test]
    fn a_resume_runs_what_did_not_end_well_in_the_plan_s_own_batches() {
        let events = [
            run_started(),
            started("a"),
            finished("a", Outcome::Ok),
            started("b"),
            finished("b", Outcome::Failed),
            started("c"),
        ];
        let (plan, resumed) = what_is_left("r1", &plan(), &events, |_| true);
        let hosts: Vec<&[String]> = plan.batches.iter().map(|b| &b.hosts[..]).collect();
        assert_eq!(
            hosts,
            [&[][..], &["b".to_string(), "c".into(), "d".into()][..]]
        );
        assert!(plan.batches[0].canary, "batches keep their places");
        assert_eq!(resumed.attempt, 2);
        assert_eq!(resumed.finished, ["a"]);
        assert_eq!(resumed.retry, ["b", "c"]);
        assert_eq!(
            resumed.interrupted,
            [Interrupted {
                host: "c".into(),
                step: "its start".into()
            }]
        );
    }

    #[test]
    fn hosts_the_inventory_no_longer_selects_are_left_out() {
        let events = [run_started(), run_started()];
        let (plan, resumed) = what_is_left("r1", &plan(), &events, |h| h != "c");
        assert_eq!(plan.batches[1].hosts, ["b", "d"]);
        assert_eq!(resumed.attempt, 3);
    }

    #[test]
    fn secrets_must_be_given_again() {
        let redacted = vec!["db_password".to_string(), "api_key".to_string()];
        let mut given = Vars::new();
        given.insert("api_key".into(), "k".into());
        assert_eq!(missing_secrets(&redacted, &given), ["db_password"]);
        given.insert("db_password".into(), "p".into());
        assert!(missing_secrets(&redacted, &given).is_empty());
    }

    fn record() -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "run_id": "r1", "started": "2026-12-05T01:58:00Z", "operator": "ops",
            "controller": "ctl", "pid": 1, "fleetup_version": "0.1.0",
            "playbook": "/srv/upgrade.yml", "playbook_name": "Upgrade", "pattern": "all",
            "limit": "production", "inventories": ["/srv/hosts.yml"],
            "extra_vars": {"sl_version": "v4.66.1", "db_password": "<redacted>"},
            "redacted": ["db_password"], "target": ["v4.66.1"],
            "rollout": {"serial": "1", "canary": "1", "max_fail_percentage": 0.0,
                        "order": "inventory", "forks": 5},
            "plan": [], "seed": null, "playbook_sha256": "", "hosts_sha256": {},
            "windows": ["Sat 02:00-06:00"]
        }))
        .unwrap()
    }

    #[test]
    fn a_resume_is_given_what_the_journal_kept_and_the_secrets_again() {
        let given = inputs(&record(), &["db_password=p".to_string()], &[]);
        assert_eq!(
            given.extra_vars,
            [r#"{"sl_version":"v4.66.1"}"#, "db_password=p"]
        );
        assert_eq!(given.limit.as_deref(), Some("production"));
        assert_eq!(given.overrides.forks, Some(5));
        assert_eq!(given.windows, ["Sat 02:00-06:00"]);
        let now = ["Sun 01:00-03:00".to_string()];
        assert_eq!(inputs(&record(), &[], &now).windows, now);
    }

    #[test]
    fn a_run_the_gate_refused_is_not_resumed() {
        let verdict = |verdict| GateVerdict {
            require_staged: "staging".into(),
            soak: Duration::ZERO,
            verdict,
            detail: String::new(),
            runs: Vec::new(),
        };
        assert!(refused(Some(&verdict(Verdict::Refused))).is_some());
        assert!(refused(Some(&verdict(Verdict::Skipped))).is_none());
        assert!(refused(None).is_none());
    }
}
