//! `fleetup run` and `fleetup exec`: the edge where the engine meets the terminal, the
//! signals and the disk.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use fleetup::connect::Transport;
use fleetup::engine::{self, Control, Emitter, Job, JobOptions, PreflightResult, Reconnect};
use fleetup::events::{Event, GateVerdict, HaltReason, Outcome, Resumed, Stamped, Verdict};
use fleetup::exit::Exit;
use fleetup::journal::{read, Claim, EventLog, RunDir, RunRecord};
use fleetup::plan::{Batch, Plan};
use fleetup::play::{secret_values, HostInPlay, Play, PlayInputs, RolloutOverrides};
use fleetup::playbook::{Playbook, Step, DEFAULT_STEP_TIMEOUT};
use fleetup::schedule::Schedule;
use fleetup::secret::Redactor;
use fleetup::ssh::{HostKeyChecking as KeyChecking, SshOptions};
use fleetup::template::Templates;
use fleetup::ui::text::plural;
use fleetup::ui::{self, ViewFormat};

use super::staged;
use crate::cli::{
    ConnectionArgs, ExecArgs, HostKeyChecking, InventoryArgs, JournalArgs, OutputFormat, RunArgs,
};

pub fn run(args: &RunArgs) -> Exit {
    let state_dir = journal_dir(&args.journal);
    let clock = match super::clock() {
        Ok(clock) => clock,
        Err(exit) => return exit,
    };
    let started = match &args.resume {
        None => start_new(args, &state_dir),
        Some(id) => start_resumed(args, &state_dir, id),
    };
    let Started {
        mut play,
        session,
        resumed,
        mut record,
        gate,
        _claim,
    } = match started {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let journal = match EventLog::open(&session.run_dir.events_path()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "error: cannot open the run's journal {}: {e}; nothing was changed.",
                session.run_dir.events_path().display()
            );
            return Exit::InvalidInput;
        }
    };
    let interactive = std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && !args.yes
        && args.output == OutputFormat::Text;
    let runs = staged::past_runs(&play, &state_dir);
    let this_run = resumed.is_some().then_some(session.run_dir.id.as_str());
    let per_host = read::host_estimate(&runs, &play.playbook.name, this_run);
    let ask_before_waiting = |question: &str| {
        print!(
            "{}",
            ui::plan::text(&play, false, &staged::outlook(&play, &runs, &clock))
        );
        confirm(&format!("\n{question}"))
    };
    let before = match staged::before_start(
        &session,
        &play,
        &mut record,
        gate.as_ref(),
        &runs,
        &clock,
        per_host,
        &journal,
        interactive.then_some(&ask_before_waiting as &dyn Fn(&str) -> bool),
        args,
    ) {
        Ok(before) => before,
        Err(exit) => return exit,
    };
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
        return Exit::Success;
    }
    // Every host's read-only pre-flight first: an unreachable or unhealthy host is known
    // before the canary starts, not half-way through production.
    if play.playbook.preflight_len > 0 {
        if let Err(exit) = preflight_gate(args, &session, &mut play) {
            return exit;
        }
    }
    if let Some(mut record) = record {
        // --exclude-unhealthy planned again: a resume must follow this plan.
        if record.plan != play.plan.batches {
            record.plan = play.plan.batches.clone();
            if let Err(exit) = write_record(&session.run_dir, &record, &play) {
                return exit;
            }
        }
    }
    if interactive && !before.confirmed {
        let outlook = staged::outlook(&play, &runs, &clock);
        print!("{}", ui::plan::text(&play, false, &outlook));
        // A resume's batches that finished earlier are empty: they are not counted.
        let batches = play
            .plan
            .batches
            .iter()
            .filter(|b| !b.hosts.is_empty())
            .count();
        if !confirm(&format!(
            "\n{} {} host{} in {batches} batch{}? [y/N] ",
            if resumed.is_some() {
                "Resume with"
            } else {
                "Upgrade"
            },
            play.plan.host_count(),
            plural(play.plan.host_count()),
            if batches == 1 { "" } else { "es" },
        )) {
            eprintln!("not started; no host was changed.");
            return Exit::Interrupted;
        }
    }
    let options = JobOptions {
        halt_immediately: args.halt_immediately,
        break_lock: args.break_lock,
        announce: resumed.into_iter().chain(before.announce).collect(),
        clock,
        host_estimate: per_host,
        prompt: staged::prompts(&play).then(staged::terminal_prompt),
        audit_note: before.audit_note,
        ..session.options.clone()
    };
    let exit = session.execute(
        &Job::from_play(&play),
        &options,
        args.output,
        Some(&journal),
    );
    if let Some(e) = journal.error() {
        eprintln!(
            "warning: {e}: the journal {} may miss the run's last events",
            session.run_dir.events_path().display()
        );
    }
    exit
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
    _claim: Claim,
}

fn start_new(args: &RunArgs, state_dir: &Path) -> Result<Started, Exit> {
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
    let claim = claim(&run_dir)?;
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
    let session = Session::start(&args.connection, run_dir)?;
    Ok(Started {
        play,
        session,
        resumed: None,
        record: Some(record),
        gate: None,
        _claim: claim,
    })
}

fn start_resumed(args: &RunArgs, state_dir: &Path, id: &str) -> Result<Started, Exit> {
    let refuse = |message: String| {
        eprintln!("error: {message}; nothing was contacted.");
        Exit::InvalidInput
    };
    let run_dir = RunDir::find(state_dir, id).map_err(refuse)?;
    let claim = claim(&run_dir)?;
    let record = RunRecord::read(&run_dir.path).map_err(refuse)?;
    if let Some(gate) = record
        .gate
        .as_ref()
        .filter(|g| g.verdict == Verdict::Refused)
    {
        eprintln!(
            "error: run {} was refused by the promotion gate ({}) and never started: it cannot be resumed. Start a new run once the gate allows it; nothing was contacted.",
            run_dir.id, gate.detail
        );
        return Err(Exit::GateRefused);
    }
    // The journal's inputs, with -e given now on top (secrets are not in the journal).
    let mut known = record.extra_vars.clone();
    known.retain(|k, _| !record.redacted.contains(k));
    let mut extra_vars = vec![serde_json::Value::Object(known).to_string()];
    extra_vars.extend(args.selection.extra_vars.iter().cloned());
    let inputs = PlayInputs {
        inventories: record.inventories.clone(),
        playbook: record.playbook.clone(),
        playbook_text: None,
        builtin_files: &[],
        extra_vars,
        limit: record.limit.clone(),
        overrides: RolloutOverrides {
            forks: Some(record.rollout.forks),
            max_fail_percentage: Some(record.rollout.max_fail_percentage),
            ..Default::default()
        },
        // The windows given at the start, unless new ones are given now.
        windows: if args.staging.windows.is_empty() {
            record.windows.clone()
        } else {
            args.staging.windows.clone()
        },
        ..Default::default()
    };
    let mut play = super::prepare(&inputs)?;
    refuse_prompt_without_terminal(&play)?;
    // The journal's extra vars left the secrets out: only this -e can have given them.
    let missing: Vec<&str> = record
        .redacted
        .iter()
        .filter(|name| !play.extra_vars.contains_key(name.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "run {} was given secret variables that the journal does not keep: pass them again with -e ({})",
            run_dir.id,
            missing.join(", ")
        )));
    }
    play.set_run_id(&run_dir.id);
    let changes = record.changes(&play);
    if !changes.is_empty() {
        if !args.force {
            return Err(refuse(format!(
                "run {} cannot resume: since it started, {}. Its plan was made for what it read then: start a new run, or pass --force to resume with the files as they are now",
                run_dir.id,
                changes.join("; ")
            )));
        }
        eprintln!(
            "WARNING: --force: resuming run {} although {}",
            run_dir.id,
            changes.join("; ")
        );
    }
    let (events, unreadable) = read::read_events(&run_dir.events_path()).map_err(|e| {
        refuse(format!(
            "cannot read the journal {}: {e}",
            run_dir.events_path().display()
        ))
    })?;
    if unreadable > 0 {
        eprintln!(
            "warning: {unreadable} line{} of {} could not be read and {} ignored",
            plural(unreadable),
            run_dir.events_path().display(),
            if unreadable == 1 { "is" } else { "are" }
        );
    }
    let states = read::host_states(&events);
    let mut left = read::resumption(&record.plan, &states);
    // Hosts the inventory no longer selects (only with --force) cannot be run.
    for batch in &mut left.batches {
        batch.hosts.retain(|h| play.host(h).is_some());
    }
    let attempt = 1 + events
        .iter()
        .filter(|e| matches!(e.event, Event::RunStarted { .. }))
        .count();
    play.plan = Plan {
        batches: left.batches,
        seed: record.seed,
    };
    let resumed = Event::RunResumed(Resumed {
        run_id: run_dir.id.clone(),
        attempt,
        finished: left.finished,
        retry: left.retry,
        interrupted: left.interrupted,
        changes: if args.force { changes } else { Vec::new() },
    });
    let session = Session::start(&args.connection, run_dir.redacting(play.redactor.clone()))?;
    Ok(Started {
        play,
        session,
        resumed: Some(resumed),
        record: None,
        gate: record.gate,
        _claim: claim,
    })
}

/// A `prompt` pause needs someone to answer: refused before anything starts otherwise.
fn refuse_prompt_without_terminal(play: &Play) -> Result<(), Exit> {
    if staged::prompts(play) && !std::io::stdin().is_terminal() {
        eprintln!(
            "error: {}: a `prompt` pause waits for the operator, but the input is not a terminal; use a duration (e.g. pause_after_canary: 10m). Nothing was contacted.",
            play.playbook.path().display()
        );
        return Err(Exit::InvalidInput);
    }
    Ok(())
}

fn create_run_dir(state_dir: &Path) -> Result<RunDir, Exit> {
    RunDir::create(state_dir).map_err(|e| {
        eprintln!(
            "error: cannot create the run directory under {}: {e}; nothing was contacted.",
            state_dir.display()
        );
        Exit::InvalidInput
    })
}

/// Holds the run's directory for this process; refuses when another process runs it.
fn claim(run_dir: &RunDir) -> Result<Claim, Exit> {
    match run_dir.claim() {
        Ok(Some(claim)) => Ok(claim),
        Ok(None) => {
            eprintln!(
                "error: run {} is still running in another fleetup process; nothing was contacted.",
                run_dir.id
            );
            Err(Exit::InvalidInput)
        }
        Err(e) => {
            eprintln!(
                "error: cannot lock the run directory {}: {e}; nothing was contacted.",
                run_dir.path.display()
            );
            Err(Exit::InvalidInput)
        }
    }
}

pub(super) fn write_record(run_dir: &RunDir, record: &RunRecord, play: &Play) -> Result<(), Exit> {
    let written = record.write(&run_dir.path).and_then(|()| {
        // A secret written in the playbook's vars stays out of the journal's copy.
        fleetup::journal::write_atomically(
            &run_dir.path.join("playbook.yml"),
            play.redactor.text(&play.playbook.text).as_bytes(),
        )
    });
    written.map_err(|e| {
        eprintln!(
            "error: cannot write the run's inputs in {}: {e}; nothing was contacted.",
            run_dir.path.display()
        );
        Exit::InvalidInput
    })
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

/// The fleet-wide pre-flight: the table, and the run refused (or the blocked hosts left
/// out with --exclude-unhealthy).
fn preflight_gate(args: &RunArgs, session: &Session, play: &mut Play) -> Result<(), Exit> {
    let results = session.preflight(&Job::from_play(play));
    let shown = ui::preflight::table(&results, &columns(play));
    session.record("preflight.txt", &shown);
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
    if blocked.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = blocked.iter().map(|r| r.host.clone()).collect();
    let exit = fleetup::engine::policy::exit_code(blocked.iter().map(|r| r.outcome), false, false);
    if !args.exclude_unhealthy {
        eprintln!(
            "error: the run does not start: {} host{} failed the pre-flight or were unreachable ({}); \
             fix them, or pass --exclude-unhealthy to leave them out. No host was changed.",
            names.len(),
            plural(names.len()),
            names.join(", ")
        );
        return Err(exit);
    }
    eprintln!(
        "WARNING: --exclude-unhealthy: {} host{} LEFT OUT of this run: {}",
        names.len(),
        plural(names.len()),
        names.join(", ")
    );
    session.record(
        "excluded.txt",
        &format!("left out by --exclude-unhealthy:\n{shown}"),
    );
    if args.resume.is_some() {
        // A resumed run keeps its journal's plan: the hosts only leave their batches.
        for batch in &mut play.plan.batches {
            batch.hosts.retain(|h| !names.contains(h));
        }
    } else {
        play.exclude(&names);
    }
    if play.plan.host_count() == 0 {
        eprintln!("error: no host is left to upgrade; nothing was changed.");
        return Err(exit);
    }
    Ok(())
}

/// `fleetup check` beyond validation: the pre-flight on every host, read-only.
pub fn check_hosts(play: &Play, connection: &ConnectionArgs, state_dir: &Path) -> Exit {
    if play.playbook.preflight_len == 0 {
        return Exit::Success;
    }
    let session = match Session::in_new_dir(connection, state_dir, play.redactor.clone()) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let results = session.preflight(&Job::from_play(play));
    print!("{}", ui::preflight::table(&results, &columns(play)));
    fleetup::engine::policy::exit_code(results.iter().map(|r| r.outcome), false, false)
}

/// `fleetup status`: the report of a read-only playbook on every host, and how many hosts
/// show each value of its first column (the version).
pub fn status(play: &Play, connection: &ConnectionArgs, state_dir: &Path) -> Exit {
    let session = match Session::in_new_dir(connection, state_dir, play.redactor.clone()) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let results = session.preflight(&Job::from_play(play));
    let columns = columns(play);
    print!("{}", ui::preflight::table(&results, &columns));
    // How many hosts run each version says most about a fleet; else the first column.
    let counted = columns.iter().find(|c| *c == "version").or(columns.first());
    if let Some(column) = counted {
        println!("\n{}", ui::preflight::counts(&results, column));
    }
    fleetup::engine::policy::exit_code(results.iter().map(|r| r.outcome), false, false)
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

pub fn exec(args: &ExecArgs) -> Exit {
    if args.inventory.inventories.is_empty() {
        eprintln!("error: no inventory given: pass -i INVENTORY.yml; nothing was contacted.");
        return Exit::InvalidInput;
    }
    let inventory = match fleetup::inventory::load(&args.inventory.inventories) {
        Ok(inv) => inv,
        Err(errors) => return super::invalid_input(&errors),
    };
    super::print_warnings(&inventory.warnings);
    let pattern = match fleetup::inventory::Pattern::parse(&args.pattern) {
        Ok(p) => p,
        Err(m) => {
            eprintln!("error: {m}");
            return Exit::InvalidInput;
        }
    };
    let selection = inventory.select(&pattern);
    if selection.hosts.is_empty() {
        eprintln!(
            "error: `{}` matches no host of the inventory; nothing was contacted.",
            args.pattern
        );
        return Exit::InvalidInput;
    }
    let hosts: Vec<HostInPlay> = selection
        .hosts
        .iter()
        .map(|name| HostInPlay {
            name: name.clone(),
            vars: inventory.host_vars(name),
        })
        .collect();
    // The command is the operator's own text: it is not a template, so `{{` in it (a
    // docker --format, say) reaches the host unchanged.
    let command = shell_words::join(&args.command);
    let step = Step {
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
        vars: Default::default(),
        field: "command".into(),
    };
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
    match Session::in_new_dir(&args.connection, &state_dir, redactor) {
        Ok(session) => session.execute(&spec, &session.options, args.output, None),
        Err(exit) => exit,
    }
}

/// What every command that contacts hosts needs: the transport, a run directory for the
/// hosts' logs, an async runtime, and the operator's way to stop it.
pub(super) struct Session {
    transport: Transport,
    pub(super) run_dir: RunDir,
    pub(super) runtime: tokio::runtime::Runtime,
    options: JobOptions,
    control: Control,
    /// Ends fleetup on Ctrl-C while it waits before the run (see `exit_on_signal`).
    guard: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The open-file limit, raised at start, and the most hosts at once it allows.
    open_files: u64,
    max_forks: usize,
    /// Whether forks was clamped and said so already (the pre-flight and the run both
    /// ask).
    clamped: std::sync::atomic::AtomicBool,
}

impl Session {
    fn start(connection: &ConnectionArgs, run_dir: RunDir) -> Result<Session, Exit> {
        if connection.host_key_checking == HostKeyChecking::Off {
            eprintln!("warning: host key checking is switched off: host keys are NOT verified, so anyone between you and your hosts can impersonate them");
        }
        let transport = Transport::new(ssh_options(connection)).map_err(|e| {
            eprintln!("error: {e}; nothing was contacted.");
            Exit::InvalidInput
        })?;
        let open_files = fleetup::open_files::raise_open_files();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                eprintln!("error: cannot start the async runtime: {e}");
                Exit::InvalidInput
            })?;
        let options = JobOptions {
            connect_timeout: Duration::from_secs(connection.connect_timeout),
            reconnect: Reconnect {
                attempts: connection.reconnect_attempts,
                delay: Duration::from_secs_f64(connection.reconnect_delay),
            },
            ..Default::default()
        };
        Ok(Session {
            transport,
            run_dir,
            runtime,
            options,
            control: Control::default(),
            guard: std::sync::Mutex::new(None),
            open_files,
            max_forks: fleetup::open_files::max_forks(open_files),
            clamped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `spec` with at most as many hosts at once as the open-file limit allows: a run
    /// that would run out of descriptors half-way through a batch is slowed, not broken.
    fn within_limits<'a>(&self, spec: &Job<'a>) -> Job<'a> {
        let mut spec = *spec;
        if spec.forks > self.max_forks {
            if !self
                .clamped
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                eprintln!(
                    "warning: forks {} needs more open files than the limit of {} allows: running {} hosts at once (raise the hard limit, `ulimit -Hn`, to run more)",
                    spec.forks, self.open_files, self.max_forks
                );
            }
            spec.forks = self.max_forks;
        }
        spec
    }

    /// From now until the engine starts (a wait for the window, the pre-flight, the
    /// confirmation), Ctrl-C or SIGTERM ends fleetup with exit 99: no host has changed
    /// yet. Once a handler is installed the signals' default action is gone, so one must
    /// listen all along, not only during the wait.
    pub(super) fn exit_on_signal(&self) {
        let guard = self.runtime.spawn(async {
            let Some(mut stop) = StopSignals::new() else {
                return;
            };
            stop.next().await;
            eprintln!("\ninterrupted before the run started: no host was changed.");
            std::process::exit(Exit::Interrupted.code().into());
        });
        if let Ok(mut slot) = self.guard.lock() {
            *slot = Some(guard.abort_handle());
        }
    }

    /// A session for commands that only keep the hosts' logs (check, status, exec).
    fn in_new_dir(
        connection: &ConnectionArgs,
        state_dir: &Path,
        redactor: Arc<Redactor>,
    ) -> Result<Session, Exit> {
        Session::start(connection, create_run_dir(state_dir)?.redacting(redactor))
    }

    pub(super) fn preflight(&self, spec: &Job<'_>) -> Vec<PreflightResult> {
        self.runtime.block_on(engine::preflight(
            &self.within_limits(spec),
            &self.transport,
            &self.run_dir,
            &self.options,
            &self.control,
        ))
    }

    /// Keeps a note in the run directory (what was decided before the run, and why).
    fn record(&self, name: &str, text: &str) {
        if let Err(e) = std::fs::write(self.run_dir.path.join(name), text) {
            eprintln!(
                "warning: cannot record {name} in {}: {e}",
                self.run_dir.path.display()
            );
        }
    }

    /// Runs the engine with signals handled and events shown (and journaled, for a run),
    /// and returns the exit code.
    fn execute(
        &self,
        spec: &Job<'_>,
        options: &JobOptions,
        output: OutputFormat,
        journal: Option<&EventLog>,
    ) -> Exit {
        let format = match output {
            OutputFormat::Json => ViewFormat::Json,
            OutputFormat::Text if spec.capture_output => ViewFormat::Exec,
            OutputFormat::Text => ViewFormat::Text,
        };
        let mut view = ui::view(format, ui::stdout_is_terminal());
        // The engine handles signals from here on (a first Ctrl-C lets hosts finish).
        if let Some(guard) = self.guard.lock().ok().and_then(|mut g| g.take()) {
            guard.abort();
        }
        self.runtime.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel::<Stamped>();
            let events = match journal {
                Some(log) => Emitter::with_journal(tx, log.clone()),
                None => Emitter::new(tx),
            };
            let signals = tokio::spawn(handle_signals(self.control.clone(), events.clone()));
            // The view draws on its own thread: a slow terminal never slows the hosts down.
            let drawing = tokio::task::spawn_blocking(move || {
                while let Some(event) = rx.blocking_recv() {
                    view.event(&event);
                }
                view.finish();
            });
            let report = engine::execute(
                &self.within_limits(spec),
                &self.transport,
                &self.run_dir,
                options,
                &self.control,
                &events,
            )
            .await;
            signals.abort();
            let _ = signals.await;
            drop(events);
            let _ = drawing.await;
            report.exit
        })
    }
}

/// SIGINT (Ctrl-C) and SIGTERM: the operator's "stop", whichever comes.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Listens from now on (the signals' default action is gone for good).
    fn new() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(StopSignals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn next(&mut self) {
        tokio::select! { _ = self.int.recv() => {}, _ = self.term.recv() => {} }
    }
}

/// First SIGINT or SIGTERM: stop starting hosts; second: terminate the upgrade commands in
/// flight and roll back; third: terminate the rollbacks too.
async fn handle_signals(control: Control, events: Emitter) {
    let Some(mut stop) = StopSignals::new() else {
        return;
    };
    stop.next().await;
    control.stop.cancel();
    events.emit(Event::Stopping {
        reason: HaltReason::Interrupted,
    });
    stop.next().await;
    control.abort.cancel();
    events.emit(Event::Aborting);
    stop.next().await;
    control.abandon.cancel();
    events.emit(Event::Abandoning);
}

fn ssh_options(c: &ConnectionArgs) -> SshOptions {
    let mut options = SshOptions::default();
    if let Some(known) = &c.known_hosts {
        options.known_hosts = known.clone();
    }
    options.host_key_checking = match c.host_key_checking {
        HostKeyChecking::Strict => KeyChecking::Strict,
        HostKeyChecking::AcceptNew => KeyChecking::AcceptNew,
        HostKeyChecking::Off => KeyChecking::Off,
    };
    options.passphrase_env = c.passphrase_env.clone();
    if let Some(config) = &c.ssh_config {
        options.ssh_config = Some(config.clone());
    }
    options
}

fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
