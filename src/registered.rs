//! What a step's `register` records, as Ansible's shell module does: filled in by the
//! engine as the step runs, and stood in for by an empty one where the inputs are checked
//! (or previewed) before any host is contacted.

use serde::Serialize;
use serde_json::Value;

/// A step's result under its `register` name (and as `result` in its own checks).
#[derive(Debug, Clone, Default, Serialize)]
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

impl Registered {
    /// The result as templates read it (`name.stdout`, `name.rc`...).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
