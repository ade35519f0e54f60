//! A tmux server of the test's own, to run fleetup in a real terminal and read the screen:
//! `mod tmux;` in an integration test.
// Every test crate that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A tmux server of our own (its own socket), killed when dropped.
pub struct Tmux {
    pub socket: PathBuf,
}

impl Tmux {
    /// A session `run` of `cols` x `rows` running `argv`.
    pub fn start(socket: PathBuf, cols: usize, rows: usize, argv: &[&str]) -> Tmux {
        let tmux = Tmux { socket };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let mut args = vec!["new-session", "-d", "-s", "run", "-x", &cols, "-y", &rows];
        args.extend(argv);
        let out = tmux.cmd(&args);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// The visible screen's rows, or with `history` every row since the start. Rows, not
    /// lines: indicatif fills each live line to the full width and lets the terminal wrap
    /// to the next, so tmux's `-J` (join wrapped lines) would join all of them.
    pub fn capture(&self, history: bool) -> Vec<String> {
        let mut args = vec!["capture-pane", "-p", "-t", "run"];
        if history {
            args.extend(["-S", "-"]);
        }
        let out = self.cmd(&args);
        assert!(
            out.status.success(),
            "capture-pane: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

pub fn available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}
