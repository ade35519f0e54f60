//! What a step's `register` records, as Ansible's shell module does: filled in by the
//! engine as the step runs, and stood in for by an empty one where the inputs are checked
//! (or previewed) before any host is contacted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A step's result under its `register` name (and as `result` in its own checks).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Registered {
    pub stdout: String,
    pub stderr: String,
    pub rc: i64,
    pub stdout_lines: Vec<String>,
    pub stderr_lines: Vec<String>,
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    pub attempts: u32,
}

/// Ansible's `stdout_lines` of a text.
pub fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

impl Registered {
    /// The result as templates read it (`name.stdout`, `name.rc`...).
    pub fn to_value(&self) -> Value {
        self.clone().into_value()
    }

    /// As [`Registered::to_value`], with the texts moved rather than copied: a large
    /// output's value was held twice over while the step's result lived on. In the order
    /// of its fields, as it serializes.
    pub fn into_value(self) -> Value {
        // Every field named: a new one does not compile until it is given here too.
        let Registered {
            stdout,
            stderr,
            rc,
            stdout_lines,
            stderr_lines,
            changed,
            failed,
            skipped,
            attempts,
        } = self;
        let texts =
            |lines: Vec<String>| Value::Array(lines.into_iter().map(Value::String).collect());
        let fields = [
            ("stdout", Value::String(stdout)),
            ("stderr", Value::String(stderr)),
            ("rc", rc.into()),
            ("stdout_lines", texts(stdout_lines)),
            ("stderr_lines", texts(stderr_lines)),
            ("changed", changed.into()),
            ("failed", failed.into()),
            ("skipped", skipped.into()),
            ("attempts", attempts.into()),
        ];
        let fields = fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value));
        Value::Object(fields.collect())
    }

    /// The line lists are the bulk of a large output's value (a string and an allocation
    /// per line): a result held for long leaves them out, and [`Registered::with_lines`]
    /// puts them back.
    pub fn without_lines(mut self) -> Registered {
        self.stdout_lines = Vec::new();
        self.stderr_lines = Vec::new();
        self
    }

    pub fn with_lines(mut self) -> Registered {
        self.stdout_lines = lines(&self.stdout);
        self.stderr_lines = lines(&self.stderr);
        self
    }

    /// Whether its line lists are those of its texts, as every result the engine makes
    /// has them: then `without_lines().with_lines()` gives it back exactly.
    pub fn lines_are_its_own(&self) -> bool {
        let own = |text: &str, lines: &[String]| text.lines().eq(lines.iter().map(String::as_str));
        own(&self.stdout, &self.stdout_lines) && own(&self.stderr, &self.stderr_lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_read_a_result_as_it_serializes() {
        let result = Registered {
            stdout: "a\nb".into(),
            stderr: "warn".into(),
            rc: -1,
            stdout_lines: lines("a\nb"),
            stderr_lines: lines("warn"),
            failed: true,
            attempts: 3,
            ..Default::default()
        };
        let serialized = serde_json::to_value(&result).unwrap();
        // The same key order too: a template may print the whole value.
        assert_eq!(result.to_value().to_string(), serialized.to_string());
        assert_eq!(result.into_value().to_string(), serialized.to_string());
    }

    #[test]
    fn a_result_held_without_its_lines_reads_back_as_it_was() {
        let whole = Registered {
            stdout: "a\nb".into(),
            stderr: "warn".into(),
            rc: 3,
            stdout_lines: lines("a\nb"),
            stderr_lines: lines("warn"),
            changed: true,
            attempts: 2,
            ..Default::default()
        };
        assert!(whole.lines_are_its_own());
        let held = whole.clone().without_lines();
        assert!(held.stdout_lines.is_empty() && !held.lines_are_its_own());
        // In the same key order, for a template that prints the whole value.
        assert_eq!(
            held.with_lines().into_value().to_string(),
            whole.to_value().to_string()
        );
        let odd = Registered {
            stdout_lines: lines("other"),
            ..whole
        };
        assert!(!odd.lines_are_its_own());
    }
}
