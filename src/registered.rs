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

/// The line lists are the bulk of a large output's value (a string and an allocation per
/// line): a value held for long leaves them out, and [`with_lines`] puts them back.
pub fn without_lines(value: &mut Value) {
    if let Value::Object(map) = value {
        map.shift_remove("stdout_lines");
        map.shift_remove("stderr_lines");
    }
}

/// A value from [`without_lines`] as [`Registered::to_value`] made it, keys in order; any
/// other value as it is.
pub fn with_lines(value: &Value) -> Value {
    let Ok(mut whole) = serde_json::from_value::<Registered>(value.clone()) else {
        return value.clone();
    };
    let mut bare = whole.to_value();
    without_lines(&mut bare);
    if bare != *value {
        return value.clone();
    }
    whole.stdout_lines = lines(&whole.stdout);
    whole.stderr_lines = lines(&whole.stderr);
    whole.to_value()
}

impl Registered {
    /// The result as templates read it (`name.stdout`, `name.rc`...).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_held_without_its_lines_reads_back_as_it_was() {
        let whole = Registered {
            stdout: "a\nb".into(),
            stderr: "warn".into(),
            rc: 3,
            stdout_lines: lines("a\nb"),
            stderr_lines: lines("warn"),
            changed: true,
            attempts: 2,
            ..Default::default()
        }
        .to_value();
        let mut held = whole.clone();
        without_lines(&mut held);
        assert!(held.get("stdout_lines").is_none());
        let back = with_lines(&held);
        assert_eq!(back, whole);
        // In the same key order, for a template that prints the whole value.
        assert_eq!(back.to_string(), whole.to_string());
        let other = serde_json::json!({"stdout": "v1"});
        assert_eq!(with_lines(&other), other);
    }
}
