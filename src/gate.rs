//! The promotion gate: production runs only what staging has run, healthy, for the soak
//! time. Pure: the journal's past runs and the staged hosts' live state in, a verdict out,
//! so that what lets a version into production is proven in tests.

use std::time::Duration;

use crate::events::{GateVerdict, Verdict};
use crate::journal::read::PastRun;
use crate::play::Play;
use crate::template::Templates;
use crate::ui::text::{duration, plural};

/// A host of the staged group and the version the run takes it to (the playbook's
/// `audit.to`, rendered for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub host: String,
    pub target: String,
}

/// What the journal says about the staged group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Every staged host reached its target in a successful run, at least `soak` ago.
    Soaked { since_ms: u64, runs: Vec<String> },
    /// Every staged host reached its target, but the last of them less than `soak` ago.
    Soaking {
        since_ms: u64,
        left: Duration,
        runs: Vec<String>,
    },
    /// These staged hosts never ended ok in a run to their target (none: the group has
    /// no hosts).
    Missing { hosts: Vec<String> },
}

/// The gate of a play, as far as the journal tells (the live check comes after).
#[derive(Debug, Clone)]
pub struct Check {
    pub group: String,
    pub soak: Duration,
    pub staged: Vec<Staged>,
    /// `None`: every host of the run is staged, the gate does not apply.
    pub evidence: Option<Evidence>,
}

impl Check {
    /// Reads the journal's `runs` for `play`'s gate, at `now_ms`; `None` without a gate.
    pub fn new(play: &Play, runs: &[PastRun], now_ms: u64) -> Option<Check> {
        let gate = play.gate.as_ref()?;
        let templates = Templates::new();
        let to = play.playbook.audit.to.as_deref().unwrap_or_default();
        let staged: Vec<Staged> = play
            .staged_hosts()
            .into_iter()
            .map(|h| Staged {
                target: templates.render(to, &h.vars).unwrap_or_default(),
                host: h.name,
            })
            .collect();
        let names: Vec<String> = staged.iter().map(|s| s.host.clone()).collect();
        let run_hosts: Vec<String> = play.hosts.iter().map(|h| h.name.clone()).collect();
        let evidence =
            required(&run_hosts, &names).then(|| evidence(&staged, runs, gate.soak.0, now_ms));
        Some(Check {
            group: gate.require_staged.clone(),
            soak: gate.soak.0,
            staged,
            evidence,
        })
    }

    /// The version(s) the staged group must run, for messages.
    pub fn target(&self) -> String {
        let mut targets: Vec<&str> = self.staged.iter().map(|s| s.target.as_str()).collect();
        targets.sort();
        targets.dedup();
        targets.join(", ")
    }

    /// The journal's side in words.
    pub fn describe(&self, now_ms: u64) -> String {
        match &self.evidence {
            None => format!("every host of the run is in `{}`", self.group),
            Some(e) => describe(&self.group, &self.target(), self.soak, e, now_ms),
        }
    }

    /// The verdict to record, with `problems` (none when it passed).
    pub fn verdict(&self, problems: &[String], skipped: bool, now_ms: u64) -> GateVerdict {
        let runs = match &self.evidence {
            Some(Evidence::Soaked { runs, .. } | Evidence::Soaking { runs, .. }) => runs.clone(),
            _ => Vec::new(),
        };
        let (verdict, detail) = if self.evidence.is_none() {
            (Verdict::NotRequired, self.describe(now_ms))
        } else if problems.is_empty() {
            (
                Verdict::Passed,
                format!("{}; its hosts are healthy at it now", self.describe(now_ms)),
            )
        } else {
            (
                if skipped {
                    Verdict::Skipped
                } else {
                    Verdict::Refused
                },
                problems.join("; "),
            )
        };
        GateVerdict {
            require_staged: self.group.clone(),
            soak: self.soak,
            verdict,
            detail,
            runs,
        }
    }
}

/// Whether the run needs the gate: it does when any of its hosts is outside the staged
/// group (a run of the staged group itself is how the evidence is made).
pub fn required(run_hosts: &[String], staged: &[String]) -> bool {
    run_hosts.iter().any(|h| !staged.contains(h))
}

/// When each staged host reached its target, from the journal's past runs: the last run
/// that changed it to the target (it went there then), else the first that found it
/// there. The group has run the target since its last host got there.
pub fn evidence(staged: &[Staged], runs: &[PastRun], soak: Duration, now_ms: u64) -> Evidence {
    // An empty group staged nothing: it must never pass for one that soaked.
    if staged.is_empty() {
        return Evidence::Missing { hosts: Vec::new() };
    }
    let mut missing = Vec::new();
    let mut since_ms = 0u64;
    let mut used: Vec<String> = Vec::new();
    for s in staged {
        let finishes = runs
            .iter()
            .filter(|r| r.targets.contains(&s.target))
            .flat_map(|r| {
                r.finishes
                    .iter()
                    .filter(|f| f.host == s.host)
                    .map(move |f| (r, f))
            });
        let mut changed: Option<(&PastRun, u64)> = None;
        let mut found: Option<(&PastRun, u64)> = None;
        for (run, f) in finishes {
            if f.changed && changed.is_none_or(|(_, at)| f.at_ms > at) {
                changed = Some((run, f.at_ms));
            }
            if found.is_none_or(|(_, at)| f.at_ms < at) {
                found = Some((run, f.at_ms));
            }
        }
        match changed.or(found) {
            Some((run, at)) => {
                since_ms = since_ms.max(at);
                if !used.contains(&run.id) {
                    used.push(run.id.clone());
                }
            }
            None => missing.push(s.host.clone()),
        }
    }
    if !missing.is_empty() {
        return Evidence::Missing { hosts: missing };
    }
    used.sort();
    let soaked = Duration::from_millis(now_ms.saturating_sub(since_ms));
    if soaked >= soak {
        Evidence::Soaked {
            since_ms,
            runs: used,
        }
    } else {
        Evidence::Soaking {
            since_ms,
            left: soak - soaked,
            runs: used,
        }
    }
}

/// A staged host's live check: its version now (the playbook's `audit.from` after its
/// pre-flight), or why the pre-flight or the verification failed.
pub type Live = Result<String, String>;

/// What is wrong with the staged hosts now: each one not healthy or not at its target.
pub fn live_problems(staged: &[Staged], live: &[(String, Live)]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in staged {
        match live.iter().find(|(h, _)| *h == s.host).map(|(_, l)| l) {
            None => problems.push(format!("{} was not checked", s.host)),
            Some(Err(why)) => problems.push(format!("{} is not healthy now: {why}", s.host)),
            Some(Ok(version)) if version.trim() != s.target => problems.push(format!(
                "{} runs {} now, not {}",
                s.host,
                if version.trim().is_empty() {
                    "an unknown version"
                } else {
                    version.trim()
                },
                s.target
            )),
            Some(Ok(_)) => {}
        }
    }
    problems
}

/// The journal's evidence in words, for the refusal or the record.
pub fn describe(group: &str, target: &str, soak: Duration, e: &Evidence, now_ms: u64) -> String {
    let ago = |since: u64| duration(Duration::from_millis(now_ms.saturating_sub(since)));
    match e {
        Evidence::Soaked { since_ms, runs } => format!(
            "`{group}` has run {target} for {} (run{} {})",
            ago(*since_ms),
            plural(runs.len()),
            runs.join(", ")
        ),
        Evidence::Soaking {
            since_ms,
            left,
            runs,
        } => format!(
            "`{group}` has run {target} for only {} (run{} {}); the soak is {}: {} left",
            ago(*since_ms),
            plural(runs.len()),
            runs.join(", "),
            duration(soak),
            duration(*left)
        ),
        Evidence::Missing { hosts } if hosts.is_empty() => {
            format!("`{group}` has no hosts in the inventory: nothing was staged")
        }
        Evidence::Missing { hosts } => format!(
            "no successful run took {} of `{group}` to {target}",
            hosts.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::read::Finish;

    const HOUR: u64 = 3_600_000;

    fn staged() -> Vec<Staged> {
        ["stg-1", "stg-2"]
            .iter()
            .map(|h| Staged {
                host: h.to_string(),
                target: "v4.66.1".into(),
            })
            .collect()
    }

    fn run(id: &str, target: &str, finishes: &[(&str, u64, bool)]) -> PastRun {
        PastRun {
            id: id.into(),
            playbook_name: "Upgrade SimpleLogin".into(),
            targets: vec![target.into()],
            finishes: finishes
                .iter()
                .map(|(h, at, changed)| Finish {
                    host: h.to_string(),
                    at_ms: *at,
                    changed: *changed,
                    duration: Duration::from_secs(60),
                })
                .collect(),
        }
    }

    #[test]
    fn only_runs_to_the_same_target_count() {
        let runs = [run(
            "r1",
            "v4.66.0",
            &[("stg-1", HOUR, true), ("stg-2", HOUR, true)],
        )];
        assert_eq!(
            evidence(&staged(), &runs, Duration::from_secs(3600), 30 * HOUR),
            Evidence::Missing {
                hosts: vec!["stg-1".into(), "stg-2".into()]
            }
        );
    }

    #[test]
    fn the_soak_counts_from_the_last_staged_host_that_got_there() {
        let runs = [
            run("r1", "v4.66.1", &[("stg-1", HOUR, true)]),
            // stg-2 failed in r1 and was upgraded by a later run; a later run that found
            // stg-1 already there does not restart its clock.
            run(
                "r2",
                "v4.66.1",
                &[("stg-1", 5 * HOUR, false), ("stg-2", 4 * HOUR, true)],
            ),
        ];
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(
            evidence(&staged(), &runs, day, 10 * HOUR),
            Evidence::Soaking {
                since_ms: 4 * HOUR,
                left: Duration::from_millis(18 * HOUR),
                runs: vec!["r1".into(), "r2".into()],
            }
        );
        assert_eq!(
            evidence(&staged(), &runs, day, 28 * HOUR),
            Evidence::Soaked {
                since_ms: 4 * HOUR,
                runs: vec!["r1".into(), "r2".into()],
            }
        );
    }

    #[test]
    fn an_empty_staged_group_never_passes() {
        let runs = [run("r1", "v4.66.1", &[("stg-1", HOUR, true)])];
        let e = evidence(&[], &runs, Duration::ZERO, 100 * HOUR);
        assert_eq!(e, Evidence::Missing { hosts: vec![] });
        assert_eq!(
            describe("staging", "", Duration::ZERO, &e, 0),
            "`staging` has no hosts in the inventory: nothing was staged"
        );
    }

    #[test]
    fn a_half_staged_group_is_missing_its_other_hosts() {
        let runs = [run("r1", "v4.66.1", &[("stg-1", HOUR, true)])];
        let e = evidence(&staged(), &runs, Duration::ZERO, 2 * HOUR);
        assert_eq!(
            e,
            Evidence::Missing {
                hosts: vec!["stg-2".into()]
            }
        );
        assert_eq!(
            describe("staging", "v4.66.1", Duration::ZERO, &e, 2 * HOUR),
            "no successful run took stg-2 of `staging` to v4.66.1"
        );
    }

    #[test]
    fn staged_hosts_must_be_healthy_at_the_target_now() {
        let live = vec![
            ("stg-1".to_string(), Ok("v4.66.1".to_string())),
            ("stg-2".to_string(), Ok("v4.66.0".to_string())),
        ];
        assert_eq!(
            live_problems(&staged(), &live),
            vec!["stg-2 runs v4.66.0 now, not v4.66.1".to_string()]
        );
        let live = vec![
            ("stg-1".to_string(), Ok("v4.66.1\n".to_string())),
            ("stg-2".to_string(), Err("health: rc 22".to_string())),
        ];
        assert_eq!(
            live_problems(&staged(), &live),
            vec!["stg-2 is not healthy now: health: rc 22".to_string()]
        );
    }

    #[test]
    fn the_gate_applies_when_a_host_is_outside_the_staged_group() {
        let staged = vec!["stg-1".to_string()];
        assert!(!required(&["stg-1".into()], &staged));
        assert!(required(&["stg-1".into(), "prod-1".into()], &staged));
    }
}
