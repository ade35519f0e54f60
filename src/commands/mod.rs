//! One function per command. Each turns its arguments into the library's inputs, runs it,
//! prints the outcome and returns the exit code; nothing else decides exit codes.

use fleetup::diagnostic::{Diagnostic, Diagnostics};
use fleetup::exit::Exit;
use fleetup::play::{self, Play};
use fleetup::ui;

use crate::cli::{CheckArgs, ExecArgs, OutputFormat, PlanArgs, RunArgs};

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

pub fn run(args: &RunArgs) -> Exit {
    // Validate first, so that the operator learns about input mistakes today.
    if let Err(exit) = prepare(&args.play.inputs(&args.rollout)) {
        return exit;
    }
    not_yet("run")
}

pub fn exec(args: &ExecArgs) -> Exit {
    let _ = args;
    not_yet("exec")
}

fn not_yet(command: &str) -> Exit {
    eprintln!(
        "error: `fleetup {command}` is not available yet: the rollout engine is still being built.\n\
         `fleetup plan` shows what a run would do; nothing was contacted."
    );
    Exit::InvalidInput
}

/// Prepares the play, printing warnings, or the input errors and the exit code for them.
fn prepare(inputs: &play::PlayInputs) -> Result<Play, Exit> {
    match play::prepare(inputs) {
        Ok(play) => {
            print_warnings(&play.warnings);
            Ok(play)
        }
        Err(errors) => Err(invalid_input(&errors)),
    }
}

fn print_warnings(warnings: &[Diagnostic]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn invalid_input(errors: &Diagnostics) -> Exit {
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
