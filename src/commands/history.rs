//! `fleetup history` and `fleetup show`: what the journal says happened, read-only.

use fleetup::exit::Exit;

use super::error::CliError;
use fleetup::journal::read::{self, Summary};
use fleetup::journal::{RunDir, RunRecord};
use fleetup::state::RunState;
use fleetup::ui;
use fleetup::ui::history::Entry;

use super::run::journal_dir;
use crate::cli::{HistoryArgs, OutputFormat, ShowArgs};

pub fn history(args: &HistoryArgs) -> Result<Exit, CliError> {
    let state_dir = journal_dir(&args.journal);
    let runs = RunDir::list(&state_dir).map_err(|source| CliError::Runs {
        dir: state_dir.join("runs"),
        source,
    })?;
    let mut read_runs = Vec::new();
    for run in &runs {
        match summarize(run) {
            Ok(r) => read_runs.push(r),
            Err(e) => eprintln!("warning: run {} left out: {e}", run.id),
        }
    }
    let entries: Vec<Entry<'_>> = read_runs
        .iter()
        .map(|(record, summary)| Entry { record, summary })
        .collect();
    match args.output {
        OutputFormat::Json => {
            for e in &entries {
                println!("{}", e.json());
            }
        }
        OutputFormat::Text if entries.is_empty() => {
            println!("no run is recorded in {}", state_dir.display());
        }
        OutputFormat::Text => print!("{}", ui::history::table(&entries)),
    }
    Ok(Exit::Success)
}

/// A run's record and its events' state: one read of the journal, one fold.
fn read_run(run: &RunDir) -> Result<(RunRecord, RunState), String> {
    let record = RunRecord::read(&run.path)?;
    let (events, _) = read::read_events(&run.events_path())
        .map_err(|e| format!("cannot read {}: {e}", run.events_path().display()))?;
    Ok((record, RunState::of(&events)))
}

fn summary(run: &RunDir, record: &RunRecord, state: &RunState) -> Summary {
    let hosts = record.plan.iter().map(|b| b.hosts.len()).sum();
    Summary::of(state, hosts, run.is_running())
}

fn summarize(run: &RunDir) -> Result<(RunRecord, Summary), String> {
    let (record, state) = read_run(run)?;
    let summary = summary(run, &record, &state);
    Ok((record, summary))
}

pub fn show(args: &ShowArgs) -> Result<Exit, CliError> {
    let state_dir = journal_dir(&args.journal);
    let run = RunDir::find(&state_dir, &args.run).map_err(CliError::Run)?;
    if let Some(host) = &args.host {
        return show_host(&run, host);
    }
    if args.html {
        let page = fleetup::report::html(&fleetup::report::load(&run)?);
        match &args.html_file {
            Some(path) => fleetup::report::write(path, &page)?,
            None => print!("{page}"),
        }
        return Ok(Exit::Success);
    }
    let (record, state) = read_run(&run).map_err(CliError::Run)?;
    let summary = summary(&run, &record, &state);
    let entry = Entry {
        record: &record,
        summary: &summary,
    };
    println!("{}", ui::history::heading(&entry));
    print!("{}", ui::recap::render(&state));
    Ok(Exit::Success)
}

/// A host's log: every step's command and output, as the run wrote them.
fn show_host(run: &RunDir, host: &str) -> Result<Exit, CliError> {
    let path = run.host_log_path(host);
    let bytes = std::fs::read(&path).map_err(|source| CliError::NoHostLog {
        host: host.to_string(),
        run: run.id.clone(),
        path: path.clone(),
        source,
    })?;
    // The host's own bytes, made safe for a terminal.
    print!(
        "{}",
        ui::text::clean_block(&String::from_utf8_lossy(&bytes))
    );
    Ok(Exit::Success)
}
