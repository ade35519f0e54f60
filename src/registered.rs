//! What a step's `register` records, as Ansible's shell module does: filled in by the
//! engine as the step runs, and stood in for by an empty one where the inputs are checked
//! (or previewed) before any host is contacted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A step's result under its `register` name (and as `result` in its own checks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Registered {
    pub stdout: String,
    pub stderr: String,
    pub rc: i64,
    /// Whether its value carries Ansible's `stdout_lines` and `stderr_lines`, made from the
    /// texts when the value is: a list of a string and an allocation per line, the bulk of
    /// a large output's value, left out where no template of the run can read it (see
    /// [`crate::play::line_lists`]).
    pub lines: bool,
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    pub attempts: u32,
}

impl Default for Registered {
    /// With its line lists, as Ansible's: a result is held without them only where that
    /// was decided.
    fn default() -> Self {
        Registered {
            stdout: String::new(),
            stderr: String::new(),
            rc: 0,
            lines: true,
            changed: false,
            failed: false,
            skipped: false,
            attempts: 0,
        }
    }
}

impl Registered {
    /// The size of its texts.
    pub fn text_len(&self) -> usize {
        self.stdout.len() + self.stderr.len()
    }

    /// The result as templates read it (`name.stdout`, `name.rc`...).
    pub fn to_value(&self) -> Value {
        self.clone().into_value()
    }

    /// As [`Registered::to_value`], with the texts moved rather than copied: a large
    /// output's value was held twice over while the step's result lived on. The line lists
    /// after `rc`, as Ansible gives them (templates see a mapping's keys sorted).
    pub fn into_value(self) -> Value {
        // Every field named: a new one does not compile until it is given here too.
        let Registered {
            stdout,
            stderr,
            rc,
            lines: with_lines,
            changed,
            failed,
            skipped,
            attempts,
        } = self;
        let texts = |text: &str| Value::Array(text.lines().map(Value::from).collect());
        let line_lists = with_lines.then(|| {
            [
                ("stdout_lines", texts(&stdout)),
                ("stderr_lines", texts(&stderr)),
            ]
        });
        let head = [
            ("stdout", Value::String(stdout)),
            ("stderr", Value::String(stderr)),
            ("rc", rc.into()),
        ];
        let tail = [
            ("changed", changed.into()),
            ("failed", failed.into()),
            ("skipped", skipped.into()),
            ("attempts", attempts.into()),
        ];
        let fields = head
            .into_iter()
            .chain(line_lists.into_iter().flatten())
            .chain(tail)
            .map(|(name, value)| (name.to_string(), value));
        Value::Object(fields.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(lines: bool) -> Registered {
        Registered {
            stdout: "a\nb".into(),
            stderr: "warn".into(),
            rc: -1,
            lines,
            failed: true,
            attempts: 3,
            ..Default::default()
        }
    }

    #[test]
    fn templates_read_ansibles_fields_in_ansibles_order() {
        assert_eq!(
            result(true).into_value().to_string(),
            r#"{"stdout":"a\nb","stderr":"warn","rc":-1,"stdout_lines":["a","b"],"stderr_lines":["warn"],"changed":false,"failed":true,"skipped":false,"attempts":3}"#
        );
        assert_eq!(
            Registered::default().into_value()["stdout_lines"],
            Value::Array(vec![])
        );
    }

    #[test]
    fn a_result_without_its_lines_is_the_same_value_less_the_lists() {
        let mut whole = result(true).into_value();
        let whole = whole.as_object_mut().unwrap();
        whole.shift_remove("stdout_lines");
        whole.shift_remove("stderr_lines");
        assert_eq!(
            result(false).into_value().to_string(),
            Value::Object(whole.clone()).to_string()
        );
    }

    #[test]
    fn a_result_held_as_json_reads_back_as_it_was() {
        for r in [result(true), result(false)] {
            let held = serde_json::to_vec(&r).unwrap();
            let back: Registered = serde_json::from_slice(&held).unwrap();
            assert_eq!(back.into_value(), r.to_value());
        }
    }
}
