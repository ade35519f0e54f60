//! What a host's turn sends in one command instead of three (README: "What runs twice, and
//! why"): the lock taken, the `recheck` probe run again and its output's `cksum` compared
//! with the pre-flight's, and only if both hold, the first step to run. And the lock's
//! release riding in the last step's command, run only when that step succeeded.
//!
//! The host decides, not the controller: nothing touches a host whose lock is someone
//! else's or whose probe prints something else. It says what it decided on the first line
//! of stdout, marked with a nonce of this run so that no output can pass for it; the step's
//! own output follows, unchanged.

use std::borrow::Cow;

use crate::cksum::Cksum;

/// Time for the lock's part of a command that carries it (as `lock::run` gives it alone),
/// beside the step's own timeout.
pub(super) const LOCK_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The per-run mark of the guard's own lines.
pub(super) fn nonce() -> String {
    format!("fleetup-{:016x}", rand::random::<u64>())
}

/// The shell that runs `command` as the login shell would run it, with none of the
/// guard's variables.
fn own_shell(command: &str) -> String {
    format!("\"${{SHELL:-/bin/sh}}\" -c {}", shell_words::quote(command))
}

/// One host's turn, guarded.
pub(super) struct Guard<'g> {
    pub nonce: &'g str,
    /// The script that takes the host's lock (`lock::take_command`), when the playbook has one.
    pub lock: Option<&'g str>,
    /// The `recheck` step's command, and what its output summed to at the pre-flight, as
    /// registered: without its final newlines (as `$(...)` takes them off). Output that a
    /// shell cannot hold as registered (a NUL, a final `\r`) sums otherwise: a changed
    /// host, the safe side.
    pub probe: &'g str,
    pub expect: Cksum,
    /// The first step's command, run only when the lock and the probe hold.
    pub step: Option<&'g str>,
}

impl Guard<'_> {
    pub fn script(&self) -> String {
        let n = shell_words::quote(self.nonce);
        let lock = self
            .lock
            .map(|take| {
                format!(
                    "l=$( ( {take}\n) </dev/null ) || l=\ncase $l in taken) ;; *) printf '%s held\\n' {n}; exit 0 ;; esac\n"
                )
            })
            .unwrap_or_default();
        // The step waits for the controller's go-ahead on stdin, sent once its start is on
        // disk: a controller killed in between leaves a journal that says nothing ran, and
        // nothing did.
        let then = match self.step {
            Some(step) => format!(
                "IFS= read -r g || g=\nif [ \"$g\" != {go} ]; then printf '%s no go-ahead: the step did not run\\n' {n} >&2; exit 1; fi\nexec {}",
                own_shell(step),
                go = shell_words::quote(&go_word(self.nonce)),
            ),
            None => "exit 0".to_string(),
        };
        // Stdin is the controller's, kept open for the go-ahead: the lock and the probe get
        // none, as when they ran alone. The probe's output is held in the shell, not a file:
        // it may carry secrets (the containers' environment), and a guard cut short must
        // leave nothing behind.
        format!(
            r#"{lock}o=$({probe} 2>/dev/null </dev/null)
r=$?
set -- $(printf '%s' "$o" | cksum)
o=
if [ "$r" != 0 ] || [ "$1 $2" != {sum} ]; then printf '%s changed\n' {n}; exit 0; fi
printf '%s stood\n' {n}
{then}
"#,
            probe = own_shell(self.probe),
            sum = shell_words::quote(&self.expect.line()),
        )
    }
}

/// The line that lets a guarded step run (see [`Guard::script`]).
pub(super) fn go(nonce: &str) -> Vec<u8> {
    format!("{}\n", go_word(nonce)).into_bytes()
}

fn go_word(nonce: &str) -> String {
    format!("{nonce} go")
}

/// What the guard decided on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The lock is someone else's (or could not be taken): nothing else ran.
    Held,
    /// The lock is ours; the probe printed something else or failed: no step ran.
    Changed,
    /// The lock is ours, the host is as its pre-flight found it: the step runs.
    Stood,
}

/// The guard's line in stdout, read as it arrives. What a login shell's startup files print
/// before it is output like any other (the step's, when one runs); only a line with this
/// run's nonce is a verdict.
#[derive(Debug)]
pub(super) struct Head {
    mark: String,
    line: Vec<u8>,
    /// Bytes seen before the verdict.
    seen: usize,
    verdict: Option<Result<Verdict, String>>,
}

/// Output before the verdict past this means the guard never ran.
const LONGEST: usize = 64 << 10;

impl Head {
    pub fn new(nonce: &str) -> Head {
        Head {
            mark: format!("{nonce} "),
            line: Vec::new(),
            seen: 0,
            verdict: None,
        }
    }

    /// Takes a chunk of stdout; returns what of it is output (all but the verdict line).
    pub fn feed<'d>(&mut self, data: &'d [u8]) -> Cow<'d, [u8]> {
        if self.verdict.is_some() {
            return Cow::Borrowed(data);
        }
        let mut out = Vec::new();
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            let line = std::mem::take(&mut self.line);
            if let Some(verdict) = self.read(&line) {
                self.verdict = Some(verdict);
                out.extend_from_slice(rest);
                return Cow::Owned(out);
            }
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
        self.line.extend_from_slice(rest);
        self.seen += data.len();
        if self.seen > LONGEST {
            self.verdict = Some(Err(format!(
                "no answer from the guarded command in its first {LONGEST} bytes"
            )));
            out.append(&mut self.line);
        }
        Cow::Owned(out)
    }

    /// The verdict a line carries, if it is the guard's.
    fn read(&self, line: &[u8]) -> Option<Result<Verdict, String>> {
        let word = line.strip_prefix(self.mark.as_bytes())?;
        Some(match word {
            b"held" => Ok(Verdict::Held),
            b"changed" => Ok(Verdict::Changed),
            b"stood" => Ok(Verdict::Stood),
            _ => Err(format!(
                "unexpected answer to the guarded command: {:?}",
                String::from_utf8_lossy(line)
            )),
        })
    }

    /// The verdict, once its line is whole: an error when it is not the guard's.
    pub fn verdict(&self) -> Option<&Result<Verdict, String>> {
        self.verdict.as_ref()
    }
}

/// The last step's command with the lock's release (`lock::release_command`) after it,
/// run only when the step exited 0. The step's exit status and stdout are its own; the
/// release says it ran with a marked last line on stderr.
pub(super) fn riding(nonce: &str, step: &str, release: &str) -> String {
    format!(
        r#"{step}
r=$?
if [ "$r" = 0 ]; then ( {release}
) >/dev/null 2>&1 && printf '%s released\n' {n} >&2; fi
case $r in 129|130|131|134|137|141|143) kill -s "$(kill -l "$r")" $$ ;; esac
exit "$r"
"#,
        step = own_shell(step),
        n = shell_words::quote(nonce),
    )
}

/// Whether the release ran (its marked line ends `stderr`); the line is taken off.
pub(super) fn released(nonce: &str, stderr: &mut Vec<u8>) -> bool {
    let line = format!("{nonce} released\n");
    let ran = stderr.ends_with(line.as_bytes());
    if ran {
        stderr.truncate(stderr.len() - line.len());
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Output};

    const N: &str = "fleetup-00000000deadbeef";

    fn sh(script: &str) -> Output {
        sh_with(script, b"")
    }

    /// `script` run with `stdin` (then EOF) as its standard input.
    fn sh_with(script: &str, stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("SHELL", "/bin/sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The verdict and the step's stdout, as the controller reads them.
    fn read(out: &Output) -> (Verdict, String) {
        let mut head = Head::new(N);
        // Byte by byte: the verdict line may come in any number of chunks.
        let rest: Vec<u8> = out
            .stdout
            .chunks(1)
            .flat_map(|c| head.feed(c).into_owned())
            .collect();
        let verdict = head.verdict().cloned().unwrap().unwrap();
        (verdict, String::from_utf8(rest).unwrap())
    }

    fn guard<'g>(lock: Option<&'g str>, probe: &'g str, then: &str) -> Guard<'g> {
        Guard {
            nonce: N,
            lock,
            probe,
            expect: Cksum::of(then.as_bytes()),
            step: Some("echo \"step sees n=${n:-} t=${t:-}\"; echo \"it's done\"; exit 3"),
        }
    }

    #[test]
    fn the_step_runs_only_when_the_lock_is_taken_and_the_probe_prints_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let me = crate::lock::Owner::me("r1");
        let take = crate::lock::take_command(&dir.path().display().to_string(), &me, None);
        let probe = "printf 'v1\\n\\n'; echo oops >&2";

        // Summed as registered: without its final newlines.
        let out = sh_with(&guard(Some(&take), probe, "v1").script(), &go(N));
        let (verdict, stdout) = read(&out);
        assert_eq!(verdict, Verdict::Stood);
        // The step's own output and exit, none of the guard's variables.
        assert_eq!(stdout, "step sees n= t=\nit's done\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(dir.path().join("lock/owner.json").is_file());

        // Ours already: another run's guard finds it held and runs nothing.
        let other = crate::lock::Owner::me("r2");
        let theirs = crate::lock::take_command(&dir.path().display().to_string(), &other, None);
        let out = sh(&guard(Some(&theirs), probe, "v1").script());
        assert_eq!(read(&out), (Verdict::Held, String::new()));
        assert_eq!(out.status.code(), Some(0));

        // Without a lock: a probe that prints one byte more, or fails, is a changed host.
        for (probe, printed) in [("echo v1.", "v1"), ("echo v1; exit 1", "v1")] {
            let out = sh(&guard(None, probe, printed).script());
            assert_eq!(read(&out), (Verdict::Changed, String::new()), "{probe}");
        }
        // No step: the guard ends with its verdict.
        let only = Guard {
            step: None,
            ..guard(None, "echo v1", "v1")
        };
        let out = sh(&only.script());
        assert_eq!(read(&out), (Verdict::Stood, String::new()));
        assert_eq!(out.status.code(), Some(0));
    }

    #[test]
    fn the_step_waits_for_the_go_ahead_and_runs_nothing_without_it() {
        let marker = tempfile::tempdir().unwrap();
        let ran = marker.path().join("ran");
        let step = format!("touch {}; cat", ran.display());
        let guarded = Guard {
            step: Some(&step),
            ..guard(None, "echo v1", "v1")
        };
        // The controller gone (EOF), or another run's go-ahead: the step does not run.
        for stdin in [&b""[..], b"fleetup-1 go\n", N.as_bytes()] {
            let out = sh_with(&guarded.script(), stdin);
            assert_eq!(read(&out), (Verdict::Stood, String::new()));
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stderr).contains("no go-ahead"));
            assert!(!ran.exists(), "{stdin:?}");
        }
        // With it, the step runs, and its stdin is empty from there on. A probe that reads
        // its stdin gets none: the go-ahead is the step's.
        let guarded = Guard {
            probe: "cat; echo v1",
            ..guarded
        };
        let out = sh_with(&guarded.script(), &go(N));
        assert_eq!(read(&out), (Verdict::Stood, String::new()));
        assert_eq!(out.status.code(), Some(0));
        assert!(ran.exists());
    }

    #[test]
    fn only_the_guards_own_line_is_a_verdict() {
        // Another run's nonce, or a startup file's echo, is output before the verdict.
        let mut head = Head::new(N);
        let out = format!("fleetup-1 stood\nmotd\n{N} stood\nabc");
        assert_eq!(&*head.feed(out.as_bytes()), b"fleetup-1 stood\nmotd\nabc");
        assert_eq!(head.verdict(), Some(&Ok(Verdict::Stood)));
        let mut head = Head::new(N);
        head.feed(format!("{N} sure\n").as_bytes());
        assert!(head.verdict().unwrap().is_err());
        let mut head = Head::new(N);
        assert_eq!(
            &*head.feed(&vec![b'x'; LONGEST + 1]),
            &vec![b'x'; LONGEST + 1][..]
        );
        assert!(head.verdict().unwrap().is_err());
        let mut head = Head::new(N);
        assert_eq!(&*head.feed(format!("{N} sto").as_bytes()), b"");
        assert!(head.verdict().is_none());
        assert_eq!(&*head.feed(b"od\n"), b"");
        assert_eq!(head.verdict(), Some(&Ok(Verdict::Stood)));
        assert_eq!(&*head.feed(b"after\n"), b"after\n");
        assert_ne!(nonce(), nonce());
    }

    #[test]
    fn the_release_rides_only_a_step_that_succeeded_and_changes_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("released");
        let release = format!("touch {}; echo noise", done.display());
        for (step, code) in [("echo out; echo err >&2", 0), ("echo out; exit 4", 4)] {
            let out = sh(&riding(N, step, &release));
            assert_eq!(out.status.code(), Some(code), "{step}");
            assert_eq!(out.stdout, b"out\n");
            let mut stderr = out.stderr.clone();
            assert_eq!(released(N, &mut stderr), code == 0, "{step}");
            assert_eq!(std::fs::remove_file(&done).is_ok(), code == 0);
            assert_eq!(stderr, if code == 0 { &b"err\n"[..] } else { b"" });
        }
        // A step killed by a signal is reported so, not as an exit code.
        let out = sh(&riding(N, "kill -TERM $$", &release));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(15));
        // An exit code above 128 that is no fatal signal's stays an exit code (147 would
        // be SIGSTOP: the wrapper stopped itself until the step's timeout).
        for code in [147, 255] {
            let out = sh(&riding(N, &format!("exit {code}"), &release));
            assert_eq!(out.status.code(), Some(code));
            assert!(
                out.stderr.is_empty(),
                "{:?}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
