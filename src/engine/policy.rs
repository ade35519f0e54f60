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
}
