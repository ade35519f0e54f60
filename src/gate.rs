//! The promotion gate: production runs only what staging has run, healthy, for the soak
//! time. Pure: the journal's past runs and the staged hosts' live state in, a typed
//! judgement out, so that what lets a version into production is proven in tests. The
//! judgement in words is `ui::gate`'s.

use std::time::Duration;

use crate::events::{GateVerdict, Verdict};
use crate::journal::read::PastRun;
use crate::play::Play;
use crate::template::Templates;

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
    /// When the journal was read: the evidence's ages count from then.
    pub now_ms: u64,
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
            now_ms,
        })
    }

    /// The version(s) the staged group must run, for messages.
    pub fn target(&self) -> String {
        let mut targets: Vec<&str> = self.staged.iter().map(|s| s.target.as_str()).collect();
        targets.sort();
        targets.dedup();
        targets.join(", ")
    }

    /// Whether the journal lets the run through as far as it tells (the staged hosts are
    /// still checked live): the plan says so before the run.
    pub fn soaked(&self) -> bool {
        matches!(self.evidence, Some(Evidence::Soaked { .. }))
    }

    /// Whether the staged hosts must be checked live before the verdict: the journal says
    /// they soaked, and `--skip-gate` (`skip`) does not waive the check.
    pub fn wants_live(&self, skip: bool) -> bool {
        self.soaked() && !skip
    }

    /// The verdict, from the journal and the staged hosts' `live` state (read only when
    /// [`Check::wants_live`]). With `skip`, what would refuse the run is overridden.
    pub fn judge(self, live: &[(String, Live)], skip: bool) -> Judgement {
        let objections = match &self.evidence {
            None => Vec::new(),
            Some(Evidence::Soaked { .. }) if !skip => live_problems(&self.staged, live),
            Some(Evidence::Soaked { .. }) => vec![Objection::NotCheckedLive],
            Some(_) => vec![Objection::NotSoaked],
        };
        let verdict = if self.evidence.is_none() {
            Verdict::NotRequired
        } else if objections.is_empty() {
            Verdict::Passed
        } else if skip {
            Verdict::Skipped
        } else {
            Verdict::Refused
        };
        Judgement {
            check: self,
            verdict,
            objections,
        }
    }
}

/// What stands between the run and the gate's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objection {
    /// The journal does not show the group at its target for the soak time (the check's
    /// evidence says what it shows).
    NotSoaked,
    /// `--skip-gate`: the staged hosts were not checked live.
    NotCheckedLive,
    /// A staged host the live check did not reach.
    NotChecked { host: String },
    /// A staged host whose pre-flight or verification failed, and why.
    Unhealthy { host: String, why: String },
    /// A staged host that is healthy but did not tell its version.
    VersionUnknown { host: String },
    /// A staged host at another version than its target (`version` empty: it said none).
    OtherVersion {
        host: String,
        version: String,
        target: String,
    },
}

/// The gate's decision on a run.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub check: Check,
    pub verdict: Verdict,
    /// Empty when it passed or was not required.
    pub objections: Vec<Objection>,
}

impl Judgement {
    /// Whether the run may start (passed, not required, or skipped).
    pub fn allows(&self) -> bool {
        self.verdict != Verdict::Refused
    }

    /// The verdict as the journal and the events keep it, with `detail`, the judgement
    /// in words.
    pub fn record(&self, detail: String) -> GateVerdict {
        let runs = match &self.check.evidence {
            Some(Evidence::Soaked { runs, .. } | Evidence::Soaking { runs, .. }) => runs.clone(),
            _ => Vec::new(),
        };
        GateVerdict {
            require_staged: self.check.group.clone(),
            soak: self.check.soak,
            verdict: self.verdict,
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

/// A staged host's live check: its pre-flight and `verify:` steps, then its version (the
/// playbook's `audit.from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Healthy, at this version.
    At(String),
    /// Healthy, but it told no version.
    VersionUnknown,
    /// The pre-flight or the verification failed, for this reason.
    Unhealthy(String),
}

/// What is wrong with the staged hosts now: each one not healthy or not at its target.
pub fn live_problems(staged: &[Staged], live: &[(String, Live)]) -> Vec<Objection> {
    let mut problems = Vec::new();
    for s in staged {
        let host = s.host.clone();
        match live.iter().find(|(h, _)| *h == s.host).map(|(_, l)| l) {
            None => problems.push(Objection::NotChecked { host }),
            Some(Live::Unhealthy(why)) => problems.push(Objection::Unhealthy {
                host,
                why: why.clone(),
            }),
            Some(Live::VersionUnknown) => problems.push(Objection::VersionUnknown { host }),
            Some(Live::At(version)) if version.trim() != s.target => {
                problems.push(Objection::OtherVersion {
                    host,
                    version: version.trim().to_string(),
                    target: s.target.clone(),
                })
            }
            Some(Live::At(_)) => {}
        }
    }
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::journal::read::Finish;

    const HOUR: u64 = 3_600_000;

    pub(crate) fn staged() -> Vec<Staged> {
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
    }

    /// stg-2 healthy but a version behind.
    pub(crate) fn one_behind() -> Vec<(String, Live)> {
        vec![
            ("stg-1".to_string(), Live::At("v4.66.1".to_string())),
            ("stg-2".to_string(), Live::At("v4.66.0".to_string())),
        ]
    }

    /// stg-1 at its target (as a host prints it, with a newline), stg-2 unhealthy.
    pub(crate) fn one_unhealthy() -> Vec<(String, Live)> {
        vec![
            ("stg-1".to_string(), Live::At("v4.66.1\n".to_string())),
            ("stg-2".to_string(), Live::Unhealthy("health: rc 22".into())),
        ]
    }

    #[test]
    fn staged_hosts_must_be_healthy_at_the_target_now() {
        assert_eq!(
            live_problems(&staged(), &one_behind()),
            vec![Objection::OtherVersion {
                host: "stg-2".into(),
                version: "v4.66.0".into(),
                target: "v4.66.1".into()
            }]
        );
        let live = one_unhealthy();
        assert_eq!(
            live_problems(&staged(), &live),
            vec![Objection::Unhealthy {
                host: "stg-2".into(),
                why: "health: rc 22".into()
            }]
        );
        assert_eq!(
            live_problems(&staged(), &live[..1]),
            vec![Objection::NotChecked {
                host: "stg-2".into()
            }]
        );
    }

    /// A gate of `staging` for a 1-hour soak, judged at 10 h.
    pub(crate) fn check(evidence: Option<Evidence>) -> Check {
        Check {
            group: "staging".into(),
            soak: Duration::from_secs(3600),
            staged: staged(),
            evidence,
            now_ms: 10 * HOUR,
        }
    }

    fn soaked() -> Option<Evidence> {
        Some(Evidence::Soaked {
            since_ms: HOUR,
            runs: vec!["r1".into()],
        })
    }

    fn healthy() -> Vec<(String, Live)> {
        staged()
            .into_iter()
            .map(|s| (s.host, Live::At(s.target)))
            .collect()
    }

    #[test]
    fn a_soaked_group_passes_only_when_healthy_at_its_target_now() {
        assert!(check(soaked()).wants_live(false));
        let passed = check(soaked()).judge(&healthy(), false);
        assert_eq!(
            (passed.verdict, passed.objections.len()),
            (Verdict::Passed, 0)
        );
        assert_eq!(passed.record(String::new()).runs, vec!["r1".to_string()]);
        let refused = check(soaked()).judge(&healthy()[..1], false);
        assert_eq!(refused.verdict, Verdict::Refused);
        assert!(!refused.allows());
    }

    #[test]
    fn skipping_the_gate_skips_its_live_check_and_overrides_a_refusal() {
        assert!(!check(soaked()).wants_live(true));
        let skipped = check(soaked()).judge(&[], true);
        assert_eq!(skipped.verdict, Verdict::Skipped);
        assert_eq!(skipped.objections, vec![Objection::NotCheckedLive]);
        let missing = Some(Evidence::Missing {
            hosts: vec!["stg-1".into()],
        });
        let refused = check(missing.clone()).judge(&[], false);
        assert_eq!(refused.verdict, Verdict::Refused);
        assert_eq!(refused.objections, vec![Objection::NotSoaked]);
        let skipped = check(missing).judge(&[], true);
        assert!(skipped.allows());
        assert_eq!(skipped.verdict, Verdict::Skipped);
    }

    #[test]
    fn a_run_of_the_staged_group_alone_needs_no_consent() {
        let j = check(None).judge(&[], false);
        assert_eq!(j.verdict, Verdict::NotRequired);
        assert!(j.record(String::new()).runs.is_empty());
    }

    #[test]
    fn the_gate_applies_when_a_host_is_outside_the_staged_group() {
        let staged = vec!["stg-1".to_string()];
        assert!(!required(&["stg-1".into()], &staged));
        assert!(required(&["stg-1".into(), "prod-1".into()], &staged));
    }
}
