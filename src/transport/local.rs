//! The `local` transport: commands run on the controller through `/bin/sh -c`
//! (`ansible_connection: local`, and the engine's own tests).
//!
//! Each command gets its own process group, so a timeout or a cancellation terminates the
//! whole tree (TERM, then KILL after a grace period), as the SSH transport does remotely.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{
    sudo_wants_password, sudo_wrap, ExecRequest, ExitStatus, OutputSink, OutputStream, StderrHead,
    TransportError,
};

/// Time between TERM and KILL when a command is terminated.
const KILL_GRACE: Duration = Duration::from_secs(2);

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
        if request.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(TransportError::Cancelled {
                host: self.name.clone(),
            });
        }
        let text;
        let command = match &request.become_ {
            Some(b) => {
                text = sudo_wrap(request.command, b);
                text.as_str()
            }
            None => request.command,
        };
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
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
            .map_err(|e| self.exec_error(format_args!("cannot start /bin/sh: {e}")))?;
        let pgid = child.id().map(|id| id as libc::pid_t);
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.exec_error("no pipes to the child"));
        };
        let stdin_task = match (request.stdin, child.stdin.take()) {
            (Some(bytes), Some(mut pipe)) => {
                let bytes = bytes.to_vec();
                // A command that does not read its stdin must not block us: write aside.
                Some(tokio::spawn(async move {
                    let _ = pipe.write_all(&bytes).await;
                }))
            }
            _ => None,
        };

        let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
        let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(far_future));
        tokio::pin!(sleep);
        let cancel = request.cancel.clone().unwrap_or_default();
        let mut head = StderrHead::default();
        let (mut out_buf, mut err_buf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
        let (mut out_open, mut err_open) = (true, true);
        let mut ended: Option<TransportError> = None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let status = loop {
            tokio::select! {
                n = out.read(&mut out_buf), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => sink(OutputStream::Stdout, &out_buf[..n]),
                },
                n = err.read(&mut err_buf), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        head.push(&err_buf[..n]);
                        sink(OutputStream::Stderr, &err_buf[..n]);
                    }
                },
                status = child.wait(), if !out_open && !err_open => {
                    break status.map_err(|e| self.exec_error(e))?;
                }
                () = &mut sleep, if ended.is_none() && deadline.is_some() => {
                    ended = Some(TransportError::CommandTimedOut {
                        host: self.name.clone(),
                        timeout: request.timeout.unwrap_or_default(),
                    });
                    signal_group(pgid, libc::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + KILL_GRACE);
                }
                () = cancel.cancelled(), if ended.is_none() => {
                    ended = Some(TransportError::Cancelled { host: self.name.clone() });
                    signal_group(pgid, libc::SIGTERM);
                    kill_at = Some(tokio::time::Instant::now() + KILL_GRACE);
                }
                () = tokio::time::sleep_until(kill_at.unwrap_or_else(far_future)), if kill_at.is_some() => {
                    signal_group(pgid, libc::SIGKILL);
                    kill_at = None;
                    // A grandchild holding the pipes open is dead now too; stop reading.
                    out_open = false;
                    err_open = false;
                }
            }
        };
        if let Some(task) = stdin_task {
            task.abort();
        }
        if let Some(e) = ended {
            return Err(e);
        }
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code as u32),
            (None, Some(sig)) => ExitStatus::Signal(signal_name(sig)),
            (None, None) => return Err(self.exec_error("the command ended with no status")),
        };
        if request.become_.is_some()
            && status == ExitStatus::Code(1)
            && sudo_wants_password(head.bytes())
        {
            return Err(TransportError::BecomePasswordRequired {
                host: self.name.clone(),
                login: std::env::var("USER").unwrap_or_else(|_| "this user".into()),
            });
        }
        Ok(status)
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}

fn signal_group(pgid: Option<libc::pid_t>, signal: libc::c_int) {
    if let Some(pgid) = pgid.filter(|p| *p > 0) {
        // SAFETY: killpg only sends a signal; the group is the child's own (process_group(0)).
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// The SSH-style name of a signal number (no `SIG` prefix).
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGUSR1 => "USR1",
        libc::SIGUSR2 => "USR2",
        other => return format!("signal {other}"),
    };
    name.to_string()
}
