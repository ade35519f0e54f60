//! `fleetup run` and `fleetup exec`: the edge where the engine meets the terminal, the
//! signals and the disk.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use fleetup::events::{Event, EventSender, HaltReason, Stamped};
use fleetup::exit::Exit;
use fleetup::journal::RunDir;
use fleetup::plan::{Batch, Plan};
use fleetup::playbook::{HostInPlay, Step, DEFAULT_STEP_TIMEOUT};
use fleetup::run::{self, Control, Reconnect, RunOptions, RunSpec};
use fleetup::ssh::{HostKeyChecking as KeyChecking, SshOptions};
use fleetup::transport::Transport;
use fleetup::ui::{self, ViewFormat};

use crate::cli::{ConnectionArgs, ExecArgs, HostKeyChecking, OutputFormat, RunArgs};

pub fn run(args: &RunArgs) -> Exit {
    let play = match super::prepare(&args.play.inputs(&args.rollout)) {
        Ok(play) => play,
        Err(exit) => return exit,
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        let first = args
            .play
            .inventory
            .inventories
            .first()
            .cloned()
            .unwrap_or_default();
        let dir = if first.is_dir() {
            first
        } else {
            first.parent().map(PathBuf::from).unwrap_or_default()
        };
        dir.join(".fleetup")
    });
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive && !args.yes && args.output == OutputFormat::Text {
        print!("{}", ui::plan::text(&play, false));
        if !confirm(&format!(
            "\nUpgrade {} host{} in {} batch{}? [y/N] ",
            play.hosts.len(),
            if play.hosts.len() == 1 { "" } else { "s" },
            play.plan.batches.len(),
            if play.plan.batches.len() == 1 {
                ""
            } else {
                "es"
            },
        )) {
            eprintln!("not started; nothing was contacted.");
            return Exit::Interrupted;
        }
    }
    let spec = RunSpec::from_play(&play);
    execute(
        &spec,
        &args.connection,
        state_dir,
        args.halt_immediately,
        args.output,
    )
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
    };
    let state_dir = args
        .inventory
        .inventories
        .first()
        .and_then(|i| i.parent())
        .map(|d| d.join(".fleetup"))
        .unwrap_or_default();
    execute(&spec, &args.connection, state_dir, false, args.output)
}

/// Runs the engine with signals handled and events shown, and returns the exit code.
fn execute(
    spec: &RunSpec<'_>,
    connection: &ConnectionArgs,
    state_dir: PathBuf,
    halt_immediately: bool,
    output: OutputFormat,
) -> Exit {
    if connection.host_key_checking == HostKeyChecking::Off {
        eprintln!("warning: host key checking is switched off: host keys are NOT verified, so anyone between you and your hosts can impersonate them");
    }
    let transport = match Transport::new(ssh_options(connection)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}; nothing was contacted.");
            return Exit::InvalidInput;
        }
    };
    let run_dir = match RunDir::create(&state_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "error: cannot create the run directory under {}: {e}; nothing was contacted.",
                state_dir.display()
            );
            return Exit::InvalidInput;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::InvalidInput;
        }
    };
    let options = RunOptions {
        halt_immediately,
        connect_timeout: Duration::from_secs(connection.connect_timeout),
        reconnect: Reconnect {
            attempts: connection.reconnect_attempts,
            delay: Duration::from_secs_f64(connection.reconnect_delay),
        },
    };
    let format = match output {
        OutputFormat::Json => ViewFormat::Json,
        OutputFormat::Text if spec.capture_output => ViewFormat::Exec,
        OutputFormat::Text => ViewFormat::Text,
    };
    let mut view = ui::view(format, ui::stdout_is_terminal());
    runtime.block_on(async {
        let control = Control::default();
        let (tx, mut rx) = mpsc::unbounded_channel::<Stamped>();
        let signals = tokio::spawn(handle_signals(control.clone(), tx.clone()));
        // The view draws on its own thread: a slow terminal never slows the hosts down.
        let drawing = tokio::task::spawn_blocking(move || {
            while let Some(event) = rx.blocking_recv() {
                view.event(&event);
            }
            view.finish();
        });
        let report = run::execute(spec, &transport, &run_dir, &options, &control, &tx).await;
        signals.abort();
        drop(tx);
        let _ = drawing.await;
        report.exit
    })
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
