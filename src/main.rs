//! The `fleetup` command: parses the command line and dispatches to one function per
//! command; each returns the exit code, or the error that stopped it, printed here once.

#![warn(clippy::too_many_lines)]

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use fleetup::exit::Exit;

// Measured at 200 hosts (tests/bench/cpu.sh --perf): glibc's malloc was a third of the
// controller's CPU (malloc_consolidate, unlink_chunk: the hosts' many short-lived values
// freed across the runtime's threads). jemalloc: 7.1 -> 5.1 s, peak RSS 183 -> 193 MB;
// mimalloc saved less (6.0 s) and cost more memory (223 MB).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc keeps freed pages for 10 s by default, and the hosts' values churn: `fleetup
// status` of 1000 hosts (--forks 200), three interleaved pairs, peak RSS 84/87/83 ->
// 74/77/76 MB with pages returned after 1 s, CPU the same (also on the 100-host upgrade).
// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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
