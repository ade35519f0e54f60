//! `fleetup exec` output for people: each host's whole output as one block under a header,
//! printed when the host is done, so that the outputs of hosts running at once never
//! interleave.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use crate::events::{Event, Outcome, Stamped};
use crate::ui::text::{clean, clean_block, duration, plural};
use crate::ui::View;

/// The text view of `fleetup exec`: a block per host as each host ends, then one line of
/// counts. The command's output arrives in `StepOutput` events.
pub struct ExecView {
    out: Box<dyn Write + Send>,
    pending: HashMap<String, Pending>,
    outcomes: Vec<Outcome>,
}

#[derive(Default)]
struct Pending {
    stdout: String,
    stderr: String,
    rc: Option<i64>,
}

impl ExecView {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        ExecView {
            out,
            pending: HashMap::new(),
            outcomes: Vec::new(),
        }
    }
}

impl View for ExecView {
    fn event(&mut self, e: &Stamped) {
        match &e.event {
            Event::StepOutput {
                host,
                stdout,
                stderr,
                ..
            } => {
                let p = self.pending.entry(host.clone()).or_default();
                p.stdout.clone_from(stdout);
                p.stderr.clone_from(stderr);
            }
            Event::StepFinished { host, rc, .. } => {
                self.pending.entry(host.clone()).or_default().rc = *rc;
            }
            Event::HostFinished {
                host,
                outcome,
                duration,
                message,
                ..
            } => {
                let p = self.pending.remove(host).unwrap_or_default();
                let block = host_block(&HostOutput {
                    host,
                    rc: p.rc,
                    duration: *duration,
                    stdout: p.stdout.as_bytes(),
                    stderr: p.stderr.as_bytes(),
                    error: message
                        .as_deref()
                        .filter(|_| p.rc.is_none() || *outcome != Outcome::Failed),
                });
                let _ = self.out.write_all(block.as_bytes());
                let _ = self.out.flush();
                self.outcomes.push(*outcome);
            }
            Event::RunFinished { .. } => {
                let count = |o: Outcome| self.outcomes.iter().filter(|x| **x == o).count();
                let _ = writeln!(
                    self.out,
                    "{} host{}: {} ok, {} failed, {} unreachable",
                    self.outcomes.len(),
                    plural(self.outcomes.len()),
                    count(Outcome::Ok),
                    count(Outcome::Failed),
                    count(Outcome::Unreachable)
                );
                let _ = self.out.flush();
            }
            _ => {}
        }
    }
}

/// What one host did with the ad-hoc command.
#[derive(Debug, Clone, Copy)]
pub struct HostOutput<'a> {
    pub host: &'a str,
    /// The command's exit code, when it ran to its end.
    pub rc: Option<i64>,
    pub duration: Duration,
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    /// Why there is no exit code (unreachable, timed out, killed by a signal...).
    pub error: Option<&'a str>,
}

/// The block for one host: `prod-03 | rc=0 | 0.2s`, then its stdout, then its stderr under
/// a `-- stderr --` line. Always ends with a newline, so blocks can be printed back to back.
pub fn host_block(o: &HostOutput<'_>) -> String {
    let mut head = vec![clean(o.host).into_owned()];
    if let Some(rc) = o.rc {
        head.push(format!("rc={rc}"));
    }
    if let Some(e) = o.error {
        head.push(format!("error: {}", clean(e)));
    }
    if o.rc.is_none() && o.error.is_none() {
        head.push("no exit code".into());
    }
    head.push(duration(o.duration));
    let mut out = head.join(" | ");
    out.push('\n');
    push_stream(&mut out, o.stdout);
    if !o.stderr.is_empty() {
        out.push_str("-- stderr --\n");
        push_stream(&mut out, o.stderr);
    }
    out
}

fn push_stream(out: &mut String, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // Hosts may send anything: invalid UTF-8 is shown, not refused.
    let text = String::from_utf8_lossy(bytes);
    out.push_str(&clean_block(&text));
    if !out.ends_with('\n') {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output<'a>(stdout: &'a [u8], stderr: &'a [u8]) -> HostOutput<'a> {
        HostOutput {
            host: "prod-03",
            rc: Some(0),
            duration: Duration::from_millis(200),
            stdout,
            stderr,
            error: None,
        }
    }

    #[test]
    fn header_then_the_whole_output() {
        let o = output(
            b"CONTAINER ID   IMAGE\nabc123   simplelogin/app:v4.66.1\n",
            b"",
        );
        assert_eq!(
            host_block(&o),
            "prod-03 | rc=0 | 0.2s\nCONTAINER ID   IMAGE\nabc123   simplelogin/app:v4.66.1\n"
        );
    }

    #[test]
    fn stderr_follows_under_its_own_line_and_the_block_ends_with_a_newline() {
        let mut o = output(b"partial", b"warning: low disk");
        o.rc = Some(1);
        assert_eq!(
            host_block(&o),
            "prod-03 | rc=1 | 0.2s\npartial\n-- stderr --\nwarning: low disk\n"
        );
    }

    #[test]
    fn errors_without_exit_code() {
        let o = HostOutput {
            host: "prod-09\x1b[2J",
            rc: None,
            duration: Duration::from_secs(10),
            stdout: b"",
            stderr: b"",
            error: Some("connection refused"),
        };
        assert_eq!(
            host_block(&o),
            "prod-09\\x1b[2J | error: connection refused | 10.0s\n"
        );
    }

    #[test]
    fn escapes_and_invalid_utf8_are_neutralised() {
        let o = output(b"ok\x1b]0;owned\x07\n\xff\xfe\n", b"");
        assert_eq!(
            host_block(&o),
            "prod-03 | rc=0 | 0.2s\nok\\x1b]0;owned\\x07\n\u{fffd}\u{fffd}\n"
        );
    }

    #[test]
    fn the_counts_of_one_host_are_singular() {
        let out = crate::ui::sample_run::Capture::default();
        let mut view = ExecView::new(Box::new(out.clone()));
        let done = |event| crate::ui::sample_run::at(1, event);
        view.event(&done(Event::HostFinished {
            host: "prod-03".into(),
            outcome: Outcome::Ok,
            changed: false,
            changed_steps: 0,
            duration: Duration::from_millis(200),
            failed_step: None,
            message: None,
            log: "prod-03.log".into(),
        }));
        view.event(&done(Event::RunFinished {
            duration: Duration::from_secs(1),
            untouched: vec![],
            exit_code: 0,
        }));
        assert!(
            out.text()
                .ends_with("\n1 host: 1 ok, 0 failed, 0 unreachable\n"),
            "{}",
            out.text()
        );
    }
}
