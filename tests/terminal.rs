//! The terminal view in a real terminal: `fleetup run` inside tmux on 50 hosts at once,
//! the screen captured while it runs and after. Unit tests of `src/ui/terminal.rs` prove what
//! the view draws on a fake terminal; this proves what an operator's terminal shows (live
//! lines that fit the width and the window, no stale copies in the scrollback, the recap).
//!
//! Skipped, with a message, when tmux is not installed. The final screen is kept in
//! `tests/snapshots/terminal-50-hosts.txt`: `FLEETUP_UPDATE_SNAPSHOTS=1 cargo test --test
//! terminal` rewrites it; normal runs compare its structure (durations differ run to run).
//! `FLEETUP_DEBUG_TERMINAL=DIR` keeps each run's raw terminal bytes and scrollback in DIR.

mod fleet;
#[path = "terminal/run.rs"]
mod run;
mod tmux;

use std::path::Path;

use run::{run_playbook_in_tmux, Ended};

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");
const COLS: usize = 120;
const ROWS: usize = 40;
const HOSTS: usize = 50;
const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/snapshots/terminal-50-hosts.txt"
);

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn is_live_host_line(l: &str) -> bool {
    l.starts_with(SPINNER)
}

/// `⠸ p-07  [2/3] migrate the database  1s`: the host, its step, and its elapsed time, all
/// on one row (the step's name shortened to fit, never the time pushed to the next row).
fn whole_live_line(l: &str) -> bool {
    let l = l.trim_end();
    let mut parts = l.splitn(3, ' ');
    let (Some(_spinner), Some(host), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some((step, time)) = rest.trim_start().rsplit_once("  ") else {
        return false;
    };
    let time_ok = time
        .strip_suffix('s')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    host.starts_with("p-")
        && time_ok
        && (step == "connecting" || (step.starts_with('[') && step.contains("/3] ")))
}

/// The rows fleetup's terminal view draws while it runs.
fn known_row(l: &str) -> bool {
    let t = l.trim_end();
    t.is_empty()
        || t.starts_with("terminal on production · ")
        || (is_live_host_line(t) && whole_live_line(t))
        || is_more_line(t)
        || is_overall_row(t)
        || t.starts_with("── batch ")
        || t.starts_with("✓ p-")
}

/// `[████░░░░] 12/50 hosts · 3s · ETA ~8s`
fn is_overall_row(l: &str) -> bool {
    l.starts_with('[') && l.contains(" hosts · ")
}

fn is_more_line(l: &str) -> bool {
    l.trim_start().starts_with("… and ") && l.ends_with("more running")
}

/// Durations (`0.3s`, `12s`, `1m02s`) replaced by `<T>`; everything else kept.
fn mask(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_alphanumeric();
        if boundary && chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            // 1m02s
            if chars.get(j) == Some(&'m') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                let mut k = j + 1;
                while k < chars.len() && chars[k].is_ascii_digit() {
                    k += 1;
                }
                if chars.get(k) == Some(&'s') {
                    j = k;
                }
            }
            let ends = |e: usize| e >= chars.len() || !chars[e].is_alphanumeric();
            if chars.get(j) == Some(&'s') && ends(j + 1) {
                out.push_str("<T>");
                i = j + 1;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The recap as the screen shows it: from its `RECAP` line (or the top of the screen, if
/// the table scrolled it away) to the last non-empty line, durations masked and the column
/// alignment that depends on their widths squeezed.
fn recap_structure(screen: &[String]) -> Vec<String> {
    let end = screen
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    let start = screen[..end]
        .iter()
        .rposition(|l| l == "RECAP")
        .unwrap_or_else(|| {
            // The first recap row on the screen.
            screen[..end]
                .iter()
                .position(|l| l.starts_with("p-"))
                .unwrap_or(end)
        });
    screen[start..end]
        .iter()
        .map(|l| mask(l).split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

const PLAYBOOK: &str = "\
name: terminal
hosts: production
steps:
  - name: stop the app
    shell: sleep 0.3
  - name: migrate the database
    shell: sleep 0.3
  - name: start the new version of SimpleLogin with docker compose up -d, then wait until /health answers and the running image is the new one
    shell: sleep 0.3
";

/// `fleetup run` of [`PLAYBOOK`] on `hosts` hosts (the first a canary) at forks `hosts`,
/// inside a detached COLS x ROWS tmux session; `on_screen` sees the visible rows every
/// 100 ms while it runs. None when tmux is missing (the test is then skipped, said loudly).
fn run_in_tmux(hosts: usize, mut on_screen: impl FnMut(&[String])) -> Option<Ended> {
    run_playbook_in_tmux(hosts, PLAYBOOK, |_, screen| on_screen(screen))
}

#[test]
fn fifty_hosts_at_once_fit_a_120_by_40_terminal() {
    let mut frames = Frames::default();
    let Some(end) = run_in_tmux(HOSTS, |screen| frames.judge(screen)) else {
        return;
    };
    let shown = end.screen.join("\n");
    assert_eq!(end.exit, "0", "exit code; screen:\n{shown}");
    frames.assert_saw_the_run();
    assert_recap_of_every_host(&end);
    assert_matches_snapshot(&end.screen);
}

/// What the frames captured while the run went on showed: each is judged as it comes
/// (every row a whole line, the live area inside the window, one header).
#[derive(Default)]
struct Frames {
    captures: usize,
    saw_header: bool,
    most_live: usize,
    saw_more: bool,
    shown_twice: Vec<String>,
}

impl Frames {
    fn judge(&mut self, screen: &[String]) {
        // tmux may show a frame half drawn (a frame is several KiB, written to the pty in
        // pieces): judge only whole frames, which end with the overall bar.
        let last = screen.iter().rposition(|l| !l.trim().is_empty());
        if !last.is_some_and(|i| is_overall_row(&screen[i])) {
            return;
        }
        self.captures += 1;
        let shown = || screen.join("\n");
        // Every row is one whole line of a known kind: a line too wide for the window
        // would wrap, and its second row would be none of these.
        for l in screen {
            assert!(
                l.chars().count() <= COLS && known_row(l),
                "a row that is no whole line (a line wider than {COLS} columns wrapped?):\n{l}\nscreen:\n{}",
                shown()
            );
        }
        assert!(screen.len() <= ROWS, "{}", shown());
        let headers: Vec<_> = screen
            .iter()
            .filter(|l| l.starts_with("terminal on production · "))
            .collect();
        assert!(headers.len() <= 1, "the header drawn twice:\n{}", shown());
        if headers.first().is_some_and(|h| h.contains("· batch ")) {
            self.saw_header = true;
        }
        let live: Vec<&String> = screen.iter().filter(|l| is_live_host_line(l)).collect();
        let more = screen.iter().filter(|l| is_more_line(l)).count();
        self.saw_more |= more > 0;
        // Header, live lines, `… and N more`, overall bar: all inside the window.
        assert!(
            live.len() + more + 2 <= ROWS,
            "{} live lines in a {ROWS}-row window:\n{}",
            live.len(),
            shown()
        );
        self.judge_hosts(&live, shown);
    }

    /// No host on two live lines in two whole frames in a row.
    fn judge_hosts(&mut self, live: &[&String], shown: impl Fn() -> String) {
        let mut hosts: Vec<&str> = live
            .iter()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        let mut twice: Vec<String> = hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| hosts[..*i].contains(h))
            .map(|(_, h)| h.to_string())
            .collect();
        twice.sort_unstable();
        // A frame redrawn while tmux captured it can show the old first line beside the
        // new one: a host shown twice is a defect only when the next whole frame shows it
        // twice again (a stale line stays; a torn frame is gone 50 ms later).
        let before = std::mem::take(&mut self.shown_twice);
        assert!(
            twice.is_empty() || !twice.iter().any(|h| before.contains(h)),
            "a host shown twice in two frames in a row ({twice:?}):\n{}",
            shown()
        );
        self.shown_twice = twice;
        hosts.sort_unstable();
        hosts.dedup();
        self.most_live = self.most_live.max(hosts.len());
    }

    fn assert_saw_the_run(&self) {
        let (captures, most_live, saw_more) = (self.captures, self.most_live, self.saw_more);
        assert!(
            captures >= 3,
            "only {captures} whole frames captured while it ran"
        );
        assert!(
            self.saw_header,
            "no header with the batch was seen while running"
        );
        assert!(
            most_live >= 20 && saw_more,
            "the 49 hosts of batch 2 were never seen in flight at once (at most {most_live} live lines, `… and N more` seen: {saw_more})"
        );
    }
}

/// At the end: the recap, all 50 hosts counted, no live line left anywhere, and every
/// host finished exactly once above the live area.
fn assert_recap_of_every_host(end: &Ended) {
    let (screen, history) = (&end.screen, &end.history);
    let shown = screen.join("\n");
    let counts = screen
        .iter()
        .find(|l| l.contains("(exit code 0)"))
        .unwrap_or_else(|| panic!("no totals line on the final screen:\n{shown}"));
    assert_eq!(mask(counts), "50 ok in <T> (exit code 0)", "{shown}");
    for l in screen.iter().chain(history) {
        assert!(
            !is_live_host_line(l) && !is_more_line(l),
            "a live line left behind: {l}\n{}",
            history.join("\n")
        );
    }
    let recap = history
        .iter()
        .position(|l| l == "RECAP")
        .unwrap_or_else(|| panic!("no RECAP:\n{}", history.join("\n")));
    assert!(
        history[recap + 1].starts_with("HOST  OUTCOME  CHANGED  TIME  FAILED STEP"),
        "{}",
        history[recap + 1]
    );
    let rows: Vec<&String> = history[recap + 2..]
        .iter()
        .take_while(|l| l.starts_with("p-"))
        .collect();
    assert_eq!(rows.len(), HOSTS, "{}", history[recap..].join("\n"));
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[..3],
            [format!("p-{:02}", i + 1).as_str(), "ok", "3"],
            "{row}"
        );
    }
    for i in 1..=HOSTS {
        let host = format!("p-{i:02}");
        let n = history
            .iter()
            .filter(|l| l.starts_with(&format!("✓ {host}  ok  3 changed")))
            .count();
        assert_eq!(n, 1, "{host}'s finished line:\n{}", history.join("\n"));
    }
}

/// The final screen's recap as [`SNAPSHOT`] keeps it (`FLEETUP_UPDATE_SNAPSHOTS=1`
/// rewrites it).
fn assert_matches_snapshot(screen: &[String]) {
    let shown = screen.join("\n");
    if std::env::var_os("FLEETUP_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(Path::new(SNAPSHOT).parent().unwrap()).unwrap();
        std::fs::write(SNAPSHOT, format!("{shown}\n")).unwrap();
        println!("wrote {SNAPSHOT}");
    } else {
        let kept = std::fs::read_to_string(SNAPSHOT).unwrap_or_else(|e| {
            panic!("{SNAPSHOT}: {e}; write it with FLEETUP_UPDATE_SNAPSHOTS=1")
        });
        let kept: Vec<String> = kept.lines().map(str::to_string).collect();
        let (now, then) = (recap_structure(screen), recap_structure(&kept));
        // How far up the recap's rows reach depends on the blank rows left at the bottom
        // (see `nothing_is_drawn_after_the_recap`): compare what both screens show.
        let common = now.len().min(then.len());
        assert!(common >= 10, "too little of the recap on screen:\n{shown}");
        assert_eq!(
            now[now.len() - common..],
            then[then.len() - common..],
            "the final screen differs from {SNAPSHOT} (FLEETUP_UPDATE_SNAPSHOTS=1 rewrites it)\nscreen:\n{shown}"
        );
    }
}

/// The recap is the last thing on the screen: after its last line, fleetup draws nothing
/// (showing the cursor again is all), and the cursor waits on the row below it.
#[test]
fn nothing_is_drawn_after_the_recap() {
    let Some(end) = run_in_tmux(12, |_| {}) else {
        return;
    };
    assert_eq!(end.exit, "0");
    let marker = b"(exit code 0)";
    let at = end
        .raw
        .windows(marker.len())
        .rposition(|w| w == marker)
        .expect("the totals line in the raw output");
    let after = String::from_utf8_lossy(&end.raw[at + marker.len()..]).into_owned();
    let after = after.trim_start_matches("\r\n").replace("\x1b[?25h", "");
    assert!(
        after.is_empty(),
        "drawn after the recap's last line: {:?}",
        after.chars().take(600).collect::<String>()
    );
    let last = end
        .screen
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .expect("a non-empty screen");
    assert_eq!(
        end.cursor_row,
        last + 1,
        "the cursor is on the row below the recap\n{}",
        end.screen.join("\n")
    );
}

/// A `prompt` pause after the canary, on a real terminal: the run waits for the operator,
/// Enter goes on, `stop` halts before the next batch, Ctrl-C ends it at once.
#[test]
fn a_prompt_pause_waits_for_the_operator() {
    let playbook = PLAYBOOK.replace(
        "steps:",
        "rollout:\n  pause_after_canary: prompt\nverify:\n  - name: still up\n    shell: \"true\"\nsteps:",
    );
    for (answer, exit, ended) in [
        ("", "0", "3 ok"),
        (
            "stop",
            "99",
            "HALTED after batch 1: the operator stopped the run at a pause",
        ),
        // Ctrl-C while the prompt waits: fleetup ends at once, not when a line is read.
        (
            "C-c",
            "99",
            "halted after batch 1: interrupted by the operator",
        ),
    ] {
        let mut typed = false;
        let mut waited = 0;
        let Some(run) = run_playbook_in_tmux(3, &playbook, |tmux, screen| {
            if typed || !screen.iter().any(|l| l.contains("press Enter to go on")) {
                return;
            }
            // It keeps waiting until the operator answers.
            waited += 1;
            if waited < 10 {
                return;
            }
            assert!(
                !screen.iter().any(|l| l.contains("batch 2 of 2")),
                "the next batch started before the answer:\n{}",
                screen.join("\n")
            );
            match answer {
                "C-c" => {
                    tmux.cmd(&["send-keys", "-t", "run", "C-c"]);
                }
                text => {
                    if !text.is_empty() {
                        tmux.cmd(&["send-keys", "-t", "run", "-l", text]);
                    }
                    tmux.cmd(&["send-keys", "-t", "run", "Enter"]);
                }
            }
            typed = true;
        }) else {
            return;
        };
        let history = run.history.join("\n");
        assert!(typed, "no prompt was shown:\n{history}");
        assert_eq!(run.exit, exit, "answer {answer:?}:\n{history}");
        assert!(history.contains(ended), "answer {answer:?}:\n{history}");
        // The live lines were hidden while the operator typed: no status line was left in
        // the scrollback.
        assert!(
            !history.lines().any(|l| l.contains("· PAUSED")),
            "a stale status line:\n{history}"
        );
    }
}

/// A host that prints escape sequences (retitle the window, clear the screen, move the
/// cursor, hide text): on a real terminal they show as text, and none of them is sent.
#[test]
fn escape_sequences_from_hosts_never_reach_the_terminal() {
    let playbook = PLAYBOOK.replace(
        "    shell: sleep 0.3\n  - name: migrate",
        "    shell: |\n      printf 'out \\033]2;PWNED\\007\\033[2J\\033[H\\n'\n      printf 'bad \\033]0;PWNED\\007\\033[2J\\033[8mhidden\\r\\n' >&2\n      exit 1\n  - name: migrate",
    );
    let Some(end) = run_playbook_in_tmux(2, &playbook, |_, _| {}) else {
        return;
    };
    assert_eq!(end.exit, "2");
    let raw = String::from_utf8_lossy(&end.raw);
    for sequence in ["\x1b]0;PWNED", "\x1b]2;PWNED", "\x1b[2J", "\x1b[8m", "\x07"] {
        assert!(
            !raw.contains(sequence),
            "{sequence:?} reached the terminal:\n{raw:?}"
        );
    }
    let history = end.history.join("\n");
    assert!(
        history.contains("bad \\x1b]0;PWNED\\x07\\x1b[2J\\x1b[8mhidden"),
        "the host's words, made visible:\n{history}"
    );
}

#[test]
fn masking() {
    assert_eq!(
        mask("✓ p-07  ok  3 changed  0.9s · 12s · 1m02s v4.66.1 p-10"),
        "✓ p-07  ok  3 changed  <T> · <T> · <T> v4.66.1 p-10"
    );
}
