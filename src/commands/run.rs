//! `fleetup run` and `fleetup exec`: the edge where the engine meets the terminal, the
//! signals and the disk.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use fleetup::events::{Event, EventSender, HaltReason, Outcome, Stamped};
use fleetup::exit::Exit;
use fleetup::journal::RunDir;
use fleetup::plan::{Batch, Plan};
use fleetup::play::Play;
use fleetup::playbook::{HostInPlay, Step, DEFAULT_STEP_TIMEOUT};
use fleetup::run::{self, Control, PreflightResult, Reconnect, RunOptions, RunSpec};
use fleetup::ssh::{HostKeyChecking as KeyChecking, SshOptions};
use fleetup::transport::Transport;
use fleetup::ui::text::plural;
use fleetup::ui::{self, ViewFormat};

use crate::cli::{ConnectionArgs, ExecArgs, HostKeyChecking, InventoryArgs, OutputFormat, RunArgs};

pub fn run(args: &RunArgs) -> Exit {
    let mut play = match super::prepare(&args.play.inputs(&args.rollout)) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.play.inventory));
    let session = match Session::start(&args.connection, &state_dir) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    // Every host's read-only pre-flight first: an unreachable or unhealthy host is known
    // before the canary starts, not half-way through production.
    if play.playbook.preflight_len > 0 {
        let results = session.preflight(&RunSpec::from_play(&play));
        let shown = ui::preflight::table(&results, &columns(&play));
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
        if !blocked.is_empty() {
            let names: Vec<String> = blocked.iter().map(|r| r.host.clone()).collect();
            if !args.exclude_unhealthy {
                eprintln!(
                    "error: the run does not start: {} host{} failed the pre-flight or were unreachable ({}); \
                     fix them, or pass --exclude-unhealthy to leave them out. No host was changed.",
                    names.len(),
                    plural(names.len()),
                    names.join(", ")
                );
                return fleetup::run::policy::exit_code(blocked.iter().map(|r| r.outcome), false);
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
            play.exclude(&names);
            if play.hosts.is_empty() {
                eprintln!("error: no host is left to upgrade; nothing was changed.");
                return fleetup::run::policy::exit_code(blocked.iter().map(|r| r.outcome), false);
            }
        }
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive && !args.yes && args.output == OutputFormat::Text {
        print!("{}", ui::plan::text(&play, false));
        if !confirm(&format!(
            "\nUpgrade {} host{} in {} batch{}? [y/N] ",
            play.hosts.len(),
            plural(play.hosts.len()),
            play.plan.batches.len(),
            if play.plan.batches.len() == 1 {
                ""
            } else {
                "es"
            },
        )) {
            eprintln!("not started; no host was changed.");
            return Exit::Interrupted;
        }
    }
    session.execute(
        &RunSpec::from_play(&play),
        args.halt_immediately,
        args.output,
    )
}

/// `fleetup check` beyond validation: the pre-flight on every host, read-only.
pub fn check_hosts(play: &Play, connection: &ConnectionArgs, state_dir: &Path) -> Exit {
    if play.playbook.preflight_len == 0 {
        return Exit::Success;
    }
    let session = match Session::start(connection, state_dir) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let results = session.preflight(&RunSpec::from_play(play));
    print!("{}", ui::preflight::table(&results, &columns(play)));
    fleetup::run::policy::exit_code(results.iter().map(|r| r.outcome), false)
}

/// `fleetup status`: the report of a read-only playbook on every host, and how many hosts
/// show each value of its first column (the version).
pub fn status(play: &Play, connection: &ConnectionArgs, state_dir: &Path) -> Exit {
    let session = match Session::start(connection, state_dir) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let results = session.preflight(&RunSpec::from_play(play));
    let columns = columns(play);
    print!("{}", ui::preflight::table(&results, &columns));
    if let Some(first) = columns.first() {
        println!("\n{}", ui::preflight::counts(&results, first));
    }
    fleetup::run::policy::exit_code(results.iter().map(|r| r.outcome), false)
}

fn columns(play: &Play) -> Vec<String> {
    play.playbook
        .report
        .iter()
        .map(|(c, _)| c.clone())
        .collect()
}

/// `.fleetup/` beside the first inventory.
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
        field: "command".into(),
    };
    let plan = Plan {
        batches: vec![Batch {
            hosts: selection.hosts.clone(),
            canary: false,
        }],
        seed: None,
    };
    let spec = RunSpec {
        name: "ad-hoc command",
        playbook: "-".into(),
        pattern: &args.pattern,
        steps: std::slice::from_ref(&step),
        rollback: &[],
        point_of_no_return: None,
        failure_note: None,
        hosts: &hosts,
        plan: &plan,
        forks: args.forks as usize,
        // Ad-hoc commands never halt: every host gets the command.
        max_fail_percentage: 100.0,
        capture_output: true,
        preflight_len: 0,
        report: &[],
    };
    match Session::start(&args.connection, &default_state_dir(&args.inventory)) {
        Ok(session) => session.execute(&spec, false, args.output),
        Err(exit) => exit,
    }
}

/// What every command that contacts hosts needs: the transport, a run directory for the
/// hosts' logs, an async runtime, and the operator's way to stop it.
struct Session {
    transport: Transport,
    run_dir: RunDir,
    runtime: tokio::runtime::Runtime,
    options: RunOptions,
    control: Control,
}

impl Session {
    fn start(connection: &ConnectionArgs, state_dir: &Path) -> Result<Session, Exit> {
        if connection.host_key_checking == HostKeyChecking::Off {
            eprintln!("warning: host key checking is switched off: host keys are NOT verified, so anyone between you and your hosts can impersonate them");
        }
        let transport = Transport::new(ssh_options(connection)).map_err(|e| {
            eprintln!("error: {e}; nothing was contacted.");
            Exit::InvalidInput
        })?;
        let run_dir = RunDir::create(state_dir).map_err(|e| {
            eprintln!(
                "error: cannot create the run directory under {}: {e}; nothing was contacted.",
                state_dir.display()
            );
            Exit::InvalidInput
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                eprintln!("error: cannot start the async runtime: {e}");
                Exit::InvalidInput
            })?;
        let options = RunOptions {
            halt_immediately: false,
            connect_timeout: Duration::from_secs(connection.connect_timeout),
            reconnect: Reconnect {
                attempts: connection.reconnect_attempts,
                delay: Duration::from_secs_f64(connection.reconnect_delay),
            },
        };
        Ok(Session {
            transport,
            run_dir,
            runtime,
            options,
            control: Control::default(),
        })
    }

    fn preflight(&self, spec: &RunSpec<'_>) -> Vec<PreflightResult> {
        self.runtime.block_on(run::preflight(
            spec,
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

    /// Runs the engine with signals handled and events shown, and returns the exit code.
    fn execute(&self, spec: &RunSpec<'_>, halt_immediately: bool, output: OutputFormat) -> Exit {
        let options = RunOptions {
            halt_immediately,
            ..self.options.clone()
        };
        let format = match output {
            OutputFormat::Json => ViewFormat::Json,
            OutputFormat::Text if spec.capture_output => ViewFormat::Exec,
            OutputFormat::Text => ViewFormat::Text,
        };
        let mut view = ui::view(format, ui::stdout_is_terminal());
        self.runtime.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel::<Stamped>();
            let signals = tokio::spawn(handle_signals(self.control.clone(), tx.clone()));
            // The view draws on its own thread: a slow terminal never slows the hosts down.
            let drawing = tokio::task::spawn_blocking(move || {
                while let Some(event) = rx.blocking_recv() {
                    view.event(&event);
                }
                view.finish();
            });
            let report = run::execute(
                spec,
                &self.transport,
                &self.run_dir,
                &options,
                &self.control,
                &tx,
            )
            .await;
            signals.abort();
            drop(tx);
            let _ = drawing.await;
            report.exit
        })
    }
}

/// First SIGINT or SIGTERM: stop starting hosts; second: terminate commands in flight.
async fn handle_signals(control: Control, events: EventSender) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    control.stop.cancel();
    let _ = events.send(Stamped::now(Event::Stopping {
        reason: HaltReason::Interrupted,
    }));
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    control.abort.cancel();
    let _ = events.send(Stamped::now(Event::Aborting));
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
