//! The question asked before a run starts, after the plan was shown. It counts the hosts
//! that will do work: a host the pre-flight found at its target already only runs its
//! checks, and an operator who reads `Upgrade 10 hosts` expects ten upgrades.

use crate::engine::PreflightResult;
use crate::events::Outcome;
use crate::play::Play;
use crate::template::Templates;
use crate::ui::text::{clean, plural};

/// Names listed in the question; a fleet-wide rerun would otherwise list hundreds.
const NAMES_SHOWN: usize = 5;

/// The hosts the pre-flight read at the version the playbook's `audit.to` names for them,
/// with that version, in pre-flight order.
pub fn at_target(play: &Play, preflight: &[PreflightResult]) -> Vec<(String, String)> {
    let Some(to) = &play.playbook.audit.to else {
        return Vec::new();
    };
    let templates = Templates::new();
    preflight
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .filter_map(|r| {
            let now = r.version.as_deref()?;
            let target = templates.render(to, &play.host(&r.host)?.vars).ok()?;
            (now == target).then(|| (r.host.clone(), target))
        })
        .collect()
}

/// `Upgrade 9 hosts in 3 batches (1 more is at v4.66.1 already: prod-03)? [y/N] `.
/// `hosts`: the plan's hosts, `batches`: its batches with hosts.
pub fn question(
    resumed: bool,
    hosts: usize,
    batches: usize,
    at_target: &[(String, String)],
) -> String {
    let working = hosts.saturating_sub(at_target.len());
    let mut asked = format!(
        "\n{} {working} host{} in {batches} batch{}",
        if resumed { "Resume with" } else { "Upgrade" },
        plural(working),
        if batches == 1 { "" } else { "es" },
    );
    if !at_target.is_empty() {
        asked.push_str(&format!(" ({})", already(at_target)));
    }
    asked.push_str("? [y/N] ");
    asked
}

/// `1 more is at v4.66.1 already: prod-03`, or with several versions `3 more are at their
/// target already: a, b, c`.
fn already(at_target: &[(String, String)]) -> String {
    let n = at_target.len();
    let first = &at_target[0].1;
    let version = if at_target.iter().all(|(_, v)| v == first) {
        clean(first).into_owned()
    } else {
        "their target".to_string()
    };
    let mut names: Vec<String> = at_target
        .iter()
        .take(NAMES_SHOWN)
        .map(|(h, _)| clean(h).into_owned())
        .collect();
    if n > NAMES_SHOWN {
        names.push(format!("and {} more", n - NAMES_SHOWN));
    }
    let (verb, whose) = if n == 1 {
        ("is", "its")
    } else {
        ("are", "their")
    };
    format!(
        "{n} more {verb} at {version} already, {whose} steps skipped: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hosts: &[&str], version: &str) -> Vec<(String, String)> {
        hosts
            .iter()
            .map(|h| (h.to_string(), version.to_string()))
            .collect()
    }

    #[test]
    fn the_question_counts_only_the_hosts_that_will_do_work() {
        assert_eq!(
            question(false, 10, 3, &[]),
            "\nUpgrade 10 hosts in 3 batches? [y/N] "
        );
        assert_eq!(
            question(false, 10, 3, &at(&["prod-03"], "v4.66.1")),
            "\nUpgrade 9 hosts in 3 batches (1 more is at v4.66.1 already, its steps skipped: prod-03)? [y/N] "
        );
        assert_eq!(
            question(true, 2, 1, &at(&["a"], "v1")),
            "\nResume with 1 host in 1 batch (1 more is at v1 already, its steps skipped: a)? [y/N] "
        );
    }

    #[test]
    fn many_hosts_at_their_target_are_counted_not_all_listed() {
        let names: Vec<String> = (1..=8).map(|i| format!("p-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut at_target = at(&names, "v2");
        at_target[7].1 = "v3".into();
        assert_eq!(
            question(false, 8, 2, &at_target),
            "\nUpgrade 0 hosts in 2 batches (8 more are at their target already, their steps skipped: p-1, p-2, p-3, p-4, p-5, and 3 more)? [y/N] "
        );
    }
}
