//! Running one command in its own exec channel, and terminating it on the host.
//!
//! ## How a command is terminated, for root too
//! OpenSSH refuses the `signal` channel request for root logins, and closing a channel
//! without a pty leaves the process running (re-parented to init); a pty would kill it on
//! close but merges stdout and stderr. So instead:
//!
//! 1. sshd runs every exec command in a new session (`setsid`): the login shell it starts
//!    is a process group leader, and its `$$` is the group id of everything the command
//!    starts. The command is sent prefixed by one line that prints that id on stderr behind
//!    a marker (`\x1efleetup-pgid N`), which is stripped before stderr reaches the sink.
//! 2. On timeout or cancellation a *second* exec channel on the same connection runs
//!    `kill -s TERM -- -N` (through `sudo -n` when the command used become, since its
//!    processes are then not the login user's), then `kill -s KILL -- -N` if the command's
//!    channel has not closed after a grace period ([`crate::transport::termination`]
//!    decides when; this module delivers).
//!
//! This works the same for root and non-root logins and keeps the two streams apart. The
//! group id cannot be recycled while any process of the group lives, and the kill is only
//! sent while the command's channel is still open.
//!
//! Should the command have to be stopped before its marker arrived (the login shell still
//! starting), the marker line also carries a comment with a token unique to this exec,
//! found in /proc in that shell's command line (or, under a ForceCommand wrapper, in the
//! wrapper's SSH_ORIGINAL_COMMAND), and those processes are signalled: nothing of the
//! command has started yet. sshd is also asked to signal it (it does for non-root logins).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use russh::{ChannelMsg, Sig};
use tokio::time::Instant;

use super::SshConnection;
use crate::transport::sudo::{self, PasswordCheck};
use crate::transport::termination::{not_cancelled, Grace, Signal, Step, Termination};
use crate::transport::{ExecRequest, ExitStatus, OutputSink, OutputStream, TransportError};

/// TERM to KILL, and KILL to abandoning the channel (the host may never answer).
const GRACE: Grace = Grace {
    before_kill: Duration::from_secs(3),
    after_kill: Duration::from_secs(3),
};
/// Time allowed for the kill command itself.
const KILL_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

const MARKER: &[u8] = b"\x1efleetup-pgid ";

/// The command as sent: the marker line first, then the command (wrapped in sudo when
/// become is asked), on its own line so that its syntax is untouched.
pub(crate) fn wrap_command(request: &ExecRequest<'_>, token: &str) -> String {
    let command = sudo::command_of(request);
    let mut s = String::with_capacity(command.len() + 48);
    s.push_str("printf '\\036fleetup-pgid %s\\n' \"$$\" >&2 # fleetup-exec-");
    s.push_str(token);
    s.push('\n');
    s.push_str(&command);
    s
}

/// A token unique to one exec of this process, looked for in /proc on the host.
pub(crate) fn exec_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SALT: OnceLock<u64> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    format!("{salt:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Strips the marker line from the start of stderr and reads the process group id.
#[derive(Default)]
pub(crate) struct PgidReader {
    pending: Vec<u8>,
    done: bool,
    pgid: Option<u32>,
}

impl PgidReader {
    /// Feeds one stderr chunk; what is not the marker goes to `out`.
    pub(crate) fn feed(&mut self, data: &[u8], mut out: impl FnMut(&[u8])) {
        if self.done {
            out(data);
            return;
        }
        let buf: &[u8] = if self.pending.is_empty() {
            data
        } else {
            self.pending.extend_from_slice(data);
            &self.pending
        };
        let common = buf.len().min(MARKER.len());
        if buf[..common] != MARKER[..common] {
            self.done = true;
            out(buf);
        } else if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            self.done = true;
            self.pgid = std::str::from_utf8(&buf[MARKER.len().min(nl)..nl])
                .ok()
                .and_then(|s| s.parse().ok());
            if nl + 1 < buf.len() {
                out(&buf[nl + 1..]);
            }
        } else if buf.len() > MARKER.len() + 24 {
            self.done = true;
            out(buf);
        } else if self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return;
        } else {
            return;
        }
        self.pending = Vec::new();
    }

    /// At the end of the stream: whatever was held back.
    pub(crate) fn finish(&mut self, out: impl FnOnce(&[u8])) {
        if !self.pending.is_empty() {
            out(&self.pending);
            self.pending.clear();
        }
        self.done = true;
    }

    pub(crate) fn pgid(&self) -> Option<u32> {
        self.pgid
    }
}

/// What arrives on a command's channel, sorted: output to the sink (without the process
/// group marker, seen by the sudo check), the exit status aside.
struct Received {
    pgid: PgidReader,
    sudo: PasswordCheck,
    status: Option<ExitStatus>,
}

impl Received {
    fn new(request: &ExecRequest<'_>) -> Self {
        Received {
            pgid: PgidReader::default(),
            sudo: PasswordCheck::new(request),
            status: None,
        }
    }

    /// Takes one message of the channel; an error if the server refused the command.
    fn take(
        &mut self,
        msg: ChannelMsg,
        sink: &mut OutputSink<'_>,
        host: &str,
    ) -> Result<(), TransportError> {
        match msg {
            ChannelMsg::Data { data } => sink(OutputStream::Stdout, &data),
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let sudo = &mut self.sudo;
                self.pgid.feed(&data, |d| {
                    sudo.stderr(d);
                    sink(OutputStream::Stderr, d);
                });
            }
            ChannelMsg::ExitStatus { exit_status } => {
                self.status = Some(ExitStatus::Code(exit_status));
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                self.status = Some(ExitStatus::Signal(sig_name(&signal_name)));
            }
            ChannelMsg::Failure if self.status.is_none() => {
                return Err(TransportError::Exec {
                    host: host.to_string(),
                    detail: "the SSH server refused to run the command".into(),
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// The command that sends `signal` to the command's process group or, before its id is
/// known, to the login shell found by the exec token.
fn kill_command(signal: Signal, pgid: Option<u32>, token: &str, become_: bool) -> String {
    let signal = signal.name();
    match pgid {
        // `-s SIG --` is the form every kill takes (dash rejects `-SIG --`). The command's
        // processes are root's under become: so is the kill.
        Some(id) => {
            let sudo = if become_ { "sudo -n " } else { "" };
            format!("{sudo}kill -s {signal} -- -{id}")
        }
        // The login shell has the token in its command line; a ForceCommand wrapper
        // (which runs before it) in its SSH_ORIGINAL_COMMAND. `[f]` keeps the pattern
        // from matching this very command.
        None => format!(
            "for f in $(grep -ls '[f]leetup-exec-{token}' /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null); \
             do p=${{f#/proc/}}; kill -{signal} \"${{p%%/*}}\" 2>/dev/null; done; true"
        ),
    }
}

impl SshConnection {
    /// Runs one command in a new exec channel of this connection (see
    /// [`crate::transport::Connection::exec`]). Output is passed on as it arrives, until
    /// the channel closes: the exit status may come before the last data. Channels per
    /// connection are capped by the server's MaxSessions (OpenSSH: 10), and a termination
    /// needs one more for its kill command.
    pub async fn exec(
        &self,
        request: &ExecRequest<'_>,
        sink: &mut OutputSink<'_>,
    ) -> Result<ExitStatus, TransportError> {
        not_cancelled(request, &self.name)?;
        let channel = match self.handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) => return Err(self.channel_error(e, false).await),
        };
        let token = exec_token();
        if let Err(e) = channel.exec(true, wrap_command(request, &token)).await {
            return Err(self.channel_error(e, true).await);
        }
        let (mut read, write) = channel.split();
        let stdin = request.input();
        let stdin_fut = async {
            let stdin = stdin.await;
            if !stdin.is_empty() {
                write.data(&stdin[..]).await?;
            }
            write.eof().await
        };
        tokio::pin!(stdin_fut);
        let mut stdin_done = false;
        let mut stop = Termination::start(request, GRACE, Instant::now());
        let mut got = Received::new(request);
        loop {
            tokio::select! {
                msg = read.wait() => match msg {
                    Some(msg) => got.take(msg, sink, &self.name)?,
                    None => break,
                },
                // A command may exit without reading its stdin: not an error.
                _ = &mut stdin_fut, if !stdin_done => stdin_done = true,
                step = stop.next() => match step {
                    Step::Send(signal) => {
                        let pgid = got.pgid.pgid();
                        if signal == Signal::Term && pgid.is_none() {
                            // Refused by OpenSSH for root logins; harmless to ask.
                            let _ = write.signal(Sig::TERM).await;
                        }
                        let become_ = request.become_.is_some();
                        self.run_kill(kill_command(signal, pgid, &token, become_)).await;
                        stop.sent(Instant::now());
                    }
                    Step::Abandon => break,
                }
            }
        }
        got.pgid.finish(|d| sink(OutputStream::Stderr, d));
        let _ = write.close().await;
        self.conclude(&stop, got).await
    }

    /// How the command ended, once its channel is done with.
    async fn conclude(
        &self,
        stop: &Termination,
        got: Received,
    ) -> Result<ExitStatus, TransportError> {
        if let Some(e) = stop.error(&self.name) {
            // Lost while terminating: the host is unreachable, whatever we meant to do.
            if got.status.is_none() && self.state.ended.is_cancelled() {
                if let Some(detail) = self.state.end_reason() {
                    return Err(TransportError::ConnectionLost {
                        host: self.name.clone(),
                        detail: format!("{detail} (while terminating: {e})"),
                        sent: true,
                    });
                }
            }
            return Err(e);
        }
        let Some(status) = got.status else {
            // The channel ended with no exit status: was the connection lost?
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.state.ended.cancelled()).await;
            return Err(match self.state.end_reason() {
                Some(detail) => TransportError::ConnectionLost {
                    host: self.name.clone(),
                    detail: format!("{detail}; the command's outcome on the host is unknown"),
                    sent: true,
                },
                None => TransportError::Exec {
                    host: self.name.clone(),
                    detail: "the command's channel closed without an exit status".into(),
                },
            });
        };
        got.sudo.check(status, &self.name, || self.user.clone())
    }

    /// Runs a kill command from a fresh channel of the same connection.
    async fn run_kill(&self, command: String) {
        let run = async {
            let mut ch = self.handle.channel_open_session().await?;
            ch.exec(true, command).await?;
            ch.eof().await?;
            while ch.wait().await.is_some() {}
            Ok::<_, russh::Error>(())
        };
        let _ = tokio::time::timeout(KILL_COMMAND_TIMEOUT, run).await;
    }

    /// A channel could not be opened or used: lost connection, or a refusal.
    /// `sent`: whether the command may have reached the host (its channel was open).
    async fn channel_error(&self, e: russh::Error, sent: bool) -> TransportError {
        if self.handle.is_closed() || self.state.ended.is_cancelled() {
            let _ = tokio::time::timeout(Duration::from_millis(500), self.state.ended.cancelled())
                .await;
            return TransportError::ConnectionLost {
                host: self.name.clone(),
                detail: self
                    .state
                    .end_reason()
                    .unwrap_or_else(|| format!("the SSH session is closed ({e})")),
                sent,
            };
        }
        TransportError::Exec {
            host: self.name.clone(),
            detail: format!("cannot open an SSH channel: {e}"),
        }
    }
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(s) => return s.clone(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Option<u32>, Vec<u8>) {
        let mut r = PgidReader::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, |d| out.extend_from_slice(d));
        }
        r.finish(|d| out.extend_from_slice(d));
        (r.pgid(), out)
    }

    #[test]
    fn marker_is_read_and_stripped() {
        assert_eq!(
            run(&[b"\x1efleetup-pgid 1234\nerr", b"or\n"]),
            (Some(1234), b"error\n".to_vec())
        );
        assert_eq!(
            run(&[b"\x1efleet", b"up-pgid 7", b"7\n"]),
            (Some(77), vec![])
        );
        assert_eq!(
            run(&[b"\x1efleetup-pgid 9\n", b"\x1efleetup-pgid 5\n"]),
            (Some(9), b"\x1efleetup-pgid 5\n".to_vec())
        );
    }

    #[test]
    fn other_stderr_passes_untouched() {
        assert_eq!(
            run(&[b"bash: x: not found\n"]),
            (None, b"bash: x: not found\n".to_vec())
        );
        assert_eq!(run(&[b"\x1e", b"zz"]), (None, b"\x1ezz".to_vec()));
        assert_eq!(run(&[b"\x1efleet"]), (None, b"\x1efleet".to_vec()));
    }

    #[test]
    fn kill_targets_the_group_or_else_the_shell_with_the_token() {
        assert_eq!(
            kill_command(Signal::Term, Some(42), "t0", false),
            "kill -s TERM -- -42"
        );
        assert_eq!(
            kill_command(Signal::Kill, Some(42), "t0", true),
            "sudo -n kill -s KILL -- -42"
        );
        let by_token = kill_command(Signal::Kill, None, "t0", true);
        assert!(
            by_token.contains("grep -ls '[f]leetup-exec-t0'"),
            "{by_token}"
        );
        assert!(by_token.contains("kill -KILL \"${p%%/*}\""), "{by_token}");
        assert!(!by_token.contains("sudo"), "{by_token}");
    }

    #[test]
    fn wrapped_command_keeps_the_command_on_its_own_line() {
        let r = ExecRequest::new("echo hi; exit 3");
        assert_eq!(
            wrap_command(&r, "t0"),
            "printf '\\036fleetup-pgid %s\\n' \"$$\" >&2 # fleetup-exec-t0\necho hi; exit 3"
        );
        let r = ExecRequest::new("id").become_user(Some("app".into()));
        assert!(wrap_command(&r, "t1").ends_with("\nsudo -n -u app -- /bin/sh -c id"));
    }
}
