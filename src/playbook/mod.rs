//! Playbooks: the steps of one host's upgrade, its rollback, and the rollout settings.
//!
//! A playbook is one play, a YAML mapping whose keys are Ansible's wherever the meaning is
//! the same (`hosts`, `vars`, `serial`, `max_fail_percentage`, `when`, `register`,
//! `retries`, `delay`, `until`, `become`...). One difference is deliberate: a playbook's
//! `vars` are defaults, below the inventory, because a shipped playbook must let each
//! host's inventory say where its app lives. Parsing is pure; [`Playbook::load`] reads the
//! file.

mod parse;
mod validate;

pub use validate::{gate_needs, TemplateField};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::inventory::Pattern;
use crate::plan::{Canary, Order, Serial};
use crate::registered::Registered;
use crate::template::Templates;
use crate::vars::{Layered, Lookup, Over, Vars};
use crate::window::Windows;
use crate::yaml::Document;

/// The time a step may take when neither it nor the playbook says.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub hosts: Pattern,
    /// Defaults: the inventory and `-e` override them. Every host in play shares them.
    pub vars: Arc<Vars>,
    /// Variables that must be set (in the inventory or with `-e`) for every host.
    pub required_vars: Vec<String>,
    /// Variables whose values are never shown or written down (see [`crate::secret`]).
    pub secrets: Vec<String>,
    pub rollout: RolloutSection,
    /// A host's steps in order: first the `preflight` ones (read-only checks, also run on
    /// every host before any host changes), then those of `steps`.
    pub steps: Vec<Step>,
    /// How many of `steps` are pre-flight.
    pub preflight_len: usize,
    /// Columns that sum up a host after its pre-flight (or after a read-only playbook):
    /// name → template, e.g. `version: "{{ current.stdout }}"`.
    pub report: Vec<(String, String)>,
    pub rollback: Vec<Step>,
    /// A template added to the message of a host that failed after its point of no return,
    /// e.g. where its backup is.
    pub failure_note: Option<String>,
    /// The host lock (and audit log) directory, when the playbook asks for one.
    pub lock: Option<LockSection>,
    /// How much of a host's pre-flight runs again when its turn comes.
    pub recheck: Option<RecheckSection>,
    /// What a host's audit line says it went from and to (templates).
    pub audit: AuditSection,
    /// Read-only checks run again on the upgraded hosts during a pause.
    pub verify: Vec<Step>,
    pub gate: Option<GateSection>,
    /// The maintenance windows the run must keep to (hosts' `window` variables win).
    pub windows: Windows,
    /// Where every value came from, for messages about them.
    pub doc: Document,
    /// The file's text, as the journal keeps it (and compares it on resume).
    pub text: String,
    /// Who is told what as the run goes (`notifications:`; not Ansible's `notify:`).
    pub notifications: Vec<crate::notify::Notifier>,
}

/// `rollout:` as written; unset entries fall back to the command line or the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSection {
    pub serial: Option<Serial>,
    pub canary: Option<Canary>,
    pub max_fail_percentage: Option<Percentage>,
    pub order: Option<Order>,
    pub forks: Option<Forks>,
    /// After the canary batch (when unset, `pause_between_batches` applies there too).
    pub pause_after_canary: Option<Pause>,
    /// After every other batch but the last.
    pub pause_between_batches: Option<Pause>,
    /// A group whose hosts go first, before the canary, when a run selects them and others
    /// (default: the gate's `require_staged`).
    pub staged_first: Option<String>,
}

/// A pause between batches: a time to wait, or `prompt` to wait for the operator. The
/// upgraded hosts are verified again during it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    For(Duration),
    Prompt,
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(d)?;
        if value.as_str().map(str::trim) == Some("prompt") {
            return Ok(Pause::Prompt);
        }
        Seconds::deserialize(value)
            .map(|s| Pause::For(s.0))
            .map_err(|_| {
                serde::de::Error::custom(
                    "a pause is a duration (30s, 10m, 1h) or `prompt` to wait for the operator",
                )
            })
    }
}

/// `gate:`: this playbook may only run on hosts outside `require_staged` once that group
/// runs the same target, healthy, for `soak`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    pub require_staged: String,
    #[serde(default = "default_soak")]
    pub soak: Seconds,
}

pub fn default_soak() -> Seconds {
    Seconds(Duration::from_secs(24 * 3600))
}

/// `window:` (in a playbook, or a host's `window` variable): one window or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WindowTexts {
    One(String),
    Many(Vec<String>),
}

impl WindowTexts {
    pub fn texts(&self) -> Vec<String> {
        match self {
            WindowTexts::One(t) => vec![t.clone()],
            WindowTexts::Many(ts) => ts.clone(),
        }
    }
}

/// `lock:`: where a host's lock and audit log live, and when a lock is stale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSection {
    /// A template rendered with the host's variables, e.g. `"{{ sl_app_path }}/.fleetup"`.
    pub dir: String,
    /// A lock older than this is stale even if its controller cannot be asked.
    #[serde(default = "default_stale_after")]
    pub stale_after: Seconds,
}

fn default_stale_after() -> Seconds {
    Seconds(Duration::from_secs(6 * 3600))
}

/// `recheck:`: when a host's turn comes, its pre-flight runs again only as far as the host
/// can have changed since. The named pre-flight step runs again; if it prints what it
/// printed at the pre-flight, less than `within` ago, the rest of the pre-flight's findings
/// stand. Otherwise, and without `recheck:`, the whole pre-flight runs again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecheckSection {
    /// The name of a pre-flight step whose output changes when the host does.
    pub step: String,
    #[serde(default = "default_recheck_within")]
    pub within: Seconds,
}

fn default_recheck_within() -> Seconds {
    Seconds(Duration::from_secs(10 * 60))
}

/// `audit:`: the versions a host's audit line names, as templates that may read what the
/// pre-flight registered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One step of a host's upgrade (or of its rollback).
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// The command, a template run by the remote shell.
    pub shell: String,
    pub when: Option<Condition>,
    pub register: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub delay: Duration,
    pub until: Option<Condition>,
    pub changed_when: Option<Condition>,
    pub failed_when: Option<Condition>,
    pub become_: bool,
    pub become_user: Option<String>,
    /// From this step on, a failure runs the playbook's `rollback` steps.
    pub point_of_no_return: bool,
    /// Ansible's `no_log`: what the host prints (its settings, with their secrets) and the
    /// command (when it carries them) stay out of the host's log and the run's events.
    pub no_log: bool,
    /// The step's own variables (Ansible's task `vars`): over the host's, for this step
    /// only, so that one command can serve the upgrade and the rollback.
    pub vars: Vars,
    /// Whether what it runs gives its result Ansible's line lists (`stdout_lines`,
    /// `stderr_lines`): unless the play found that no template of the run reads them
    /// ([`crate::play::line_lists`]).
    pub keeps_lines: bool,
    /// `steps[3]` or `rollback[0]`: where the step is written, for messages.
    pub field: String,
}

impl Step {
    /// The variables the step sees: `vars` with the step's own on top.
    pub fn scope<'v>(&'v self, vars: &'v dyn Lookup) -> Over<'v> {
        Over {
            base: vars,
            top: std::borrow::Cow::Borrowed(&self.vars),
            registered: false,
        }
    }

    /// The variables the step's own conditions (`until`, `changed_when`, `failed_when`)
    /// see: those in its `scope`, with its `result` as `result` and under its `register`
    /// name.
    pub fn result_scope<'v>(&self, scope: &'v dyn Lookup, result: serde_json::Value) -> Over<'v> {
        let mut top = Vars::new();
        if let Some(name) = &self.register {
            top.insert(name.clone(), result.clone());
        }
        top.insert("result".into(), result);
        Over {
            base: scope,
            top: std::borrow::Cow::Owned(top),
            registered: true,
        }
    }
}

/// `when`, `until`, `changed_when`, `failed_when`: a bare Jinja expression, or a constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always(bool),
    Expr(String),
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bool(bool),
            Text(String),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a condition is an expression (text) or true/false")
        })? {
            Form::Bool(b) => Ok(Condition::Always(b)),
            Form::Text(s) => Ok(Condition::Expr(s)),
        }
    }
}

/// A duration: seconds as a number (Ansible's way) or text such as `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Int(u64),
            Text(String),
        }
        let bad = || serde::de::Error::custom("a duration is seconds (30) or text (30s, 5m, 1h)");
        match Form::deserialize(d).map_err(|_| bad())? {
            Form::Int(n) => Ok(Seconds(Duration::from_secs(n))),
            Form::Text(s) => crate::duration::parse(&s).map(Seconds).map_err(|_| bad()),
        }
    }
}

/// `max_fail_percentage`: 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentage(pub f64);

impl<'de> Deserialize<'de> for Percentage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = f64::deserialize(d)?;
        if (0.0..=100.0).contains(&p) {
            Ok(Percentage(p))
        } else {
            Err(serde::de::Error::custom(format!(
                "{p} is not a percentage from 0 to 100"
            )))
        }
    }
}

/// `forks`: at least one host at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forks(pub usize);

impl<'de> Deserialize<'de> for Forks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match usize::deserialize(d)? {
            0 => Err(serde::de::Error::custom("forks must be 1 or more")),
            n => Ok(Forks(n)),
        }
    }
}

impl Playbook {
    pub fn path(&self) -> &PathBuf {
        &self.doc.file
    }

    /// A host's steps as they will run, for `plan --verbose`: each command rendered with the
    /// host's variables, with `<name.stdout>` standing for what an earlier step registers,
    /// and its condition shown as written.
    pub fn preview(&self, host: &Layered) -> Vec<String> {
        let templates = Templates::new();
        let mut vars = host.clone();
        let mut lines = Vec::new();
        for step in &self.steps {
            let shell = templates
                .render(&step.shell, &vars)
                .unwrap_or_else(|_| step.shell.clone());
            let mut line = format!("{}: {}", step.name, shell.trim());
            if let Some(Condition::Expr(when)) = &step.when {
                line.push_str(&format!("  [when: {when}]"));
            }
            if step.point_of_no_return {
                line.push_str("  [point of no return]");
            }
            lines.push(line);
            if let Some(r) = &step.register {
                let stand_in = Registered {
                    stdout: format!("<{r}.stdout>"),
                    ..Default::default()
                };
                vars.insert(r.clone(), stand_in.into_value());
            }
        }
        lines
    }

    /// The index of the pre-flight step `recheck:` names, and how long its findings stand.
    pub fn recheck_step(&self) -> Option<(usize, Duration)> {
        let recheck = self.recheck.as_ref()?;
        let preflight = &self.steps[..self.preflight_len];
        let index = preflight.iter().position(|s| s.name == recheck.step)?;
        Some((index, recheck.within.0))
    }

    /// The steps from the first `point_of_no_return` on, whose failure runs the rollback.
    pub fn point_of_no_return(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.point_of_no_return)
    }

    /// A playbook of one step over `hosts`, for `fleetup exec`; its file is `-`.
    pub fn ad_hoc(name: &str, hosts: Pattern, step: Step) -> Playbook {
        Playbook {
            name: name.to_string(),
            hosts,
            vars: Arc::default(),
            required_vars: vec![],
            secrets: vec![],
            rollout: RolloutSection::default(),
            steps: vec![step],
            preflight_len: 0,
            report: vec![],
            rollback: vec![],
            failure_note: None,
            lock: None,
            recheck: None,
            audit: AuditSection::default(),
            verify: vec![],
            gate: None,
            windows: Windows::default(),
            doc: Document::named("-"),
            text: String::new(),
            notifications: vec![],
        }
    }
}

#[cfg(test)]
mod tests;
