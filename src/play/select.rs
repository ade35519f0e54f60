//! Which hosts a play runs on: the playbook's `hosts:`, narrowed by `--limit`.

use std::collections::HashSet;
use std::path::Path;

use super::CLI_LIMIT;
use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::inventory::{Inventory, Pattern};
use crate::playbook::Playbook;

/// The hosts of an inventory group, in inventory order.
pub(super) fn group_hosts(inventory: &Inventory, group: &str) -> Vec<String> {
    Pattern::parse(group)
        .map(|p| inventory.select(&p).hosts)
        .unwrap_or_default()
}

/// The playbook's `hosts:`, narrowed by `--limit`. An empty selection is an error: a run
/// that touches nothing is almost always a mistyped group.
pub(super) fn select(
    playbook: &Playbook,
    inventory: &Inventory,
    limit: Option<&Pattern>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<String>, Diagnostics> {
    let doc = &playbook.doc;
    let selection = inventory.select(&playbook.hosts);
    let unmatched = unmatched_terms(inventory, selection.unmatched, doc.error("hosts", ""));
    let mut hosts = selection.hosts;
    // When nothing is selected, the terms that matched nothing are the likely cause: they
    // are reported as errors beside it.
    if hosts.is_empty() {
        let mut errors = unmatched;
        errors.push(
            doc.error(
                "hosts",
                format!(
                    "`{}` selects no host of the inventory",
                    playbook.hosts.as_str()
                ),
            )
            .hint(format!("groups: {}", group_list(inventory))),
        );
        return Err(Diagnostics(errors));
    }
    warnings.extend(unmatched);
    if let Some(limit) = limit {
        let limited = inventory.select(limit);
        let place = Diagnostic::new(Path::new(CLI_LIMIT), "--limit", "");
        // A `!web3` or `&eu` that matches nothing is most likely a typo, and the host it
        // meant to leave out would be upgraded: unlike Ansible, which only warns, an error.
        if !limited.unmatched_filters.is_empty() {
            let mut errors = unmatched_terms(inventory, limited.unmatched_filters, place);
            for e in &mut errors {
                e.message = e
                    .message
                    .replace("` matches", "` (after `!` or `&`) matches");
            }
            return Err(Diagnostics(errors));
        }
        let unmatched = unmatched_terms(inventory, limited.unmatched, place);
        let limited_hosts: HashSet<&str> = limited.hosts.iter().map(String::as_str).collect();
        hosts.retain(|h| limited_hosts.contains(h.as_str()));
        if hosts.is_empty() {
            let mut errors = unmatched;
            errors.push(
                Diagnostic::new(
                    Path::new(CLI_LIMIT),
                    "--limit",
                    format!(
                        "`{}` leaves no host of the playbook's `{}`",
                        limit.as_str(),
                        playbook.hosts.as_str()
                    ),
                )
                .hint(format!("groups: {}", group_list(inventory))),
            );
            return Err(Diagnostics(errors));
        }
        warnings.extend(unmatched);
    }
    Ok(hosts)
}

/// "`x` matches no host or group", placed where the pattern was written.
fn unmatched_terms(
    inventory: &Inventory,
    terms: Vec<String>,
    place: Diagnostic,
) -> Vec<Diagnostic> {
    let known: Vec<&str> = inventory
        .group_names()
        .chain(inventory.host_names())
        .collect();
    terms
        .into_iter()
        .map(|term| {
            let mut d = place.clone();
            d.message = format!("`{term}` matches no host or group");
            d.hint = did_you_mean(&term, known.iter().copied());
            d
        })
        .collect()
}

pub(super) fn group_list(inventory: &Inventory) -> String {
    inventory.group_names().collect::<Vec<_>>().join(", ")
}
