//! What every command that contacts hosts shares: a session holds the transport, the
//! run's directory, the async runtime and the operator's way to stop, and runs the engine
//! with its events shown. `run` and `staged` both use it; neither uses the other.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use fleetup::connect::Transport;
use fleetup::engine::{self, Control, Emitter, Job, JobOptions, PreflightResult, Reconnect};
use fleetup::events::{Event, HaltReason, Stamped};
use fleetup::exit::Exit;
use fleetup::journal::{EventLog, RunDir, RunRecord};
use fleetup::notify::{Notifications, Notifier, Trigger};
use fleetup::play::Play;
use fleetup::report::LiveReport;
use fleetup::secret::Redactor;
use fleetup::ssh::{HostKeyChecking as KeyChecking, SshOptions};
use fleetup::state::Shape;
use fleetup::ui::notification::RunLabel;
use fleetup::ui::{self, ViewFormat};

use super::CliError;
use crate::cli::{ConnectionArgs, HostKeyChecking, OutputFormat};

pub(super) fn create_run_dir(state_dir: &Path) -> Result<RunDir, CliError> {
    RunDir::create(state_dir).map_err(|source| CliError::RunDir {
        dir: state_dir.to_path_buf(),
        source,
    })
}

/// Keeps the run's inputs (`run.json` and its playbook) in its directory, for a resume.
pub(super) fn write_record(
    run_dir: &RunDir,
    record: &RunRecord,
    play: &Play,
) -> Result<(), CliError> {
    let written = record.write(&run_dir.path).and_then(|()| {
        // A secret written in the playbook's vars stays out of the journal's copy.
        fleetup::journal::write_atomically(
            &run_dir.path.join("playbook.yml"),
            play.redactor.text(&play.playbook.text).as_bytes(),
        )
    });
    written.map_err(|source| CliError::Record {
        dir: run_dir.path.clone(),
        source,
    })
}

/// What every command that contacts hosts needs: the transport, a run directory for the
/// hosts' logs, an async runtime, and the operator's way to stop it.
pub(crate) struct Session {
    transport: Transport,
    pub(super) run_dir: RunDir,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) options: JobOptions,
    control: Control,
    /// Set when the engine takes Ctrl-C over from the listener of `exit_on_signal`.
    guard: std::sync::Mutex<Option<Arc<AtomicBool>>>,
    /// The open-file limit, raised at start, and the most hosts at once it allows.
    open_files: u64,
    max_forks: usize,
    /// Whether forks was clamped and said so already (the pre-flight and the run both
    /// ask).
    clamped: AtomicBool,
    /// `run --html-report`: the page kept as the run goes.
    pub(super) html_report: Option<std::path::PathBuf>,
    /// The playbook's `notifications:` and `--notify`.
    pub(super) notifiers: Vec<Notifier>,
}

impl Session {
    pub(super) fn start(connection: &ConnectionArgs, run_dir: RunDir) -> Result<Session, CliError> {
        if connection.host_key_checking == HostKeyChecking::Off {
            eprintln!("warning: host key checking is switched off: host keys are NOT verified, so anyone between you and your hosts can impersonate them");
        }
        let transport = Transport::new(ssh_options(connection))?;
        let open_files = fleetup::open_files::raise_open_files();
        // One thread for the engine and every SSH session: the engine already runs on
        // this thread, and with worker threads each message between it and a session
        // crossed threads (a futex wake-up each, ~9 % of the controller's CPU at forks 20).
        // The controller needs well under a core; the hosts' own work is elsewhere.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?;
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
            clamped: AtomicBool::new(false),
            html_report: None,
            notifiers: Vec::new(),
        })
    }

    /// `spec` with at most as many hosts at once as the open-file limit allows: a run
    /// that would run out of descriptors half-way through a batch is slowed, not broken.
    fn within_limits<'a>(&self, spec: &Job<'a>) -> Job<'a> {
        let mut spec = *spec;
        if spec.forks > self.max_forks {
            if !self.clamped.swap(true, Ordering::Relaxed) {
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
    ///
    /// It listens on a thread and runtime of its own: the session's runtime runs only
    /// inside `block_on`, and the questions asked before the run block outside it.
    pub(super) fn exit_on_signal(&self) {
        if self.guard.lock().is_ok_and(|g| g.is_some()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        // Listening before this returns: a signal right after must not be missed.
        let Some(mut stop) = runtime.block_on(async { StopSignals::new() }) else {
            return;
        };
        let taken_over = Arc::new(AtomicBool::new(false));
        let engine_has_it = taken_over.clone();
        let listening = std::thread::Builder::new()
            .name("signals before the run".into())
            .spawn(move || {
                runtime.block_on(stop.next());
                if !engine_has_it.load(Ordering::SeqCst) {
                    eprintln!("\ninterrupted before the run started: no host was changed.");
                    std::process::exit(Exit::Interrupted.code().into());
                }
            });
        if let (Ok(_), Ok(mut slot)) = (listening, self.guard.lock()) {
            *slot = Some(taken_over);
        }
    }

    /// A session for commands that only keep the hosts' logs (check, status, exec).
    pub(super) fn in_new_dir(
        connection: &ConnectionArgs,
        state_dir: &Path,
        redactor: Arc<Redactor>,
    ) -> Result<Session, CliError> {
        Session::start(connection, create_run_dir(state_dir)?.redacting(redactor))
    }

    pub(super) fn preflight(&self, spec: &Job<'_>) -> Vec<PreflightResult> {
        self.preflight_with(spec, &self.options)
    }

    /// The pre-flight, when no turn of its hosts follows it (a check, a report, a gate's
    /// look at the stage before).
    pub(super) fn preflight_alone(&self, spec: &Job<'_>) -> Vec<PreflightResult> {
        let options = JobOptions {
            preflight_alone: true,
            ..self.options.clone()
        };
        self.preflight_with(spec, &options)
    }

    fn preflight_with(&self, spec: &Job<'_>, options: &JobOptions) -> Vec<PreflightResult> {
        let results = self.runtime.block_on(engine::preflight(
            &self.within_limits(spec),
            &self.transport,
            &self.run_dir,
            options,
            &self.control,
        ));
        self.tell_host_keys();
        results
    }

    /// Keeps a note in the run directory (what was decided before the run, and why).
    pub(super) fn record(&self, name: &str, text: &str) {
        if let Err(e) = std::fs::write(self.run_dir.path.join(name), text) {
            eprintln!(
                "warning: cannot record {name} in {}: {e}",
                self.run_dir.path.display()
            );
        }
    }

    /// The pre-flight's rows for the HTML report, a resume's added to the earlier ones.
    pub(super) fn record_preflight(&self, results: &[PreflightResult]) {
        self.record_rows("preflight.json", results);
    }

    fn record_rows(&self, name: &str, results: &[PreflightResult]) {
        let earlier = std::fs::read(self.run_dir.path.join(name)).ok();
        self.record(
            name,
            &fleetup::report::preflight_json(results, earlier.as_deref()),
        );
    }

    /// `run --html-report`: once the run is over, its hosts' `report:` columns are read
    /// again by the read-only pre-flight (`after.json`), and the page shows them beside
    /// the ones read before.
    pub(super) fn report_after(&self, spec: &Job<'_>) {
        let Some(path) = &self.html_report else {
            return;
        };
        if spec.playbook.preflight_len == 0 || spec.playbook.report.is_empty() {
            return;
        }
        self.record_rows("after.json", &self.preflight_alone(spec));
        let written = fleetup::report::load(&self.run_dir)
            .and_then(|s| fleetup::report::write(path, &fleetup::report::html(&s)));
        if let Err(e) = written {
            eprintln!("warning: {e}");
        }
    }

    /// Runs the engine with signals handled and events shown (and journaled, for a run),
    /// and returns the exit code.
    pub(super) fn execute(
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
        let spec = &self.within_limits(spec);
        let eta = Shape::of_plan(
            spec.plan,
            spec.forks,
            &spec.playbook.rollout,
            options.host_estimate,
        );
        let mut view = ui::view(format, ui::stdout_is_terminal(), eta);
        if let Some(path) = &self.html_report {
            match LiveReport::new(&self.run_dir, path.clone()) {
                Ok(report) => view = Box::new(ui::Both(view, Box::new(report))),
                Err(e) => eprintln!("warning: no HTML report: {e}"),
            }
        }
        // The engine handles signals from here on (a first Ctrl-C lets hosts finish).
        if let Some(taken_over) = self.guard.lock().ok().and_then(|mut g| g.take()) {
            taken_over.store(true, Ordering::SeqCst);
        }
        self.runtime.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel::<Stamped>();
            let events = match journal {
                Some(log) => Emitter::with_journal(tx, log.clone()),
                None => Emitter::new(tx),
            };
            let signals = tokio::spawn(handle_signals(self.control.clone(), events.clone()));
            // The view draws on its own thread: a slow terminal never slows the hosts down;
            // notifications are handed to threads of their own from there.
            let notes =
                Notifications::start(self.notifiers.clone()).map(|n| (n, RunLabel::default()));
            let journaled = journal.cloned();
            let drawing = tokio::task::spawn_blocking(move || {
                let mut notes = notes;
                while let Some(event) = rx.blocking_recv() {
                    for warning in notify(&mut notes, &event) {
                        if let Some(log) = &journaled {
                            // On disk before fleetup ends, as the run's last event is.
                            futures::executor::block_on(log.append_durable(&warning));
                        }
                        view.event(&warning);
                    }
                    view.event(&event);
                }
                view.finish();
            });
            let report = engine::execute(
                spec,
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
            self.tell_host_keys();
            report.exit
        })
    }

    /// Unknown and learned host keys, once for the fleet (issue 21).
    pub(super) fn tell_host_keys(&self) {
        for line in ui::host_keys::summary(&self.transport.ssh().take_host_keys()) {
            eprintln!("{line}");
        }
    }
}

/// How long the end of a run waits for its last notifications, before the recap says
/// which were not received.
const NOTIFY_GRACE: Duration = Duration::from_secs(3);

/// Hands `e` to the notifiers; returns the failures to tell (all that are left, at the
/// run's end, so that the recap can say them).
fn notify(notes: &mut Option<(Notifications, RunLabel)>, e: &Stamped) -> Vec<Stamped> {
    let Some((n, run)) = notes.as_mut() else {
        return Vec::new();
    };
    if let Some(label) = RunLabel::of(&e.event) {
        *run = label;
    }
    if let Some(trigger) = Trigger::of(&e.event).filter(|t| n.wants(*t)) {
        n.offer(trigger, &ui::notification::message(e, trigger, run));
    }
    let failures = if matches!(e.event, Event::RunFinished { .. }) {
        notes
            .take()
            .map(|(n, _)| n.finish(NOTIFY_GRACE))
            .unwrap_or_default()
    } else {
        n.failures()
    };
    failures
        .into_iter()
        .map(|f| {
            Stamped::now(Event::NotifierFailed {
                notifier: f.notifier,
                notification: f.event,
                error: f.error,
            })
        })
        .collect()
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

/// Asks `question` on the terminal; yes only for `y` or `yes`.
pub(super) fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
