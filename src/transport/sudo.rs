//! `become` through `sudo -n`, the same for both transports: how the command is wrapped,
//! and how sudo's refusal to run without a password is told from the command's own exit 1.

use super::{Become, ExecRequest, ExitStatus, TransportError};

/// `sudo -n [-u USER] -- /bin/sh -c 'COMMAND'`
pub(crate) fn wrap(command: &str, become_: &Become) -> String {
    let mut s = String::from("sudo -n ");
    if let Some(user) = &become_.user {
        s.push_str("-u ");
        s.push_str(&shell_words::quote(user));
        s.push(' ');
    }
    s.push_str("-- /bin/sh -c ");
    s.push_str(&shell_words::quote(command));
    s
}

/// The command as the shell runs it: wrapped in sudo when become is asked.
pub(crate) fn command_of<'a>(request: &ExecRequest<'a>) -> std::borrow::Cow<'a, str> {
    match &request.become_ {
        Some(b) => wrap(request.command, b).into(),
        None => request.command.into(),
    }
}

/// Watches the first bytes of a become command's stderr for sudo's refusal.
#[derive(Debug, Default)]
pub(crate) struct PasswordCheck {
    /// `None` when the command does not run through sudo.
    head: Option<Vec<u8>>,
    /// What sudo was asked to run, for the error: sudoers often allows a command but not
    /// the `/bin/sh -c` that wraps it.
    asked: String,
}

impl PasswordCheck {
    /// Bytes of stderr kept: sudo's message comes first.
    const MAX: usize = 1024;

    pub(crate) fn new(request: &ExecRequest<'_>) -> Self {
        PasswordCheck {
            head: request.become_.as_ref().map(|_| Vec::new()),
            asked: request
                .become_
                .as_ref()
                .map(|b| wrap(request.command, b))
                .unwrap_or_default(),
        }
    }

    /// Sees one chunk of the command's stderr.
    pub(crate) fn stderr(&mut self, data: &[u8]) {
        if let Some(head) = &mut self.head {
            let room = Self::MAX.saturating_sub(head.len());
            head.extend_from_slice(&data[..room.min(data.len())]);
        }
    }

    /// Whether the command ending with `status` was sudo refusing to run it.
    fn refused(&self, status: &ExitStatus) -> bool {
        let Some(head) = &self.head else {
            return false;
        };
        let text = String::from_utf8_lossy(head);
        *status == ExitStatus::Code(1)
            && (text.contains("a password is required") || text.contains("a terminal is required"))
    }

    /// `status`, unless it was sudo's refusal to run the command without a password for
    /// `login` (asked only then).
    pub(crate) fn check(
        &self,
        status: ExitStatus,
        host: &str,
        login: impl FnOnce() -> String,
    ) -> Result<ExitStatus, TransportError> {
        if self.refused(&status) {
            return Err(TransportError::BecomePasswordRequired {
                host: host.to_string(),
                login: login(),
                command: self.asked.clone(),
            });
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_quotes_the_command_and_user() {
        let b = Become {
            user: Some("sl user".into()),
        };
        assert_eq!(
            wrap("echo 'a' && id", &b),
            "sudo -n -u 'sl user' -- /bin/sh -c 'echo '\\''a'\\'' && id'"
        );
        assert_eq!(wrap("id", &Become::default()), "sudo -n -- /bin/sh -c id");
        assert_eq!(command_of(&ExecRequest::new("id")), "id");
        assert_eq!(
            command_of(&ExecRequest::new("id").become_user(None)),
            "sudo -n -- /bin/sh -c id"
        );
    }

    fn check(request: &ExecRequest<'_>, stderr: &[&[u8]], status: u32) -> bool {
        let mut c = PasswordCheck::new(request);
        for chunk in stderr {
            c.stderr(chunk);
        }
        matches!(
            c.check(ExitStatus::Code(status), "h", || "sl".into()),
            Err(TransportError::BecomePasswordRequired { ref login, .. }) if login == "sl"
        )
    }

    #[test]
    fn sudo_refusal_is_recognised_only_for_become_and_exit_1() {
        let become_ = ExecRequest::new("id").become_user(None);
        assert!(check(
            &become_,
            &[b"sudo: a password ", b"is required\n"],
            1
        ));
        assert!(check(&become_, &[b"sudo: a terminal is required\n"], 1));
        assert!(!check(&become_, &[b"permission denied\n"], 1));
        assert!(!check(&become_, &[b"sudo: a password is required\n"], 2));
        assert!(!check(
            &ExecRequest::new("id"),
            &[b"sudo: a password is required\n"],
            1
        ));
        // Only the head of stderr is kept; the refusal is at its start.
        let long = vec![b'x'; 4096];
        assert!(!check(&become_, &[&long, b"a password is required"], 1));
    }
}
