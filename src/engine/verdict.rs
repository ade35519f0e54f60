//! The engine's decisions, without I/O: what one attempt of a step comes to
//! ([`conclude`]), and what a host's failure calls for ([`recovery`]).

use crate::events::{Outcome, StepStatus};
use crate::playbook::{Condition, Step};
use crate::registered::Registered;
use crate::template::{Rendering, Templates};
use crate::transport::ExitStatus;
use crate::vars::{Lookup, Over};

/// How one step went.
#[derive(Debug, Clone)]
pub(super) struct StepRun {
    pub status: StepStatus,
    pub registered: Registered,
    /// The exit code, when the command ran to its end.
    pub rc: Option<i64>,
    pub message: Option<String>,
    pub stderr_tail: Vec<String>,
}

impl StepRun {
    /// A step that ended its host's steps: it failed, or its host was lost.
    pub fn ends_host(&self) -> bool {
        matches!(self.status, StepStatus::Failed | StepStatus::Unreachable)
    }

    /// The host's failure in its own words: the step's message, else its last stderr line.
    pub fn reason(&self) -> Option<String> {
        self.message
            .clone()
            .or_else(|| self.stderr_tail.last().cloned())
    }

    /// What the step registered, as templates read it, moved out: nothing else reads it.
    pub fn take_registered(&mut self) -> serde_json::Value {
        std::mem::take(&mut self.registered).into_value()
    }

    /// A step whose `when` is false.
    pub fn skipped() -> StepRun {
        StepRun {
            status: StepStatus::Skipped,
            registered: Registered {
                skipped: true,
                ..Default::default()
            },
            rc: None,
            message: None,
            stderr_tail: vec![],
        }
    }

    /// A step that could not start (a template that does not render, say), or whose
    /// command never ended with a status (`unreachable`: the connection was lost).
    pub fn not_run(status: StepStatus, attempts: u32, message: String, tail: Vec<String>) -> Self {
        StepRun {
            status,
            registered: Registered {
                failed: true,
                attempts,
                ..Default::default()
            },
            rc: None,
            message: Some(message),
            stderr_tail: tail,
        }
    }
}

/// A step as its conditions see it: the templates, the step, and the variables in scope.
pub(super) struct StepScope<'s> {
    pub templates: &'s Templates,
    pub step: &'s Step,
    pub vars: &'s dyn Lookup,
}

/// One attempt of a step's command that ran to an exit status.
pub(super) struct Attempt<'o> {
    pub number: u32,
    pub exit: &'o ExitStatus,
    pub stdout: &'o [u8],
    pub stderr: &'o [u8],
    pub stderr_tail: Vec<String>,
}

/// What one attempt comes to.
#[derive(Debug)]
pub(super) enum Conclusion {
    /// `until` does not hold yet and attempts remain: wait the step's delay, run it again.
    Retry,
    Done(StepRun),
}

/// Concludes an attempt: `failed_when` (else the exit code), `changed_when` (else
/// changed, as in Ansible), `until` with the step's retries. `stopped`: the operator ended
/// the step's commands, so no attempt follows.
pub(super) fn conclude(scope: &StepScope<'_>, attempt: Attempt<'_>, stopped: bool) -> Conclusion {
    let step = scope.step;
    let rc = match attempt.exit {
        ExitStatus::Code(c) => i64::from(*c),
        ExitStatus::Signal(_) => -1,
    };
    let mut registered = registered_result(&attempt, rc, step.keeps_lines);
    let (failed, message) = match judge(scope, &mut registered) {
        Ok(failed) => (failed, None),
        Err(e) => (true, Some(e)),
    };
    let satisfied = match (&step.until, message.is_some()) {
        (_, true) => true,
        (None, _) => !failed,
        (Some(until), _) => {
            let vars = condition_scope(scope, &registered);
            evaluate(&mut scope.templates.with(&vars), until).unwrap_or(false)
        }
    };
    let last = attempt.number >= step.retries.saturating_add(1);
    if !(satisfied || last || stopped) {
        return Conclusion::Retry;
    }
    let failed = failed || !satisfied;
    registered.failed = failed;
    let message = message.or_else(|| {
        failed
            .then(|| failure_words(step, attempt.exit, satisfied, attempt.number))
            .flatten()
    });
    let status = if failed {
        StepStatus::Failed
    } else if registered.changed {
        StepStatus::Changed
    } else {
        StepStatus::Ok
    };
    Conclusion::Done(StepRun {
        status,
        registered,
        rc: matches!(attempt.exit, ExitStatus::Code(_)).then_some(rc),
        message,
        stderr_tail: attempt.stderr_tail,
    })
}

/// Why a step that ran failed, when its rc and stderr do not already say it: a plain
/// non-zero exit has no message, so that the views show the host's own last words.
fn failure_words(step: &Step, exit: &ExitStatus, satisfied: bool, attempts: u32) -> Option<String> {
    match exit {
        ExitStatus::Signal(s) => Some(format!("killed by signal {s}")),
        _ if step.until.is_some() && !satisfied => {
            Some(format!("`until` still false after {attempts} attempts"))
        }
        _ if step.failed_when.is_some() => Some("failed_when is true".to_string()),
        _ => None,
    }
}

/// Decides `failed` (by `failed_when`, else the exit code) and `changed` (by
/// `changed_when`, else true: a command is assumed to change the host, as in Ansible).
fn judge(scope: &StepScope<'_>, r: &mut Registered) -> Result<bool, String> {
    const CHANGED: Condition = Condition::Always(true);
    let by_exit = Condition::Always(r.rc != 0);
    let failed_when = scope.step.failed_when.as_ref().unwrap_or(&by_exit);
    let changed_when = scope.step.changed_when.as_ref().unwrap_or(&CHANGED);
    let (failed, changed) = match (failed_when, changed_when) {
        // Constant conditions (a pre-flight's `changed_when: false`) need no scope: it holds
        // a copy of the result, whose output can be a host's whole `docker inspect`.
        (Condition::Always(failed), Condition::Always(changed)) => (*failed, *changed),
        _ => {
            let vars = condition_scope(scope, r);
            let mut rendering = scope.templates.with(&vars);
            let failed =
                evaluate(&mut rendering, failed_when).map_err(|e| format!("failed_when: {e}"))?;
            let changed =
                evaluate(&mut rendering, changed_when).map_err(|e| format!("changed_when: {e}"))?;
            (failed, changed)
        }
    };
    r.changed = changed && !failed;
    Ok(failed)
}

/// The variables a step's own conditions see, with `r` as its result.
fn condition_scope<'s>(scope: &StepScope<'s>, r: &Registered) -> Over<'s> {
    scope.step.result_scope(scope.vars, r.to_value())
}

pub(super) fn evaluate(rendering: &mut Rendering<'_>, cond: &Condition) -> Result<bool, String> {
    match cond {
        Condition::Always(b) => Ok(*b),
        Condition::Expr(e) => rendering.eval(e).map_err(|e| e.message),
    }
}

/// What `register` records, as Ansible's shell module: output without its final newline;
/// with its line lists where the step keeps them.
fn registered_result(attempt: &Attempt<'_>, rc: i64, lines: bool) -> Registered {
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    };
    Registered {
        stdout: text(attempt.stdout),
        stderr: text(attempt.stderr),
        rc,
        lines,
        attempts: attempt.number,
        ..Default::default()
    }
}

/// What a host's failed step calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
    /// Before the point of no return nothing changed: the host just ends so.
    End(Outcome),
    /// Past it, the rollback brings the host back to its old version.
    RollBack,
    /// Past it with the connection lost, the interrupted step may or may not have
    /// happened: reach the host again, then roll back.
    ReconnectThenRollBack,
    /// The operator abandoned the run (third Ctrl-C): the host is left as it is, down.
    Abandon,
}

/// The recovery of a host whose step ended `status`.
pub(super) fn recovery(status: StepStatus, past_no_return: bool, abandoned: bool) -> Recovery {
    match (past_no_return, status) {
        (true, _) if abandoned => Recovery::Abandon,
        (true, StepStatus::Unreachable) => Recovery::ReconnectThenRollBack,
        (true, _) => Recovery::RollBack,
        (false, StepStatus::Unreachable) => Recovery::End(Outcome::Unreachable),
        (false, _) => Recovery::End(Outcome::Failed),
    }
}

/// How a host whose connection could not be opened again ends.
pub(super) fn lost_for_good(abandoned: bool) -> Outcome {
    if abandoned {
        Outcome::Abandoned
    } else {
        Outcome::UnreachableMidUpgrade
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::playbook::Playbook;
    use crate::vars::Vars;

    /// The first step of a playbook whose one step has these extra keys.
    fn step(keys: &str) -> Step {
        let text = format!("name: t\nhosts: all\nsteps:\n  - name: s\n    shell: x\n{keys}");
        let mut playbook = Playbook::parse(Path::new("t.yml"), &text).expect("a playbook");
        playbook.steps.remove(0)
    }

    fn conclude_exit(step: &Step, number: u32, exit: ExitStatus, stdout: &str) -> Conclusion {
        let templates = Templates::new();
        let vars = Vars::new();
        let scope = StepScope {
            templates: &templates,
            step,
            vars: &vars,
        };
        let attempt = Attempt {
            number,
            exit: &exit,
            stdout: stdout.as_bytes(),
            stderr: b"",
            stderr_tail: vec![],
        };
        conclude(&scope, attempt, false)
    }

    fn done(c: Conclusion) -> StepRun {
        match c {
            Conclusion::Done(run) => run,
            Conclusion::Retry => panic!("expected the step to be concluded"),
        }
    }

    #[test]
    fn a_zero_exit_changed_the_host_unless_changed_when_says_otherwise() {
        let run = done(conclude_exit(
            &step(""),
            1,
            ExitStatus::Code(0),
            "v4.65.0\n",
        ));
        assert_eq!((run.status, run.rc), (StepStatus::Changed, Some(0)));
        assert_eq!(
            run.registered.stdout, "v4.65.0",
            "without its final newline"
        );
        let quiet = step("    changed_when: false\n");
        let run = done(conclude_exit(&quiet, 1, ExitStatus::Code(0), ""));
        assert_eq!(run.status, StepStatus::Ok);
    }

    #[test]
    fn a_non_zero_exit_fails_with_no_words_of_its_own() {
        let run = done(conclude_exit(&step(""), 1, ExitStatus::Code(2), ""));
        assert_eq!(
            (run.status, run.rc, run.message),
            (StepStatus::Failed, Some(2), None)
        );
    }

    #[test]
    fn failed_when_decides_over_the_exit_code() {
        let s = step("    failed_when: \"'error' in result.stdout\"\n");
        let run = done(conclude_exit(&s, 1, ExitStatus::Code(0), "an error"));
        assert_eq!(run.status, StepStatus::Failed);
        assert_eq!(run.message.as_deref(), Some("failed_when is true"));
        let run = done(conclude_exit(&s, 1, ExitStatus::Code(1), "fine"));
        assert_eq!(run.status, StepStatus::Changed);
    }

    #[test]
    fn constant_conditions_decide_as_the_same_expressions_would() {
        let forms = [("", ""), ("true", "1 == 1"), ("false", "1 == 2")];
        for (failed, failed_expr) in forms {
            for (changed, changed_expr) in forms {
                let keys = |f: &str, c: &str| {
                    let key = |k: &str, v: &str| match v {
                        "" => String::new(),
                        v if v.contains('=') => format!("    {k}: \"{v}\"\n"),
                        v => format!("    {k}: {v}\n"),
                    };
                    key("failed_when", f) + &key("changed_when", c)
                };
                let constant = step(&keys(failed, changed));
                let evaluated = step(&keys(failed_expr, changed_expr));
                let is_expr = |c: &Option<Condition>| matches!(c, Some(Condition::Expr(_)));
                assert!(!is_expr(&constant.failed_when) && !is_expr(&constant.changed_when));
                assert_eq!(is_expr(&evaluated.failed_when), !failed.is_empty());
                assert_eq!(is_expr(&evaluated.changed_when), !changed.is_empty());
                for rc in [0, 3] {
                    let of = |s: &Step| {
                        let run = done(conclude_exit(s, 1, ExitStatus::Code(rc), "out"));
                        (run.status, run.registered.changed, run.registered.failed)
                    };
                    assert_eq!(of(&constant), of(&evaluated), "{failed}/{changed}, rc {rc}");
                }
            }
        }
    }

    #[test]
    fn until_retries_while_attempts_remain_then_fails_saying_how_many() {
        let s = step("    until: \"result.stdout == 'up'\"\n    retries: 2\n    delay: 0\n");
        assert!(matches!(
            conclude_exit(&s, 1, ExitStatus::Code(0), "down"),
            Conclusion::Retry
        ));
        assert!(matches!(
            conclude_exit(&s, 2, ExitStatus::Code(0), "down"),
            Conclusion::Retry
        ));
        let run = done(conclude_exit(&s, 3, ExitStatus::Code(0), "down"));
        assert_eq!(run.status, StepStatus::Failed);
        assert_eq!(
            run.message.as_deref(),
            Some("`until` still false after 3 attempts")
        );
        let run = done(conclude_exit(&s, 2, ExitStatus::Code(0), "up"));
        assert_eq!(
            (run.status, run.registered.attempts),
            (StepStatus::Changed, 2)
        );
    }

    #[test]
    fn a_command_killed_by_a_signal_fails_with_no_exit_code() {
        let run = done(conclude_exit(
            &step(""),
            1,
            ExitStatus::Signal("KILL".into()),
            "",
        ));
        assert_eq!(run.rc, None);
        assert_eq!(run.message.as_deref(), Some("killed by signal KILL"));
    }

    #[test]
    fn a_condition_that_does_not_evaluate_fails_the_step_at_once() {
        let s = step("    changed_when: \"no_such_var.field\"\n    retries: 3\n");
        let run = done(conclude_exit(&s, 1, ExitStatus::Code(0), ""));
        assert_eq!(run.status, StepStatus::Failed);
        assert!(run.message.is_some_and(|m| m.starts_with("changed_when: ")));
    }

    #[test]
    fn a_failure_is_rolled_back_only_past_the_point_of_no_return() {
        use Recovery::*;
        use StepStatus::{Failed, Unreachable};
        let cases = [
            (Failed, false, false, End(Outcome::Failed)),
            (Unreachable, false, false, End(Outcome::Unreachable)),
            (Failed, false, true, End(Outcome::Failed)),
            (Failed, true, false, RollBack),
            (Unreachable, true, false, ReconnectThenRollBack),
            (Failed, true, true, Abandon),
            (Unreachable, true, true, Abandon),
        ];
        for (status, past, abandoned, expected) in cases {
            assert_eq!(
                recovery(status, past, abandoned),
                expected,
                "{status:?} {past} {abandoned}"
            );
        }
        assert_eq!(lost_for_good(false), Outcome::UnreachableMidUpgrade);
        assert_eq!(lost_for_good(true), Outcome::Abandoned);
    }
}
