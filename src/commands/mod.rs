//! One function per command. Each turns its arguments into the library's inputs, calls
//! it, shows the outcome and returns the exit code, or the error that stopped it for
//! `main` to print (see `CliError::exit`); nothing else decides exit codes.

use fleetup::diagnostic::Diagnostic;
use fleetup::exit::Exit;
use fleetup::play::{self, Play};
use fleetup::staging;
use fleetup::ui;
use fleetup::ui::text::plural;

mod error;
mod history;
mod inventory;
mod run;
mod session;
mod staged;

pub use error::CliError;

use std::path::PathBuf;

use fleetup::plan::Canary;
use fleetup::play::{PlayInputs, RolloutOverrides};

use fleetup::clock::Clock;

use crate::cli::{CheckArgs, OutputFormat, PlanArgs, StagingArgs, StatusArgs};

pub fn plan(args: &PlanArgs) -> Result<Exit, CliError> {
    let play = prepare(&args.play.inputs(&args.rollout, &args.staging))?;
    let clock = clock()?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| run::default_state_dir(&args.play.inventory));
    let runs = staged::past_runs(&state_dir);
    let outlook = ui::staging::outlook(&staging::outlook(&play, &runs, clock.now()));
    match args.output {
        OutputFormat::Text => print!("{}", ui::plan::text(&play, args.verbose, &outlook)),
        OutputFormat::Json => println!("{}", ui::plan::json(&play, &outlook)),
    }
    Ok(Exit::Success)
}

/// The clock windows and the gate read: `FLEETUP_NOW` rehearses another instant.
fn clock() -> Result<Clock, CliError> {
    Clock::from_env().map_err(CliError::Clock)
}

pub fn check(args: &CheckArgs) -> Result<Exit, CliError> {
    let play = prepare(&args.play.inputs(&args.rollout, &StagingArgs::default()))?;
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
        return Ok(Exit::Success);
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

pub fn status(args: &StatusArgs) -> Result<Exit, CliError> {
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
        vault: args.inventory.vault(),
        overrides: RolloutOverrides {
            forks: Some(args.forks as usize),
            canary: Some(Canary::First(0)),
            ..Default::default()
        },
        ..Default::default()
    };
    let play = prepare(&inputs)?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| run::default_state_dir(&args.inventory));
    run::status(&play, &args.connection, &state_dir)
}

pub use history::{history, show};
pub use inventory::inventory;
pub use run::{exec, run};

/// Prepares the play, printing its warnings.
pub(crate) fn prepare(inputs: &play::PlayInputs) -> Result<Play, CliError> {
    let play = play::prepare(inputs)?;
    print_warnings(&play.warnings);
    Ok(play)
}

pub(crate) fn print_warnings(warnings: &[Diagnostic]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}
