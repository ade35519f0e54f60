//! `fleetup plan`: the batches in order, as text for people or one JSON object for programs.

use std::fmt::Write;

use serde_json::json;

use crate::play::Play;
use crate::ui::text::plural;

/// The plan for people; with `verbose`, every host's steps as they will run.
pub fn text(play: &Play, verbose: bool) -> String {
    let mut out = String::new();
    let r = &play.rollout;
    let batches = &play.plan.batches;
    let _ = writeln!(
        out,
        "playbook  {} ({})",
        play.playbook.name,
        play.playbook.path().display()
    );
    let _ = writeln!(
        out,
        "hosts     {} of {} in the inventory, selected by `{}`",
        play.hosts.len(),
        play.inventory.host_names().count(),
        play.playbook.hosts.as_str()
    );
    let mut order = r.order.to_string();
    if let Some(seed) = play.plan.seed {
        let _ = write!(order, " (seed {seed}; repeat with --seed {seed})");
    }
    let _ = writeln!(
        out,
        "rollout   serial {} · canary: {} · max_fail_percentage {}% · order {} · forks {}",
        r.serial, r.canary, r.max_fail_percentage, order, r.forks
    );
    let _ = writeln!(out);
    let width = batches.len().to_string().len();
    let label = |i: usize, canary: bool| {
        let kind = if canary { " canary" } else { "" };
        format!("batch {:>width$}/{}{kind}", i + 1, batches.len())
    };
    let label_width = (0..batches.len())
        .map(|i| label(i, batches[i].canary).len())
        .max()
        .unwrap_or(0);
    for (i, batch) in batches.iter().enumerate() {
        let label = label(i, batch.canary);
        let count = format!("{} host{}", batch.hosts.len(), plural(batch.hosts.len()));
        let _ = writeln!(
            out,
            "{label:<label_width$}  {count:<9}  {}",
            batch.hosts.join(" ")
        );
        if verbose {
            for name in &batch.hosts {
                let Some(host) = play.host(name) else {
                    continue;
                };
                let _ = writeln!(out, "    {name}");
                for (n, step) in play.playbook.preview(host).iter().enumerate() {
                    let step = step.replace('\n', "\n          ");
                    let _ = writeln!(out, "      {:>2}. {step}", n + 1);
                }
            }
        }
    }
    out
}

/// The plan for programs: one object whose `batches` lists `{"hosts": [...], "canary": bool}`
/// in order (a contract: add keys, never rename them).
pub fn json(play: &Play) -> serde_json::Value {
    let r = &play.rollout;
    json!({
        "playbook": play.playbook.path(),
        "name": play.playbook.name,
        "pattern": play.playbook.hosts.as_str(),
        "host_count": play.plan.host_count(),
        "rollout": {
            "serial": r.serial.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "canary": r.canary.to_string(),
            "max_fail_percentage": r.max_fail_percentage,
            "order": r.order,
            "seed": play.plan.seed,
            "forks": r.forks,
        },
        "batches": play.plan.batches,
    })
}
