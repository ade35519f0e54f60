//! What a host's pre-flight established, re-checked at its turn only as far as the host can
//! have changed since (README: "What runs twice, and why"):
//!
//! - no findings from this process's pre-flight (a host that reconnected after a resume
//!   has its own pre-flight), or no `recheck:` in the playbook: the whole pre-flight runs
//!   again, as nothing cheaper can tell whether the host changed;
//! - findings older than `recheck.within`: the whole pre-flight runs again, as what drifts
//!   with time (free disk, a container's health) is read again;
//! - else the `recheck` step runs again: if it succeeds and prints exactly what it printed
//!   at the pre-flight, the findings stand and the other pre-flight steps do not run; if
//!   not, the host changed, and the whole pre-flight runs again before anything touches it.

use std::time::Duration;

use crate::cksum::Cksum;
use crate::events::StepStatus;
use crate::transport::kept::Findings;

/// Why the whole pre-flight runs again at a host's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Again {
    /// This process ran no pre-flight on the host.
    NoFindings,
    /// The playbook names no `recheck` step.
    NoProbe,
    Stale {
        age: Duration,
        within: Duration,
    },
    /// The `recheck` step printed something else, or failed.
    Changed,
}

impl Again {
    /// For the host's log.
    pub fn note(&self, step: &str) -> String {
        let again = "the whole pre-flight runs again";
        match self {
            Again::NoFindings => format!("no pre-flight findings from this run: {again}"),
            Again::NoProbe => format!("the playbook has no `recheck:` step: {again}"),
            Again::Stale { age, within } => format!(
                "the pre-flight was {} ago, longer than recheck.within ({}): {again}",
                crate::duration::friendly(*age),
                crate::duration::friendly(*within)
            ),
            Again::Changed => {
                format!("`{step}` no longer prints what it printed at the pre-flight: the host changed; {again}")
            }
        }
    }
}

/// Which pre-flight step to run again as the probe, or why the whole pre-flight runs.
pub(super) fn probe(
    findings: Option<&Findings>,
    recheck: Option<(usize, Duration)>,
) -> Result<usize, Again> {
    let findings = findings.ok_or(Again::NoFindings)?;
    let (step, within) = recheck.ok_or(Again::NoProbe)?;
    let age = findings.at.elapsed();
    if age > within {
        return Err(Again::Stale { age, within });
    }
    Ok(step)
}

/// Whether the probe's run now shows the host as the pre-flight found it.
pub(super) fn stands(findings: &Findings, status: StepStatus, stdout: &str) -> Result<(), Again> {
    let ran = matches!(status, StepStatus::Ok | StepStatus::Changed);
    match findings.probe {
        Some(then) if ran && then == Cksum::of(stdout.as_bytes()) => Ok(()),
        _ => Err(Again::Changed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn found(ago: Duration, probe: Option<&str>) -> Findings {
        let mut f = Findings::new(
            Default::default(),
            probe.map(|p| Cksum::of(p.as_bytes())),
            Default::default(),
        );
        f.at = Instant::now() - ago;
        f
    }

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    #[test]
    fn recent_findings_are_probed_old_or_missing_ones_run_the_whole_preflight() {
        let recent = found(Duration::from_secs(5), Some("x"));
        assert_eq!(probe(Some(&recent), Some((1, TEN_MINUTES))), Ok(1));
        assert_eq!(probe(None, Some((1, TEN_MINUTES))), Err(Again::NoFindings));
        assert_eq!(probe(Some(&recent), None), Err(Again::NoProbe));
        let old = found(Duration::from_secs(601), Some("x"));
        assert!(matches!(
            probe(Some(&old), Some((1, TEN_MINUTES))),
            Err(Again::Stale { within, .. }) if within == TEN_MINUTES
        ));
    }

    #[test]
    fn findings_stand_only_when_the_probe_prints_the_same_and_succeeds() {
        let f = found(Duration::ZERO, Some("app v1 running\n"));
        assert_eq!(stands(&f, StepStatus::Ok, "app v1 running\n"), Ok(()));
        assert_eq!(
            stands(&f, StepStatus::Ok, "app v2 running\n"),
            Err(Again::Changed)
        );
        assert_eq!(
            stands(&f, StepStatus::Failed, "app v1 running\n"),
            Err(Again::Changed)
        );
        // A pre-flight that never ran the probe step cannot vouch for the host.
        let none = found(Duration::ZERO, None);
        assert_eq!(stands(&none, StepStatus::Ok, ""), Err(Again::Changed));
        assert!(Again::Changed
            .note("probe")
            .contains("`probe` no longer prints"));
    }
}
