//! Why a command stopped before it was done. Each error knows its exit code; `main`
//! prints it once, where commands used to print it wherever it was found.

use std::io;
use std::path::PathBuf;

use fleetup::diagnostic::Diagnostics;
use fleetup::exit::Exit;
use fleetup::gate::Judgement;
use fleetup::resume::{ClaimError, ResumeError};
use fleetup::ssh::SshSetupError;
use fleetup::staging::Deferred;
use fleetup::ui;
use fleetup::ui::text::{plural, were};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Every problem of the operator's input, then how many there are.
    #[error("{}", input(.0))]
    Input(Diagnostics),
    /// `FLEETUP_NOW` is not an instant.
    #[error("error: {0}; nothing was contacted.")]
    Clock(String),
    #[error("error: {0}; nothing was contacted.")]
    Resume(#[from] ResumeError),
    #[error("error: {0}; nothing was contacted.")]
    Claim(#[from] ClaimError),
    #[error("error: cannot create the run directory under {}: {source}; nothing was contacted.", .dir.display())]
    RunDir { dir: PathBuf, source: io::Error },
    #[error("error: cannot write the run's inputs in {}: {source}; nothing was contacted.", .dir.display())]
    Record { dir: PathBuf, source: io::Error },
    #[error("error: cannot open the run's journal {}: {source}; nothing was changed.", .path.display())]
    Journal { path: PathBuf, source: io::Error },
    /// A `prompt` pause in the playbook at `.0`, and no one at a terminal to answer it.
    #[error("error: {}: a `prompt` pause waits for the operator, but the input is not a terminal; use a duration (e.g. pause_after_canary: 10m). Nothing was contacted.", .0.display())]
    NoTerminal(PathBuf),
    #[error("error: {0}; nothing was contacted.")]
    Transport(#[from] SshSetupError),
    #[error("error: cannot start the async runtime: {0}")]
    Runtime(io::Error),
    /// `show --html`: the run's files, or the page's.
    #[error("error: {0}")]
    Report(#[from] fleetup::report::ReportError),
    #[error("{}", ui::gate::refusal(.0))]
    GateRefused(Box<Judgement>),
    /// The run waits for a later maintenance window; `resume` is the command to continue.
    #[error("{}", ui::staging::deferred(.deferred, .resume))]
    Deferred {
        deferred: Box<Deferred>,
        resume: String,
    },
    /// The operator answered no.
    #[error("not started; no host was changed.")]
    Declined,
    /// Hosts failed the fleet-wide pre-flight; `exit` is as if they had failed the run.
    #[error("error: the run does not start: {} host{} failed the pre-flight or {} unreachable ({}); fix them, or pass --exclude-unhealthy to leave them out. No host was changed.", .hosts.len(), plural(.hosts.len()), were(.hosts.len()), .hosts.join(", "))]
    Unhealthy { hosts: Vec<String>, exit: Exit },
    /// `--exclude-unhealthy` left every host out.
    #[error("error: no host is left to upgrade; nothing was changed.")]
    NoHostLeft { exit: Exit },
    #[error("error: no inventory given: pass -i INVENTORY, or set ANSIBLE_INVENTORY or an ansible.cfg's inventory; nothing was contacted.")]
    NoInventory,
    /// `fleetup exec`'s host pattern does not parse.
    #[error("error: {0}")]
    Pattern(String),
    #[error("error: `{0}` matches no host of the inventory; nothing was contacted.")]
    NoMatch(String),
    /// The journal's runs cannot be listed.
    #[error("error: cannot read {}: {source}", .dir.display())]
    Runs { dir: PathBuf, source: io::Error },
    /// A run of the journal is not there, or cannot be read.
    #[error("error: {0}")]
    Run(String),
    #[error("error: no log of host `{host}` in run {run} ({}: {source})", .path.display())]
    NoHostLog {
        host: String,
        run: String,
        path: PathBuf,
        source: io::Error,
    },
}

impl CliError {
    /// The exit code this error ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Resume(ResumeError::GateRefused { .. }) | CliError::GateRefused(_) => {
                Exit::GateRefused
            }
            CliError::Deferred { .. } => Exit::Deferred,
            CliError::Declined => Exit::Interrupted,
            CliError::Unhealthy { exit, .. } | CliError::NoHostLeft { exit } => *exit,
            _ => Exit::InvalidInput,
        }
    }
}

impl From<Diagnostics> for CliError {
    fn from(d: Diagnostics) -> Self {
        CliError::Input(d)
    }
}

fn input(errors: &Diagnostics) -> String {
    let mut lines: Vec<String> = errors.0.iter().map(|e| format!("error: {e}")).collect();
    lines.push(format!(
        "{} problem{} in the input; nothing was contacted and no host was changed.",
        errors.0.len(),
        plural(errors.0.len())
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_ends_the_command_with_its_own_code() {
        assert_eq!(CliError::Declined.exit(), Exit::Interrupted);
        assert_eq!(CliError::NoInventory.exit(), Exit::InvalidInput);
        let refused = ResumeError::GateRefused {
            run: "r1".into(),
            detail: "stg-1 is not healthy now".into(),
        };
        assert_eq!(CliError::from(refused).exit(), Exit::GateRefused);
        let unhealthy = CliError::Unhealthy {
            hosts: vec!["a".into(), "b".into()],
            exit: Exit::Unreachable,
        };
        assert_eq!(unhealthy.exit(), Exit::Unreachable);
        assert_eq!(
            unhealthy.to_string(),
            "error: the run does not start: 2 hosts failed the pre-flight or were unreachable (a, b); fix them, or pass --exclude-unhealthy to leave them out. No host was changed."
        );
        let one = CliError::Unhealthy {
            hosts: vec!["a".into()],
            exit: Exit::HostFailed,
        };
        assert!(
            one.to_string()
                .contains(" 1 host failed the pre-flight or was unreachable (a);"),
            "{one}"
        );
    }
}
