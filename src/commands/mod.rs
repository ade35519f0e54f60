//! One function per command. Each turns its arguments into the library's inputs, runs it,
//! prints the outcome and returns the exit code; nothing else decides exit codes.

use fleetup::diagnostic::{Diagnostic, Diagnostics};
use fleetup::exit::Exit;
use fleetup::play::{self, Play};
use fleetup::ui;

mod run;

use crate::cli::{CheckArgs, OutputFormat, PlanArgs};

pub fn plan(args: &PlanArgs) -> Exit {
    let play = match prepare(&args.play.inputs(&args.rollout)) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    match args.output {
        OutputFormat::Text => print!("{}", ui::plan::text(&play, args.verbose)),
        OutputFormat::Json => println!("{}", ui::plan::json(&play)),
    }
    Exit::Success
}

pub fn check(args: &CheckArgs) -> Exit {
    let play = match prepare(&args.play.inputs(&args.rollout)) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    println!(
        "ok: {} is valid for {} host{} in {} batch{}; nothing was contacted",
        play.playbook.path().display(),
        play.hosts.len(),
        if play.hosts.len() == 1 { "" } else { "s" },
        play.plan.batches.len(),
        if play.plan.batches.len() == 1 {
            ""
        } else {
            "es"
        },
    );
    Exit::Success
}

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
        if errors.0.len() == 1 { "" } else { "s" }
    );
    Exit::InvalidInput
}
