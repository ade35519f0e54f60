//! The terminal's own echo of control keys, switched off while live lines are drawn.
//!
//! The terminal echoes Ctrl-C as `^C` where the cursor is: at the end of the last live
//! line, which is as wide as the screen, so the echo wraps to a new row and every line
//! moves up one. The view's next redraw then goes up one row short, and a stale copy of
//! the header stays in the scrollback. Without the echo the operator still sees the
//! Ctrl-C answered, by the `STOPPING` line.

use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};

/// While held, stdout's terminal does not echo control keys; dropped, it does again.
pub struct QuietControlKeys {
    saved: Option<Termios>,
}

impl QuietControlKeys {
    /// Switches the echo of control keys off on stdout's terminal, if stdout is one.
    pub fn new() -> Self {
        let stdout = std::io::stdout();
        let saved = tcgetattr(&stdout).ok().filter(|t| {
            let mut quiet = t.clone();
            quiet.local_flags.remove(LocalFlags::ECHOCTL);
            tcsetattr(&stdout, SetArg::TCSANOW, &quiet).is_ok()
        });
        QuietControlKeys { saved }
    }
}

impl Default for QuietControlKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for QuietControlKeys {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = tcsetattr(std::io::stdout(), SetArg::TCSANOW, &saved);
        }
    }
}
