//! Running `fleetup run` in a detached tmux session of the test's size: the fleet, the
//! script the session runs, the wait for fleetup's end, and what the terminal showed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fleet::{self, Fleet, HostSpec, Spec};
use super::tmux::{self, Tmux};
use super::{COLS, FLEETUP, ROWS};

/// How a run in tmux ended.
pub struct Ended {
    /// fleetup's exit code, as the shell saw it.
    pub exit: String,
    /// The visible rows at the end.
    pub screen: Vec<String>,
    /// Every row since the start, the visible ones last.
    pub history: Vec<String>,
    /// The cursor's row (0-based) at the end.
    pub cursor_row: usize,
    /// Every byte fleetup wrote to the terminal (tmux pipe-pane).
    pub raw: Vec<u8>,
}

/// [`run_in_tmux`] of `playbook`; `on_screen` may also type into the session.
pub fn run_playbook_in_tmux(
    hosts: usize,
    playbook: &str,
    on_screen: impl FnMut(&Tmux, &[String]),
) -> Option<Ended> {
    if !tmux::available() {
        println!("SKIPPED: tmux is not installed (apt-get install -y tmux); the terminal view was not tested in a real terminal");
        return None;
    }
    // Lives until the run has ended: the fleet stops when it is dropped.
    let fleet = fleet_of(hosts);
    let files = RunFiles::write(&fleet, playbook, hosts);
    let tmux = start_session(fleet.tmp().join("tmux.sock"), &files);
    wait_for_exit(&tmux, &files, on_screen);
    let ended = ended(&tmux, &files);
    if let Ok(dir) = std::env::var("FLEETUP_DEBUG_TERMINAL") {
        let dir = Path::new(&dir);
        std::fs::write(dir.join(format!("terminal-{hosts}.raw")), &ended.raw).unwrap();
        std::fs::write(
            dir.join(format!("terminal-{hosts}.history")),
            ended.history.join("\n"),
        )
        .unwrap();
    }
    Some(ended)
}

/// `hosts` production hosts at v4.65.0, the first a canary.
fn fleet_of(hosts: usize) -> Fleet {
    let mut spec = Spec::new();
    for i in 1..=hosts {
        let mut h = HostSpec::new(&format!("p-{i:02}"), "production", "v4.65.0");
        if i == 1 {
            h = h.canary();
        }
        spec = spec.host(h);
    }
    Fleet::start(spec)
}

/// The files of a run in tmux: the script the session runs, and what it leaves.
struct RunFiles {
    script: PathBuf,
    /// fleetup's exit code, written by the script once fleetup ended.
    exit: PathBuf,
    /// Every byte written to the terminal (pipe-pane).
    raw: PathBuf,
    /// Made by the test once pipe-pane is attached: the script then starts fleetup.
    ready: PathBuf,
}

impl RunFiles {
    /// Writes `playbook` and the script that runs it on `fleet`'s `hosts` hosts at once.
    fn write(fleet: &Fleet, playbook: &str, hosts: usize) -> RunFiles {
        let tmp = fleet.tmp();
        let pb = tmp.join("terminal.yml");
        std::fs::write(&pb, playbook).unwrap();
        let files = RunFiles {
            script: tmp.join("run.sh"),
            exit: tmp.join("exit"),
            raw: tmp.join("raw"),
            ready: tmp.join("ready"),
        };
        let quote = |p: &Path| fleet::sh_quote(p.to_str().unwrap());
        // The shell outlives a Ctrl-C typed at fleetup (its trap is a no-op, reset to the
        // default for fleetup), so that it still records fleetup's exit code.
        std::fs::write(
            &files.script,
            format!(
                "trap : INT\nwhile [ ! -e {ready} ]; do sleep 0.05; done\n\
                 {} run -i {} {} --known-hosts {} --yes --state-dir {} --serial {hosts} --forks {hosts}\n\
                 echo $? > {}\nexec sleep 120\n",
                quote(Path::new(FLEETUP)),
                quote(&fleet.inventory_path()),
                quote(&pb),
                quote(&fleet.known_hosts_path()),
                quote(&tmp.join("state")),
                quote(&files.exit),
                ready = quote(&files.ready),
            ),
        )
        .unwrap();
        files
    }
}

/// A detached COLS x ROWS session running the script, its output piped to the raw file;
/// then the script is let go.
fn start_session(socket: PathBuf, files: &RunFiles) -> Tmux {
    let script = files.script.to_str().unwrap();
    let tmux = Tmux::start(socket, COLS, ROWS, &["sh", script]);
    let raw = fleet::sh_quote(files.raw.to_str().unwrap());
    let piped = tmux.cmd(&["pipe-pane", "-t", "run", "-o", &format!("cat > {raw}")]);
    assert!(piped.status.success(), "tmux pipe-pane");
    std::fs::write(&files.ready, "").unwrap();
    tmux
}

/// Shows `on_screen` the visible rows every 100 ms until fleetup has ended.
fn wait_for_exit(tmux: &Tmux, files: &RunFiles, mut on_screen: impl FnMut(&Tmux, &[String])) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files.exit.exists() {
        assert!(
            Instant::now() < deadline,
            "fleetup did not end within a minute; screen:\n{}",
            tmux.capture(false).join("\n")
        );
        on_screen(tmux, &tmux.capture(false));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the run ended: its exit code, the screen, the history and the cursor.
fn ended(tmux: &Tmux, files: &RunFiles) -> Ended {
    let exit = std::fs::read_to_string(&files.exit)
        .unwrap()
        .trim()
        .to_string();
    // The shell writes the exit file as fleetup's last bytes may still be on their way.
    std::thread::sleep(Duration::from_millis(300));
    let cursor = tmux.cmd(&["display-message", "-p", "-t", "run", "#{cursor_y}"]);
    let cursor_row = String::from_utf8_lossy(&cursor.stdout)
        .trim()
        .parse()
        .expect("tmux cursor_y");
    Ended {
        exit,
        screen: tmux.capture(false),
        history: tmux.capture(true),
        cursor_row,
        raw: std::fs::read(&files.raw).unwrap_or_default(),
    }
}
