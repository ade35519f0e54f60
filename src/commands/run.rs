//! `fleetup run` and `fleetup exec`, and the read-only `check` and `status` of every
//! host: the edge where the engine meets the terminal and the disk. What a resume runs
//! and what a staged rollout waits for are the library's (`resume`, `staging`); the gate
//! and the wait are `staged`'s; the engine, signals and views are `session`'s.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetup::engine::{Job, JobOptions, PreflightResult};
use fleetup::events::{Event, GateVerdict, Outcome};
use fleetup::exit::Exit;
use fleetup::journal::{read, Claim, EventLog, RunRecord};
use fleetup::plan::{Batch, Plan};
use fleetup::play::Play;
use fleetup::play::{secret_values, HostInPlay};
use fleetup::playbook::{Playbook, Step, DEFAULT_STEP_TIMEOUT};
use fleetup::resume::{self, Resume};
use fleetup::schedule::Schedule;
use fleetup::secret::Redactor;
use fleetup::staging;
use fleetup::template::Templates;
use fleetup::ui;
use fleetup::ui::text::plural;

use super::session::{confirm, create_run_dir, write_record, Session};
use super::staged::{self, Staging};
use super::CliError;
use crate::cli::{ConnectionArgs, ExecArgs, InventoryArgs, JournalArgs, OutputFormat, RunArgs};

pub fn run(args: &RunArgs) -> Result<Exit, CliError> {
    let state_dir = journal_dir(&args.journal);
    let clock = super::clock()?;
    let mut started = match &args.resume {
        None => start_new(args, &state_dir)?,
        Some(id) => start_resumed(args, &state_dir, id)?,
    };
    let path = started.session.run_dir.events_path();
    let journal = EventLog::open(&path).map_err(|source| CliError::Journal { path, source })?;
    // Whoever types the answer is on stdin: `run ... | tee run.log` from a terminal asks,
    // and cron or CI (no terminal on stdin) go ahead.
    let interactive =
        std::io::stdin().is_terminal() && !args.yes && args.output == OutputFormat::Text;
    let runs = staged::past_runs(&state_dir);
    let this_run = started
        .resumed
        .is_some()
        .then_some(started.session.run_dir.id.as_str());
    let per_host = read::host_estimate(&runs, &started.play.playbook.name, this_run);
    let before = Staging {
        session: &started.session,
        play: &started.play,
        runs: &runs,
        clock: &clock,
        per_host,
        journal: &journal,
        skip_gate: args.skip_gate,
        no_wait: args.no_wait,
    }
    .before_start(&mut started.record, started.gate.as_ref(), interactive)?;
    if !ready(args, &mut started)? {
        return Ok(Exit::Success);
    }
    let Started {
        play,
        session,
        resumed,
        preflight,
        ..
    } = &started;
    if interactive && !before.confirmed {
        print!("{}", staged::plan_text(play, &runs, &clock));
        confirm_start(play, resumed.is_some(), preflight)?;
    }
    let options = JobOptions {
        halt_immediately: args.halt_immediately,
        break_lock: args.break_lock,
        announce: resumed.iter().cloned().chain(before.announce).collect(),
        clock,
        host_estimate: per_host,
        prompt: staging::prompts(play).then(staged::terminal_prompt),
        audit_note: before.audit_note,
        ..session.options.clone()
    };
    let exit = session.execute(&Job::from_play(play), &options, args.output, Some(&journal));
    if let Some(e) = journal.error() {
        eprintln!(
            "warning: {e}: the journal {} may miss the run's last events",
            session.run_dir.events_path().display()
        );
    }
    // An operator who stopped the run wants fleetup gone, not reading hosts again.
    if exit != Exit::Interrupted {
        session.report_after(&Job::from_play(play));
    }
    Ok(exit)
}

/// Whether the run goes on: every host's pre-flight let it start (and the record follows
/// the plan `--exclude-unhealthy` made); not when a resume has nothing left to do.
fn ready(args: &RunArgs, started: &mut Started) -> Result<bool, CliError> {
    let Started {
        play,
        session,
        record,
        preflight,
        ..
    } = started;
    if play.plan.host_count() == 0 {
        // Stdout carries only events with --output json.
        let done = format!(
            "every host of run {} has finished; nothing is left to do.",
            session.run_dir.id
        );
        match args.output {
            OutputFormat::Json => eprintln!("{done}"),
            OutputFormat::Text => println!("{done}"),
        }
        return Ok(false);
    }
    // Every host's read-only pre-flight first: an unreachable or unhealthy host is known
    // before the canary starts, not half-way through production.
    if play.playbook.preflight_len > 0 {
        *preflight = preflight_gate(args, session, play)?;
    }
    if let Some(record) = record {
        // --exclude-unhealthy planned again: a resume must follow this plan.
        if record.plan != play.plan.batches {
            record.plan = play.plan.batches.clone();
            write_record(&session.run_dir, record, play)?;
        }
    }
    Ok(true)
}

/// Asks the operator to start, after the plan and the pre-flight were shown.
fn confirm_start(
    play: &Play,
    resumed: bool,
    preflight: &[PreflightResult],
) -> Result<(), CliError> {
    let at_target = ui::start::at_target(play, preflight);
    // A resume's batches that finished earlier are empty, and a batch of hosts at their
    // target does no work: neither is counted.
    let batches = play
        .plan
        .batches
        .iter()
        .filter(|b| {
            b.hosts
                .iter()
                .any(|h| !at_target.iter().any(|(t, _)| t == h))
        })
        .count();
    let asked = ui::start::question(resumed, play.plan.host_count(), batches, &at_target);
    if confirm(&asked) {
        Ok(())
    } else {
        Err(CliError::Declined)
    }
}

/// A run about to start: its play, its session (with its run directory, held by this
/// process), and for a resume, the event that says what it leaves alone.
struct Started {
    play: Play,
    session: Session,
    resumed: Option<Event>,
    /// A new run's record, written before its pre-flight.
    record: Option<RunRecord>,
    /// A resumed run's gate verdict, from its first attempt.
    gate: Option<GateVerdict>,
    /// The fleet-wide pre-flight's results, once it ran.
    preflight: Vec<PreflightResult>,
    _claim: Claim,
}

fn start_new(args: &RunArgs, state_dir: &Path) -> Result<Started, CliError> {
    let playbook = args.playbook.clone().unwrap_or_default();
    let inputs = args.selection.inputs(
        &args.journal.inventory,
        playbook,
        &args.rollout,
        &args.staging,
    );
    let mut play = super::prepare(&inputs)?;
    refuse_prompt_without_terminal(&play)?;
    let run_dir = create_run_dir(state_dir)?.redacting(play.redactor.clone());
    let claim = resume::claim(&run_dir)?;
    play.set_run_id(&run_dir.id);
    let mut record = RunRecord::new(
        &run_dir.id,
        &play,
        &inputs.inventories,
        inputs.limit.as_deref(),
        targets(&play),
    );
    record.windows = inputs.windows.clone();
    write_record(&run_dir, &record, &play)?;
    let mut session = Session::start(&args.connection, run_dir)?;
    session.html_report.clone_from(&args.html_report);
    session.notifiers = [&play.playbook.notifications[..], &args.notify[..]].concat();
    Ok(Started {
        play,
        session,
        resumed: None,
        record: Some(record),
        gate: None,
        preflight: Vec::new(),
        _claim: claim,
    })
}

/// A resume: the journal's run, held, with the play prepared again from its inputs.
fn start_resumed(args: &RunArgs, state_dir: &Path, id: &str) -> Result<Started, CliError> {
    let paused = resume::open(state_dir, id)?;
    let extra_vars = &args.selection.extra_vars;
    let mut inputs = resume::inputs(&paused.record, extra_vars, &args.staging.windows);
    // The journal keeps no password: the vault options are the ones given now.
    inputs.vault = args.journal.inventory.vault();
    let play = super::prepare(&inputs)?;
    refuse_prompt_without_terminal(&play)?;
    let Resume {
        run_dir,
        claim,
        play,
        resumed,
        gate,
        unreadable,
    } = resume::prepare(paused, play, args.force)?;
    if !resumed.changes.is_empty() {
        eprintln!(
            "WARNING: --force: resuming run {} although {}",
            run_dir.id,
            resumed.changes.join("; ")
        );
    }
    if unreadable > 0 {
        eprintln!(
            "warning: {unreadable} line{} of {} could not be read and {} ignored",
            plural(unreadable),
            run_dir.events_path().display(),
            if unreadable == 1 { "is" } else { "are" }
        );
    }
    let mut session = Session::start(&args.connection, run_dir)?;
    session.html_report.clone_from(&args.html_report);
    session.notifiers = [&play.playbook.notifications[..], &args.notify[..]].concat();
    Ok(Started {
        play,
        session,
        resumed: Some(Event::RunResumed(resumed)),
        record: None,
        gate,
        preflight: Vec::new(),
        _claim: claim,
    })
}

/// A `prompt` pause needs someone to answer: refused before anything starts otherwise.
fn refuse_prompt_without_terminal(play: &Play) -> Result<(), CliError> {
    if staging::prompts(play) && !std::io::stdin().is_terminal() {
        return Err(CliError::NoTerminal(play.playbook.path().to_path_buf()));
    }
    Ok(())
}

/// The fleet-wide pre-flight: the table, and the run refused (or the blocked hosts left
/// out with --exclude-unhealthy).
fn preflight_gate(
    args: &RunArgs,
    session: &Session,
    play: &mut Play,
) -> Result<Vec<PreflightResult>, CliError> {
    let results = session.preflight(&Job::from_play(play));
    let shown = ui::preflight::table(&results, &columns(play));
    session.record("preflight.txt", &shown);
    session.record_preflight(&results);
    let blocked: Vec<&PreflightResult> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Ok)
        .collect();
    if args.output == OutputFormat::Json {
        eprint!("{shown}");
    } else {
        println!(
            "pre-flight of {} host{}:\n{shown}",
            results.len(),
            plural(results.len())
        );
    }
    let hosts: Vec<String> = blocked.iter().map(|r| r.host.clone()).collect();
    let exit = fleetup::engine::policy::exit_code(blocked.iter().map(|r| r.outcome), false, false);
    if hosts.is_empty() {
        return Ok(results);
    }
    if !args.exclude_unhealthy {
        return Err(CliError::Unhealthy { hosts, exit });
    }
    eprintln!(
        "WARNING: --exclude-unhealthy: {} host{} LEFT OUT of this run: {}",
        hosts.len(),
        plural(hosts.len()),
        hosts.join(", ")
    );
    session.record(
        "excluded.txt",
        &format!("left out by --exclude-unhealthy:\n{shown}"),
    );
    if args.resume.is_some() {
        // A resumed run keeps its journal's plan: the hosts only leave their batches.
        for batch in &mut play.plan.batches {
            batch.hosts.retain(|h| !hosts.contains(h));
        }
    } else {
        play.exclude(&hosts);
    }
    if play.plan.host_count() == 0 {
        return Err(CliError::NoHostLeft { exit });
    }
    Ok(results)
}

/// `fleetup check` beyond validation: the pre-flight on every host, read-only.
pub fn check_hosts(
    play: &Play,
    connection: &ConnectionArgs,
    state_dir: &Path,
) -> Result<Exit, CliError> {
    if play.playbook.preflight_len == 0 {
        return Ok(Exit::Success);
    }
    let session = Session::in_new_dir(connection, state_dir, play.redactor.clone())?;
    let results = session.preflight_alone(&Job::from_play(play));
    print!("{}", ui::preflight::table(&results, &columns(play)));
    Ok(preflight_exit(&results))
}

/// `fleetup status`: the report of a read-only playbook on every host, and how many hosts
/// show each value of its first column (the version).
pub fn status(
    play: &Play,
    connection: &ConnectionArgs,
    state_dir: &Path,
) -> Result<Exit, CliError> {
    let session = Session::in_new_dir(connection, state_dir, play.redactor.clone())?;
    let results = session.preflight_alone(&Job::from_play(play));
    let columns = columns(play);
    print!("{}", ui::preflight::table(&results, &columns));
    // How many hosts run each version says most about a fleet; else the first column.
    let counted = columns.iter().find(|c| *c == "version").or(columns.first());
    if let Some(column) = counted {
        println!("\n{}", ui::preflight::counts(&results, column));
    }
    Ok(preflight_exit(&results))
}

fn preflight_exit(results: &[PreflightResult]) -> Exit {
    fleetup::engine::policy::exit_code(results.iter().map(|r| r.outcome), false, false)
}

/// The versions the hosts go to (the playbook's `audit.to`, rendered for each host).
fn targets(play: &Play) -> Vec<String> {
    let Some(to) = &play.playbook.audit.to else {
        return Vec::new();
    };
    let templates = Templates::new();
    let mut found: Vec<String> = play
        .hosts
        .iter()
        .filter_map(|h| templates.render(to, &h.vars).ok())
        .collect();
    found.sort();
    found.dedup();
    found
}

fn columns(play: &Play) -> Vec<String> {
    play.playbook
        .report
        .iter()
        .map(|(c, _)| c.clone())
        .collect()
}

/// `--state-dir`, else `.fleetup/` beside the first inventory.
pub fn journal_dir(journal: &JournalArgs) -> PathBuf {
    journal
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&journal.inventory))
}

/// `.fleetup/` beside the first inventory (in the current directory without one).
pub fn default_state_dir(inventory: &InventoryArgs) -> PathBuf {
    let first = inventory.inventories.first().cloned().unwrap_or_default();
    let dir = if first.is_dir() {
        first
    } else {
        first.parent().map(PathBuf::from).unwrap_or_default()
    };
    dir.join(".fleetup")
}

pub fn exec(args: &ExecArgs) -> Result<Exit, CliError> {
    let inventory = super::inventory::load(&args.inventory, None)?;
    let pattern = fleetup::inventory::Pattern::parse(&args.pattern).map_err(CliError::Pattern)?;
    let selection = inventory.select(&pattern);
    if selection.hosts.is_empty() {
        return Err(CliError::NoMatch(args.pattern.clone()));
    }
    // The group graph is worked out once for all the hosts, not once per host.
    let precedence = inventory.precedence();
    let hosts: Vec<HostInPlay> = selection
        .hosts
        .iter()
        .map(|name| HostInPlay {
            name: name.clone(),
            vars: precedence.host_vars(name).into(),
        })
        .collect();
    let step = command_step(args);
    let plan = Plan {
        batches: vec![Batch {
            hosts: selection.hosts.clone(),
            canary: false,
            staged: false,
        }],
        seed: None,
    };
    let no_windows = Schedule::default();
    let playbook = Playbook::ad_hoc("ad-hoc command", pattern, step);
    let spec = Job {
        playbook: &playbook,
        pattern: &args.pattern,
        limit: None,
        hosts: &hosts,
        plan: &plan,
        schedule: &no_windows,
        forks: args.forks as usize,
        // Ad-hoc commands never halt: every host gets the command.
        max_fail_percentage: 100.0,
        capture_output: true,
    };
    // The inventory's secret-looking variables (db_password...) are hidden from the
    // output, as in a run.
    let redactor = Arc::new(Redactor::new(secret_values(&Templates::new(), &[], &hosts)));
    let state_dir = default_state_dir(&args.inventory);
    let session = Session::in_new_dir(&args.connection, &state_dir, redactor)?;
    Ok(session.execute(&spec, &session.options, args.output, None))
}

/// `fleetup exec`'s command as the one step of every host.
fn command_step(args: &ExecArgs) -> Step {
    // The words after `--` are joined with spaces into one command line for the login
    // shell, as `ssh host ARGS...` joins them: `-- 'docker ps | grep sl'` is a pipeline.
    // It is the operator's own text, not a template, so `{{` in it (a docker --format,
    // say) reaches the host unchanged.
    let command = args.command.join(" ");
    Step {
        name: "command".into(),
        shell: format!("{{% raw %}}{command}{{% endraw %}}"),
        when: None,
        register: None,
        timeout: args
            .timeout
            .map_or(DEFAULT_STEP_TIMEOUT, Duration::from_secs),
        retries: 0,
        delay: Duration::ZERO,
        until: None,
        changed_when: None,
        failed_when: None,
        become_: args.become_,
        become_user: args.become_user.clone(),
        point_of_no_return: false,
        no_log: false,
        vars: Default::default(),
        keeps_lines: true,
        field: "command".into(),
    }
}
