//! One function per command. Each turns its arguments into the library's inputs, runs it,
//! prints the outcome and returns the exit code; nothing else decides exit codes.

use fleetup::diagnostic::{Diagnostic, Diagnostics};
use fleetup::exit::Exit;
use fleetup::play::{self, Play};
use fleetup::ui;
use fleetup::ui::text::plural;

mod history;
mod run;
mod staged;

use std::path::PathBuf;

use fleetup::plan::Canary;
use fleetup::play::{PlayInputs, RolloutOverrides};

use fleetup::clock::Clock;

use crate::cli::{CheckArgs, OutputFormat, PlanArgs, StagingArgs, StatusArgs};

pub fn plan(args: &PlanArgs) -> Exit {
    let play = match prepare(&args.play.inputs(&args.rollout, &args.staging)) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    let clock = match clock() {
        Ok(clock) => clock,
        Err(exit) => return exit,
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| run::default_state_dir(&args.play.inventory));
    let runs = staged::past_runs(&play, &state_dir);
    let outlook = staged::outlook(&play, &runs, &clock);
    match args.output {
        OutputFormat::Text => print!("{}", ui::plan::text(&play, args.verbose, &outlook)),
        OutputFormat::Json => println!("{}", ui::plan::json(&play, &outlook)),
    }
    Exit::Success
}

/// The clock windows and the gate read: `FLEETUP_NOW` rehearses another instant.
fn clock() -> Result<Clock, Exit> {
    Clock::from_env().map_err(|m| {
        eprintln!("error: {m}; nothing was contacted.");
        Exit::InvalidInput
    })
}

pub fn check(args: &CheckArgs) -> Exit {
    let play = match prepare(&args.play.inputs(&args.rollout, &StagingArgs::default())) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    let contact = !args.offline && play.playbook.preflight_len > 0;
    println!(
        "ok: {} is valid for {} host{} in {} batch{}",
        play.playbook.path().display(),
        play.hosts.len(),
        plural(play.hosts.len()),
        play.plan.batches.len(),
        if play.plan.batches.len() == 1 {
            ""
        } else {
            "es"
        },
    );
    if !contact {
        println!("nothing was contacted");
        return Exit::Success;
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| run::default_state_dir(&args.play.inventory));
    println!("\npre-flight (read-only) of every host:");
    run::check_hosts(&play, &args.connection, &state_dir)
}

/// The built-in status playbook, so that `fleetup status` works from any directory, with
/// the variables it shares with the upgrade.
const STATUS_PLAYBOOK: &str = include_str!("../../playbooks/simplelogin-status.yml");
const BUILTIN_FILES: &[(&str, &str)] = &[(
    "simplelogin-facts.yml",
    include_str!("../../playbooks/simplelogin-facts.yml"),
)];

pub fn status(args: &StatusArgs) -> Exit {
    let inputs = PlayInputs {
        inventories: args.inventory.inventories.clone(),
        playbook: args
            .playbook
            .clone()
            .unwrap_or_else(|| PathBuf::from("playbooks/simplelogin-status.yml (built in)")),
        playbook_text: args.playbook.is_none().then_some(STATUS_PLAYBOOK),
        builtin_files: BUILTIN_FILES,
        extra_vars: args.extra_vars.clone(),
        limit: args.limit.clone(),
        overrides: RolloutOverrides {
            forks: Some(args.forks as usize),
            canary: Some(Canary::First(0)),
            ..Default::default()
        },
        ..Default::default()
    };
    let play = match prepare(&inputs) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| run::default_state_dir(&args.inventory));
    run::status(&play, &args.connection, &state_dir)
}

pub use history::{history, show};
pub use run::{exec, run};

/// Prepares the play, printing warnings, or the input errors and the exit code for them.
pub(crate) fn prepare(inputs: &play::PlayInputs) -> Result<Play, Exit> {
    match play::prepare(inputs) {
        Ok(play) => {
            print_warnings(&play.warnings);
            Ok(play)
        }
        Err(errors) => Err(invalid_input(&errors)),
    }
}

pub(crate) fn print_warnings(warnings: &[Diagnostic]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

pub(crate) fn invalid_input(errors: &Diagnostics) -> Exit {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} problem{} in the input; nothing was contacted and no host was changed.",
        errors.0.len(),
        plural(errors.0.len())
    );
    Exit::InvalidInput
}
