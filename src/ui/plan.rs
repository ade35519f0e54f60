//! `fleetup plan`: the batches in order, as text for people or one JSON object for programs.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;

use crate::play::Play;
use crate::state::Shape;
use crate::ui::text::{duration, elapsed, plural, selection};

/// What the plan shows of a staged rollout, read from the journal and the clock.
#[derive(Debug, Clone, Default)]
pub struct Outlook {
    /// The promotion gate's verdict as the journal has it, in words.
    pub gate: Option<String>,
    /// Each distinct window set, with its hosts and whether it is open now.
    pub windows: Vec<String>,
    /// How long a host takes (the slowest of the latest run of this playbook).
    pub per_host: Option<Duration>,
    /// Each batch's estimate, in plan order.
    pub estimates: Vec<Option<Duration>>,
}

/// The plan for people; with `verbose`, every host's steps as they will run.
pub fn text(play: &Play, verbose: bool, outlook: &Outlook) -> String {
    let mut out = String::new();
    rollout(play, &mut out);
    staging(outlook, total(play, outlook), &mut out);
    let _ = writeln!(out);
    batches(play, verbose, outlook, &mut out);
    out
}

/// What runs where, and how the rollout goes.
fn rollout(play: &Play, out: &mut String) {
    let r = &play.rollout;
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
        selection(play.playbook.hosts.as_str(), play.limit.as_deref())
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
    let pauses = [
        (
            "after the canary",
            pause_words(play.playbook.rollout.pause_after_canary),
        ),
        (
            "between batches",
            pause_words(play.playbook.rollout.pause_between_batches),
        ),
    ];
    let pauses: Vec<String> = pauses
        .iter()
        .filter_map(|(when, p)| p.as_ref().map(|p| format!("{p} {when}")))
        .collect();
    if !pauses.is_empty() {
        let verify = match play.playbook.verify.len() {
            0 => "no verify steps".to_string(),
            n => format!("verifying with {n} step{}", plural(n)),
        };
        let _ = writeln!(out, "pauses    {} · {verify}", pauses.join(" · "));
    }
}

/// The whole run's estimate: its batches in waves of forks, and its timed pauses, each host
/// as long as the journal says.
fn total(play: &Play, outlook: &Outlook) -> Option<Duration> {
    Shape::of_plan(
        &play.plan,
        play.rollout.forks,
        &play.playbook.rollout,
        outlook.per_host,
    )
    .total()
}

/// The promotion gate, the maintenance windows and how long a host and the run take.
fn staging(outlook: &Outlook, total: Option<Duration>, out: &mut String) {
    if let Some(gate) = &outlook.gate {
        let _ = writeln!(out, "gate      {gate}");
    }
    for (i, w) in outlook.windows.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}{w}",
            if i == 0 { "windows   " } else { "          " }
        );
    }
    if !outlook.windows.is_empty() || outlook.per_host.is_some() {
        let per_host = outlook.per_host.map_or(
            "no earlier run of this playbook: a batch's estimate comes from this run's first hosts"
                .to_string(),
            |d| {
                let all = total.map(|t| format!("~{} in all, pauses included: ", elapsed(t)));
                format!(
                    "{}{} per host (the slowest host of the last run of this playbook)",
                    all.unwrap_or_default(),
                    duration(d)
                )
            },
        );
        let _ = writeln!(out, "estimate  {per_host}");
    }
}

/// A line per batch, and with `verbose` its hosts' steps.
fn batches(play: &Play, verbose: bool, outlook: &Outlook, out: &mut String) {
    let batches = &play.plan.batches;
    let width = batches.len().to_string().len();
    let label = |i: usize| {
        let kind = match (batches[i].canary, batches[i].staged) {
            (true, _) => " canary",
            (false, true) => " staged",
            (false, false) => "",
        };
        format!("batch {:>width$}/{}{kind}", i + 1, batches.len())
    };
    let label_width = (0..batches.len())
        .map(|i| label(i).len())
        .max()
        .unwrap_or(0);
    for (i, batch) in batches.iter().enumerate() {
        let label = label(i);
        let count = format!("{} host{}", batch.hosts.len(), plural(batch.hosts.len()));
        let estimate = match outlook.estimates.get(i).copied().flatten() {
            Some(d) => format!("~{:<6}  ", duration(d)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{label:<label_width$}  {count:<9}  {estimate}{}",
            batch.hosts.join(" ")
        );
        if verbose {
            steps(play, &batch.hosts, out);
        }
    }
}

/// Each host's steps as they will run.
fn steps(play: &Play, hosts: &[String], out: &mut String) {
    for name in hosts {
        let Some(host) = play.host(name) else {
            continue;
        };
        let _ = writeln!(out, "    {name}");
        for (n, step) in play.playbook.preview(&host.vars).iter().enumerate() {
            let step = play.redactor.text(step).replace('\n', "\n          ");
            let _ = writeln!(out, "      {:>2}. {step}", n + 1);
        }
    }
}

fn pause_words(p: Option<crate::playbook::Pause>) -> Option<String> {
    p.map(|p| match p {
        crate::playbook::Pause::For(d) => format!("pause {}", duration(d)),
        crate::playbook::Pause::Prompt => "prompt".to_string(),
    })
}

/// The plan for programs: one object whose `batches` lists `{"hosts": [...], "canary": bool}`
/// in order (a contract: add keys, never rename them).
pub fn json(play: &Play, outlook: &Outlook) -> serde_json::Value {
    let r = &play.rollout;
    json!({
        "playbook": play.playbook.path(),
        "name": play.playbook.name,
        "pattern": play.playbook.hosts.as_str(),
        "limit": play.limit,
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
        "gate": outlook.gate,
        "windows": outlook.windows,
        "estimate_ms": total(play, outlook).map(|d| d.as_millis() as u64),
        "estimates_ms": outlook
            .estimates
            .iter()
            .map(|e| e.map(|d| d.as_millis() as u64))
            .collect::<Vec<_>>(),
    })
}
