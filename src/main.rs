//! The `fleetup` command: parses the command line and dispatches to one function per
//! command; each returns the exit code, or the error that stopped it, printed here once.

#![warn(clippy::too_many_lines)]

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use fleetup::exit::Exit;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, which fleetup reserves for failed hosts.
            let _ = e.print();
            return if e.use_stderr() {
                Exit::InvalidInput
            } else {
                Exit::Success
            }
            .into();
        }
    };
    let done = match cli.command {
        cli::Command::Plan(args) => commands::plan(&args),
        cli::Command::Check(args) => commands::check(&args),
        cli::Command::Run(args) => commands::run(&args),
        cli::Command::Status(args) => commands::status(&args),
        cli::Command::History(args) => commands::history(&args),
        cli::Command::Show(args) => commands::show(&args),
        cli::Command::Exec(args) => commands::exec(&args),
        cli::Command::Inventory(args) => commands::inventory(&args),
    };
    match done {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("{e}");
            e.exit().into()
        }
    }
}
