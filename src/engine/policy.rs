//! The failure policy: when a run halts, and what its exit code is. Pure, so the rules
//! operators rely on are proven in tests.

use crate::events::{HaltReason, Outcome};
use crate::exit::Exit;

/// Whether the run must halt after a batch whose hosts ended with `outcomes`.
/// Unreachable hosts count as failures (Ansible leaves them out, and its users keep
/// asking); any failure of the canary batch halts.
pub fn halt_after_batch(
    outcomes: &[Outcome],
    canary: bool,
    max_fail_percentage: f64,
) -> Option<HaltReason> {
    let failed = outcomes.iter().filter(|o| o.is_failure()).count();
    if failed == 0 {
        return None;
    }
    if canary {
        return Some(HaltReason::CanaryFailed { failed });
    }
    let share = failed as f64 * 100.0 / outcomes.len() as f64;
    (share > max_fail_percentage).then_some(HaltReason::TooManyFailures {
        failed,
        of: outcomes.len(),
        max_fail_percentage,
    })
}

/// Why the run halts after a batch, if it does: a host that failed under
/// `--halt-immediately` first, then the operator's stop (an interrupted batch fails hosts on
/// purpose: the operator stopped it, not a policy), then the failure policy.
pub fn halt_reason(
    halted_immediately: Option<HaltReason>,
    interrupted: bool,
    policy: impl FnOnce() -> Option<HaltReason>,
) -> Option<HaltReason> {
    halted_immediately
        .or_else(|| interrupted.then_some(HaltReason::Interrupted))
        .or_else(policy)
}

/// The exit code of a run that halted for `halted`, if it did.
pub fn run_exit(
    halted: Option<&HaltReason>,
    outcomes: impl IntoIterator<Item = Outcome>,
    interrupted: bool,
    deferred: bool,
) -> Exit {
    match halted {
        // Every host ended ok, yet one went bad after: the run failed.
        Some(HaltReason::VerifyFailed { .. }) if !interrupted => Exit::HostFailed,
        Some(HaltReason::StoppedAtPause) => Exit::Interrupted,
        _ => exit_code(outcomes, interrupted, deferred),
    }
}

/// The exit code of a run: 99 when the operator interrupted it, 2 when a host failed (or
/// was rolled back), 3 when a batch was deferred to the next maintenance window, 4 when
/// hosts were only unreachable, else 0.
pub fn exit_code(
    outcomes: impl IntoIterator<Item = Outcome>,
    interrupted: bool,
    deferred: bool,
) -> Exit {
    if interrupted {
        return Exit::Interrupted;
    }
    let outcomes: Vec<Outcome> = outcomes.into_iter().collect();
    let any = |f: fn(&Outcome) -> bool| outcomes.iter().any(f);
    if any(|o| {
        matches!(
            o,
            Outcome::Failed | Outcome::RolledBack | Outcome::RollbackFailed | Outcome::Abandoned
        )
    }) {
        Exit::HostFailed
    } else if deferred {
        Exit::Deferred
    } else if any(|o| matches!(o, Outcome::Unreachable | Outcome::UnreachableMidUpgrade)) {
        Exit::Unreachable
    } else {
        Exit::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn default_zero_percent_halts_on_any_failure() {
        assert_eq!(halt_after_batch(&[Ok, Ok, Skipped], false, 0.0), None);
        assert!(halt_after_batch(&[Ok, Ok, Unreachable], false, 0.0).is_some());
        assert!(halt_after_batch(&[Ok, RolledBack], false, 0.0).is_some());
    }

    #[test]
    fn threshold_must_be_exceeded_and_unreachable_counts() {
        // 1 of 4 = 25%: not above 25%.
        assert_eq!(halt_after_batch(&[Ok, Ok, Ok, Failed], false, 25.0), None);
        // 2 of 4 = 50% (one of them unreachable): above 25%.
        assert_eq!(
            halt_after_batch(&[Ok, Ok, Unreachable, Failed], false, 25.0),
            Some(HaltReason::TooManyFailures {
                failed: 2,
                of: 4,
                max_fail_percentage: 25.0
            })
        );
    }

    #[test]
    fn canary_failure_always_halts() {
        assert_eq!(
            halt_after_batch(&[Unreachable], true, 100.0),
            Some(HaltReason::CanaryFailed { failed: 1 })
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code([Ok, Skipped], false, false), Exit::Success);
        assert_eq!(
            exit_code([Ok, Unreachable], false, false),
            Exit::Unreachable
        );
        assert_eq!(
            exit_code([Unreachable, Failed], false, false),
            Exit::HostFailed
        );
        assert_eq!(exit_code([RolledBack], false, false), Exit::HostFailed);
        assert_eq!(
            exit_code([UnreachableMidUpgrade], false, false),
            Exit::Unreachable
        );
        assert_eq!(
            exit_code([UnreachableMidUpgrade, Failed], false, false),
            Exit::HostFailed
        );
        assert_eq!(exit_code([Ok], true, false), Exit::Interrupted);
        assert_eq!(exit_code([], false, false), Exit::Success);
        // Work left for the next window beats unreachable hosts, not failures.
        assert_eq!(exit_code([Ok, Unreachable], false, true), Exit::Deferred);
        assert_eq!(exit_code([Failed], false, true), Exit::HostFailed);
    }

    #[test]
    fn a_halt_names_the_first_reason_that_applies() {
        let failed = || Some(HaltReason::CanaryFailed { failed: 1 });
        let immediately = Some(HaltReason::HaltImmediately { host: "a".into() });
        assert_eq!(halt_reason(immediately.clone(), true, failed), immediately);
        assert_eq!(
            halt_reason(None, true, failed),
            Some(HaltReason::Interrupted)
        );
        assert_eq!(halt_reason(None, false, failed), failed());
        assert_eq!(halt_reason(None, false, || None), None);
    }

    #[test]
    fn hosts_that_went_bad_during_a_pause_fail_the_run_unless_the_operator_stopped_it() {
        let bad = HaltReason::VerifyFailed {
            hosts: vec!["a".into()],
        };
        let ok = [Outcome::Ok];
        assert_eq!(run_exit(Some(&bad), ok, false, false), Exit::HostFailed);
        assert_eq!(run_exit(Some(&bad), ok, true, false), Exit::Interrupted);
        let paused = HaltReason::StoppedAtPause;
        assert_eq!(run_exit(Some(&paused), ok, false, false), Exit::Interrupted);
        assert_eq!(run_exit(None, ok, false, true), Exit::Deferred);
    }
}
