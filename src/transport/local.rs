//! The `local` transport: commands run on the controller through `/bin/sh -c`
//! (`ansible_connection: local`, and the engine's own tests).
//!
//! Each command gets its own process group, so a timeout or a cancellation terminates the
//! whole tree (see [`super::termination`]), as the SSH transport does remotely.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal as NixSignal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sudo::{self, PasswordCheck};
use super::termination::{not_cancelled, Grace, Signal, Step, Termination};
use super::{ExecRequest, ExitStatus, OutputSink, OutputStream, TransportError};

/// TERM to KILL; once the group is killed nothing of it can hold the pipes open: stop
/// reading at once.
const GRACE: Grace = Grace {
    before_kill: Duration::from_secs(2),
    after_kill: Duration::ZERO,
};

#[derive(Debug)]
pub struct LocalConnection {
    name: String,
}

impl LocalConnection {
    pub fn new(name: &str) -> Self {
        LocalConnection {
            name: name.to_string(),
        }
    }

    pub fn host(&self) -> &str {
        &self.name
    }

    fn exec_error(&self, detail: impl std::fmt::Display) -> TransportError {
        TransportError::Exec {
            host: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    pub async fn exec(
        &self,
        request: &ExecRequest<'_>,
        sink: &mut OutputSink<'_>,
    ) -> Result<ExitStatus, TransportError> {
        not_cancelled(request, &self.name)?;
        let mut child = self.spawn(request)?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.exec_error("no pipes to the child"));
        };
        let stdin_task = feed_stdin(request, child.stdin.take());
        let mut stop = Termination::start(request, GRACE, Instant::now());
        let mut sudo = PasswordCheck::new(request);
        let (mut out, mut err) = (Pipe::new(out), Pipe::new(err));
        let status = loop {
            tokio::select! {
                // Handled here, not by a `Some(_)` pattern: an end must go round the loop
                // for the wait's condition to be looked at again.
                chunk = out.read() => if let Some(data) = chunk {
                    sink(OutputStream::Stdout, data);
                },
                chunk = err.read() => if let Some(data) = chunk {
                    sudo.stderr(data);
                    sink(OutputStream::Stderr, data);
                },
                status = child.wait(), if !out.open && !err.open => {
                    break status.map_err(|e| self.exec_error(e))?;
                }
                step = stop.next() => match step {
                    Step::Send(signal) => {
                        signal_group(group, signal);
                        stop.sent(Instant::now());
                    }
                    // Whatever still holds the pipes open is not ours to wait for.
                    Step::Abandon => (out.open, err.open) = (false, false),
                }
            }
        };
        if let Some(task) = stdin_task {
            task.abort();
        }
        if let Some(e) = stop.error(&self.name) {
            return Err(e);
        }
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code as u32),
            (None, Some(sig)) => ExitStatus::Signal(signal_name(sig)),
            (None, None) => return Err(self.exec_error("the command ended with no status")),
        };
        sudo.check(status, &self.name, || {
            std::env::var("USER").unwrap_or_else(|_| "this user".into())
        })
    }

    /// `/bin/sh -c COMMAND` in a process group of its own.
    fn spawn(&self, request: &ExecRequest<'_>) -> Result<Child, TransportError> {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&*sudo::command_of(request))
            // As sshd sets it to the shell that runs the command: what a guarded turn
            // runs its probe and step with. The controller's own (a fish or a csh, say)
            // would run them with another syntax than the commands not guarded.
            .env("SHELL", "/bin/sh")
            .stdin(if request.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.exec_error(format_args!("cannot start /bin/sh: {e}")))
    }
}

/// A command that does not read its stdin must not block us: it is written aside.
fn feed_stdin(request: &ExecRequest<'_>, pipe: Option<ChildStdin>) -> Option<JoinHandle<()>> {
    let (bytes, mut pipe) = (request.input(), pipe?);
    Some(tokio::spawn(async move {
        let _ = pipe.write_all(&bytes.await).await;
    }))
}

/// One of the child's output pipes, read until it closes.
struct Pipe<R> {
    reader: R,
    buf: Vec<u8>,
    open: bool,
}

impl<R: AsyncRead + Unpin> Pipe<R> {
    fn new(reader: R) -> Self {
        Pipe {
            reader,
            buf: vec![0u8; 32 * 1024],
            open: true,
        }
    }

    /// The next chunk; `None` when the pipe closes (or fails), and pending from then on.
    async fn read(&mut self) -> Option<&[u8]> {
        if !self.open {
            return std::future::pending().await;
        }
        match self.reader.read(&mut self.buf).await {
            Ok(0) | Err(_) => {
                self.open = false;
                None
            }
            Ok(n) => Some(&self.buf[..n]),
        }
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    let signal = match signal {
        Signal::Term => NixSignal::SIGTERM,
        Signal::Kill => NixSignal::SIGKILL,
    };
    if let Some(group) = group.filter(|g| g.as_raw() > 0) {
        // Already gone is fine: there is nothing left to stop.
        let _ = killpg(group, signal);
    }
}

/// The SSH-style name of a signal number (no `SIG` prefix), for the signals SSH names.
pub(crate) fn signal_name(sig: i32) -> String {
    use NixSignal::*;
    match NixSignal::try_from(sig) {
        Ok(
            s @ (SIGHUP | SIGINT | SIGQUIT | SIGILL | SIGABRT | SIGFPE | SIGKILL | SIGSEGV
            | SIGPIPE | SIGALRM | SIGTERM | SIGUSR1 | SIGUSR2),
        ) => s.as_str().trim_start_matches("SIG").to_string(),
        _ => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(request: &ExecRequest<'_>) -> (Result<ExitStatus, TransportError>, String) {
        let mut output = String::new();
        let status = LocalConnection::new("local")
            .exec(request, &mut |stream, data: &[u8]| {
                let tag = if stream == OutputStream::Stdout {
                    "o:"
                } else {
                    "e:"
                };
                output.push_str(tag);
                output.push_str(&String::from_utf8_lossy(data));
            })
            .await;
        (status, output)
    }

    #[tokio::test]
    async fn a_command_runs_to_its_end_with_its_streams_apart() {
        let (status, output) = run(&ExecRequest::new("echo out; exit 4")).await;
        assert_eq!(
            (status.ok(), output.as_str()),
            (Some(ExitStatus::Code(4)), "o:out\n")
        );
        let (status, output) = run(&ExecRequest::new("cat >&2").stdin(b"in")).await;
        assert_eq!(
            (status.ok(), output.as_str()),
            (Some(ExitStatus::Code(0)), "e:in")
        );
        let (status, _) = run(&ExecRequest::new("kill -USR1 $$")).await;
        assert_eq!(status.ok(), Some(ExitStatus::Signal("USR1".into())));
    }

    #[tokio::test]
    async fn a_command_sees_the_shell_that_runs_it_not_the_controllers() {
        let (status, output) = run(&ExecRequest::new("echo \"$SHELL\"")).await;
        assert_eq!(
            (status.ok(), output.as_str()),
            (Some(ExitStatus::Code(0)), "o:/bin/sh\n")
        );
    }

    #[tokio::test]
    async fn a_timed_out_or_cancelled_command_is_stopped() {
        let started = std::time::Instant::now();
        let request = ExecRequest::new("sleep 30").timeout(Duration::from_millis(50));
        let (status, _) = run(&request).await;
        assert!(
            matches!(status, Err(TransportError::CommandTimedOut { .. })),
            "{status:?}"
        );
        let token = super::super::CancellationToken::new();
        token.cancel();
        let (status, _) = run(&ExecRequest::new("echo never").cancel(token)).await;
        assert!(
            matches!(status, Err(TransportError::Cancelled { .. })),
            "{status:?}"
        );
        // TERM sufficed: no grace period was waited for.
        assert!(
            started.elapsed() < GRACE.before_kill,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn signal_names_are_ssh_s() {
        assert_eq!(signal_name(15), "TERM");
        assert_eq!(signal_name(9), "KILL");
        assert_eq!(signal_name(12), "USR2");
        assert_eq!(signal_name(17), "signal 17");
        assert_eq!(signal_name(0), "signal 0");
    }
}
