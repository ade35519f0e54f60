//! The promotion gate in words: its evidence, its objections, its verdict as recorded, and
//! what the operator is told when it refuses or is skipped. The rules are `gate`'s.

use std::time::Duration;

use crate::events::{GateVerdict, Verdict};
use crate::gate::{Check, Evidence, Judgement, Objection};
use crate::ui::text::{duration, plural};

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

/// The journal's side of `check` in words.
pub fn evidence(check: &Check) -> String {
    match &check.evidence {
        None => format!("every host of the run is in `{}`", check.group),
        Some(e) => describe(&check.group, &check.target(), check.soak, e, check.now_ms),
    }
}

/// One objection in words.
pub fn objection(check: &Check, o: &Objection) -> String {
    match o {
        Objection::NotSoaked => evidence(check),
        Objection::NotCheckedLive => "the staged hosts were not checked live (--skip-gate)".into(),
        Objection::NotChecked { host } => format!("{host} was not checked"),
        Objection::Unhealthy { host, why } => format!("{host} is not healthy now: {why}"),
        Objection::VersionUnknown { host } => {
            format!("{host} is not healthy now: its version is unknown")
        }
        Objection::OtherVersion {
            host,
            version,
            target,
        } => format!(
            "{host} runs {} now, not {target}",
            if version.is_empty() {
                "an unknown version"
            } else {
                version
            }
        ),
    }
}

/// Every objection of `j`, in words, one after the other.
fn objections(j: &Judgement) -> String {
    let words: Vec<String> = j
        .objections
        .iter()
        .map(|o| objection(&j.check, o))
        .collect();
    words.join("; ")
}

/// The verdict as the journal keeps it: its detail is the evidence when the gate passed
/// or did not apply, what stood in its way otherwise. `rehearsal` is the shifted clock's
/// setting (`FLEETUP_NOW=...`), said because the soak was judged at that time.
pub fn verdict(j: &Judgement, rehearsal: Option<&str>) -> GateVerdict {
    let mut detail = match j.verdict {
        Verdict::NotRequired => evidence(&j.check),
        Verdict::Passed => format!("{}; its hosts are healthy at it now", evidence(&j.check)),
        Verdict::Skipped | Verdict::Refused => objections(j),
    };
    if let Some(setting) = rehearsal {
        detail.push_str(&format!(" (judged at {setting}, not the real time)"));
    }
    j.record(detail)
}

/// The refusal of a run, and how to get the gate's consent.
pub fn refusal(j: &Judgement) -> String {
    format!(
        "error: the promotion gate refuses this run: {}.\n\
         The run includes hosts outside `{group}`: first upgrade `{group}` to {target} \
         (e.g. --limit {group}), let it soak for {soak}, then run again; or pass --skip-gate \
         to override (recorded). No host was changed.",
        objections(j),
        group = j.check.group,
        target = j.check.target(),
        soak = duration(j.check.soak),
    )
}

/// The warning of a run that goes on without the gate's consent.
pub fn skipped(j: &Judgement) -> String {
    format!(
        "WARNING: --skip-gate: running without the promotion gate's consent ({}); this is recorded in the journal and in every host's audit line",
        objections(j)
    )
}

/// The gate as `fleetup plan` shows it, from the journal alone.
pub fn outlook(check: &Check) -> String {
    let verdict = match &check.evidence {
        None => "not required",
        Some(Evidence::Soaked { .. }) => {
            "passes (its hosts' health and version are checked live when the run starts)"
        }
        Some(_) => "REFUSES the run now",
    };
    format!(
        "`{}` must run {} for {}: {verdict}: {}",
        check.group,
        check.target(),
        duration(check.soak),
        evidence(check)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::tests::{check, one_behind, one_unhealthy, staged};
    use crate::gate::{live_problems, Live};

    fn problems(live: &[(String, Live)]) -> Vec<String> {
        live_problems(&staged(), live)
            .iter()
            .map(|o| objection(&check(None), o))
            .collect()
    }

    #[test]
    fn an_empty_staged_group_never_passes() {
        let e = Evidence::Missing { hosts: vec![] };
        assert_eq!(
            describe("staging", "", Duration::ZERO, &e, 0),
            "`staging` has no hosts in the inventory: nothing was staged"
        );
    }

    #[test]
    fn a_half_staged_group_is_missing_its_other_hosts() {
        let e = Evidence::Missing {
            hosts: vec!["stg-2".into()],
        };
        assert_eq!(
            describe("staging", "v4.66.1", Duration::ZERO, &e, 2 * 3_600_000),
            "no successful run took stg-2 of `staging` to v4.66.1"
        );
    }

    #[test]
    fn staged_hosts_must_be_healthy_at_the_target_now() {
        assert_eq!(
            problems(&one_behind()),
            vec!["stg-2 runs v4.66.0 now, not v4.66.1".to_string()]
        );
        assert_eq!(
            problems(&one_unhealthy()),
            vec!["stg-2 is not healthy now: health: rc 22".to_string()]
        );
    }

    #[test]
    fn the_record_says_why_and_when_it_was_judged() {
        let missing = Evidence::Missing {
            hosts: vec!["stg-1".into()],
        };
        let j = check(Some(missing)).judge(&[], true);
        let v = verdict(&j, Some("FLEETUP_NOW=2026-01-01T00:00:00Z"));
        assert_eq!(v.verdict, Verdict::Skipped);
        assert_eq!(
            v.detail,
            "no successful run took stg-1 of `staging` to v4.66.1 (judged at FLEETUP_NOW=2026-01-01T00:00:00Z, not the real time)"
        );
        assert_eq!(
            verdict(&check(None).judge(&[], false), None).detail,
            "every host of the run is in `staging`"
        );
    }
}
