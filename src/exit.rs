//! The exit codes of every command, decided in one place. Scripts and schedulers rely on
//! them: keep them as documented in the README.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done (hosts ok, skipped or unchanged).
    Success,
    /// At least one host failed (or was rolled back).
    HostFailed,
    /// A batch did not start because its maintenance window was closed or too short;
    /// `fleetup run --resume` continues the run in the next window.
    Deferred,
    /// A host was unreachable and none failed.
    Unreachable,
    /// Invalid input or usage: nothing was contacted, nothing changed.
    InvalidInput,
    /// The promotion gate refused the run (the staged group has not run the version,
    /// healthy, for the soak time): nothing changed.
    GateRefused,
    /// Interrupted by the operator (a second Ctrl-C).
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::HostFailed => 2,
            Exit::Deferred => 3,
            Exit::Unreachable => 4,
            Exit::InvalidInput => 5,
            Exit::GateRefused => 6,
            Exit::Interrupted => 99,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
