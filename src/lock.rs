//! A host's own record of fleetup: a lock, so that two runs (two operators, or a resumed
//! run and a new one) never upgrade it at once, and an audit log, so that the host tells
//! its own story. Both live in the directory the playbook names in `lock.dir`.
//!
//! The lock is a directory made with `mkdir`, atomic on every POSIX filesystem, holding
//! `owner.json` (run id, operator, controller, pid, start). It is taken before the host's
//! pre-flight, so that what the pre-flight sees is what the steps act on, and removed when
//! the host ends, whatever the outcome. A lock whose run is gone is *stale*: it is named to
//! the operator and taken over only when they say so (`--break-lock`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::transport::{Connection, ExecRequest, ExitStatus, OutputStream};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub run_id: String,
    pub operator: String,
    pub controller: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
}

impl Owner {
    /// This process, running `run_id`.
    pub fn me(run_id: &str) -> Owner {
        Owner {
            run_id: run_id.to_string(),
            operator: crate::identity::operator(),
            controller: crate::identity::controller(),
            pid: std::process::id(),
            started: unix_now(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "run {} ({} on {}, pid {}, since {})",
            self.run_id,
            self.operator,
            self.controller,
            self.pid,
            crate::clock::rfc3339_unix(i64::try_from(self.started).unwrap_or(i64::MAX))
        )
    }
}

/// A lock found on a host: its owner file (absent if its taker died between `mkdir` and
/// writing it, or unreadable) and the age of the lock directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub owner: Option<Owner>,
    /// The owner file's text as read, to remove exactly this lock and no later one.
    pub text: String,
    pub age: Duration,
}

/// What to do about a lock found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Our own run's lock (a resumed run): take it over.
    Ours,
    /// Held by a run that may be alive: never taken.
    Live(String),
    /// Its run is gone, for the reason given.
    Stale(String),
}

/// An ownerless lock younger than this is being taken right now.
const TAKING: Duration = Duration::from_secs(60);

/// Judges a lock found on a host. Pure: the caller says which pids of this machine live.
pub fn judge(
    found: &Found,
    me: &Owner,
    stale_after: Duration,
    alive: impl Fn(u32) -> bool,
) -> Verdict {
    let Some(owner) = &found.owner else {
        let what = "a lock without an owner file".to_string();
        return if found.age > TAKING {
            Verdict::Stale(format!(
                "{what}, {} old",
                crate::duration::friendly(round(found.age))
            ))
        } else {
            Verdict::Live(what)
        };
    };
    if owner.run_id == me.run_id {
        return Verdict::Ours;
    }
    let held = owner.describe();
    if owner.controller == me.controller && !alive(owner.pid) {
        return Verdict::Stale(format!("{held}: its process is gone"));
    }
    let age = Duration::from_secs(me.started.saturating_sub(owner.started));
    if age > stale_after {
        return Verdict::Stale(format!(
            "{held}: older than {}",
            crate::duration::friendly(stale_after)
        ));
    }
    Verdict::Live(held)
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The shell that takes the lock in `dir`, first removing the lock whose owner file reads
/// `replace` (a stale lock, or our own from before a resume) if given. Prints `taken`, or
/// `held`, the lock's age in seconds and its owner file. A lock found without its owner
/// file is being taken this very moment (between its `mkdir` and the owner's write): the
/// owner is waited for, up to 2 s, so that the refusal can name it.
pub fn take_command(dir: &str, me: &Owner, replace: Option<&str>) -> String {
    let owner = serde_json::to_string(me).unwrap_or_default();
    let replace = replace
        .map(|text| {
            format!(
                "[ \"$(cat \"$d/lock/owner.json\" 2>/dev/null)\" = {} ] && rm -rf \"$d/lock\"\n",
                shell_words::quote(text.trim_end())
            )
        })
        .unwrap_or_default();
    // A lock that vanishes while we wait for its owner was released: try again.
    format!(
        r#"d={dir}
mkdir -p "$d" || exit 1
{replace}n=0
while :; do
  if mkdir "$d/lock" 2>/dev/null; then
    printf '%s\n' {owner} > "$d/lock/owner.json.new" && mv "$d/lock/owner.json.new" "$d/lock/owner.json" && echo taken
    exit
  fi
  i=0
  while [ -d "$d/lock" ] && [ ! -s "$d/lock/owner.json" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
  [ -d "$d/lock" ] || [ $n -ge 3 ] && break
  n=$((n + 1))
done
echo held $(( $(date +%s) - $(stat -c %Y "$d/lock" 2>/dev/null || date +%s) ))
cat "$d/lock/owner.json" 2>/dev/null
true
"#,
        dir = shell_words::quote(dir),
        owner = shell_words::quote(&owner),
    )
}

/// Reads what [`take_command`] printed: `None` when the lock was taken.
pub fn parse_take(stdout: &str) -> Result<Option<Found>, String> {
    let mut lines = stdout.splitn(2, '\n');
    let first = lines.next().unwrap_or("").trim();
    if first == "taken" {
        return Ok(None);
    }
    let Some(age) = first.strip_prefix("held") else {
        return Err(format!("unexpected answer to the lock command: {first:?}"));
    };
    let age = Duration::from_secs(age.trim().parse().unwrap_or(0));
    let text = lines.next().unwrap_or("").trim_end().to_string();
    let owner = serde_json::from_str(&text).ok();
    Ok(Some(Found { owner, text, age }))
}

/// The shell that appends `audit_line` to the audit log and removes our lock (only ours:
/// a lock broken and taken by someone else meanwhile stays).
pub fn release_command(dir: &str, me: &Owner, audit_line: Option<&str>) -> String {
    let owner = serde_json::to_string(me).unwrap_or_default();
    let audit = audit_line
        .map(|line| {
            format!(
                "printf '%s\\n' {} >> \"$d/audit.log\"\n",
                shell_words::quote(line)
            )
        })
        .unwrap_or_default();
    format!(
        "d={}\n{audit}[ \"$(cat \"$d/lock/owner.json\" 2>/dev/null)\" = {} ] && rm -rf \"$d/lock\"\ntrue\n",
        shell_words::quote(dir),
        shell_words::quote(&owner),
    )
}

/// The host's audit line: when, which run, who, from where, from and to which version,
/// and how it ended. `key=value` words, so that `grep run=ID` finds a run on any host.
pub fn audit_line(me: &Owner, from: &str, to: &str, outcome: &str) -> String {
    let word = |s: &str| {
        let s = s.trim();
        if s.is_empty() {
            "-".to_string()
        } else {
            s.chars()
                .map(|c| {
                    if c.is_whitespace() || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect()
        }
    };
    format!(
        "{} run={} operator={} controller={} from={} to={} outcome={}",
        crate::clock::rfc3339(jiff::Timestamp::now()),
        word(&me.run_id),
        word(&me.operator),
        word(&me.controller),
        word(from),
        word(to),
        word(outcome),
    )
}

/// Runs one of the commands above on a host, with a bounded time and no cancellation
/// (a lock must be released even after the second Ctrl-C). Returns its stdout.
pub async fn run(conn: &impl Connection, command: &str) -> Result<String, String> {
    let request = ExecRequest::new(command).timeout(Duration::from_secs(30));
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut sink = |stream: OutputStream, data: &[u8]| match stream {
        OutputStream::Stdout => stdout.extend_from_slice(data),
        OutputStream::Stderr => stderr.extend_from_slice(data),
    };
    match conn.exec(&request, &mut sink).await {
        Ok(ExitStatus::Code(0)) => Ok(String::from_utf8_lossy(&stdout).into_owned()),
        Ok(status) => Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(run: &str, controller: &str, pid: u32, started: u64) -> Owner {
        Owner {
            run_id: run.into(),
            operator: "alice".into(),
            controller: controller.into(),
            pid,
            started,
        }
    }

    fn found(o: Option<Owner>, age: u64) -> Found {
        Found {
            text: o
                .as_ref()
                .map(|o| serde_json::to_string(o).unwrap())
                .unwrap_or_default(),
            owner: o,
            age: Duration::from_secs(age),
        }
    }

    #[test]
    fn verdicts() {
        let me = owner("r2", "ctl", 10, 100_000);
        let six_hours = Duration::from_secs(6 * 3600);
        let alive = |pid: u32| pid == 42;
        let judge = |f: &Found| judge(f, &me, six_hours, alive);
        assert_eq!(
            judge(&found(Some(owner("r2", "ctl", 9, 1)), 5)),
            Verdict::Ours
        );
        // Same controller: its pid decides.
        assert!(
            matches!(judge(&found(Some(owner("r1", "ctl", 42, 99_000)), 5)), Verdict::Live(m) if m.starts_with("run r1 (alice on ctl, pid 42"))
        );
        assert!(
            matches!(judge(&found(Some(owner("r1", "ctl", 43, 99_000)), 5)), Verdict::Stale(m) if m.ends_with("its process is gone"))
        );
        // Another controller: only its age tells.
        assert!(matches!(
            judge(&found(Some(owner("r1", "other", 43, 99_000)), 5)),
            Verdict::Live(_)
        ));
        assert!(
            matches!(judge(&found(Some(owner("r1", "other", 43, 100_000 - 7 * 3600)), 5)), Verdict::Stale(m) if m.ends_with("older than 6h"))
        );
        // No owner file: being taken, unless it has been so for long.
        assert!(matches!(judge(&found(None, 5)), Verdict::Live(_)));
        assert!(matches!(judge(&found(None, 600)), Verdict::Stale(m) if m.contains("10m old")));
    }

    #[test]
    fn take_answers() {
        assert_eq!(parse_take("taken\n"), Ok(None));
        let o = owner("r1", "ctl", 42, 7);
        let text = serde_json::to_string(&o).unwrap();
        let got = parse_take(&format!("held 12\n{text}\n")).unwrap().unwrap();
        assert_eq!(got.owner, Some(o));
        assert_eq!(got.text, text);
        assert_eq!(got.age, Duration::from_secs(12));
        let garbage = parse_take("held 3\nnot json").unwrap().unwrap();
        assert_eq!(garbage.owner, None);
        assert!(parse_take("permission denied").is_err());
    }

    #[test]
    fn commands_run_in_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let lock_dir = dir.path().join("it's locks").display().to_string();
        let sh = |cmd: String| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let me = owner("r1", "ctl", 1, 2);
        let other = owner("r2", "ctl", 3, 4);
        assert_eq!(sh(take_command(&lock_dir, &me, None)), "taken\n");
        let held = parse_take(&sh(take_command(&lock_dir, &other, None)))
            .unwrap()
            .unwrap();
        assert_eq!(held.owner, Some(me.clone()));
        // Releasing someone else's lock leaves it; the audit line is appended anyway.
        sh(release_command(&lock_dir, &other, Some("line one")));
        assert!(std::path::Path::new(&lock_dir).join("lock").is_dir());
        // Taking over exactly the lock that was judged (a stale one).
        assert_eq!(
            sh(take_command(&lock_dir, &other, Some(&held.text))),
            "taken\n"
        );
        sh(release_command(&lock_dir, &other, Some("line 'two'; $(x)")));
        assert!(!std::path::Path::new(&lock_dir).join("lock").exists());
        let audit =
            std::fs::read_to_string(std::path::Path::new(&lock_dir).join("audit.log")).unwrap();
        assert_eq!(audit, "line one\nline 'two'; $(x)\n");

        // Caught between another taker's mkdir and its owner's write: the owner is waited for.
        let lock = std::path::Path::new(&lock_dir).join("lock");
        std::fs::create_dir(&lock).unwrap();
        let late = serde_json::to_string(&other).unwrap();
        let writer = std::thread::spawn({
            let owner = lock.join("owner.json");
            move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::fs::write(owner, late + "\n").unwrap();
            }
        });
        let held = parse_take(&sh(take_command(&lock_dir, &me, None)))
            .unwrap()
            .unwrap();
        writer.join().unwrap();
        assert_eq!(held.owner, Some(other));
    }

    #[test]
    fn audit_lines_are_words() {
        let line = audit_line(&owner("r1", "ctl", 1, 2), "v4.65.0", "", "rolled_back");
        assert!(
            line.ends_with(
                " run=r1 operator=alice controller=ctl from=v4.65.0 to=- outcome=rolled_back"
            ),
            "{line}"
        );
    }
}
