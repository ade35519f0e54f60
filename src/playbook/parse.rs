//! From a playbook's text to a [`Playbook`]: the file's shape, its steps with the
//! playbook's defaults filled in, its `vars_files`, and the checks of the playbook alone.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::validate::check_structure;
use super::{
    AuditSection, Condition, GateSection, LockSection, Playbook, RecheckSection, RolloutSection,
    Seconds, Step, WindowTexts, DEFAULT_STEP_TIMEOUT,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::inventory::Pattern;
use crate::vars::{check_name, Vars};
use crate::window::Windows;
use crate::yaml::Document;

/// The file's shape, before the checks that need more than one field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: String,
    hosts: String,
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    vars_files: Vec<String>,
    #[serde(default)]
    required_vars: Vec<String>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    r#become: bool,
    become_user: Option<String>,
    timeout: Option<Seconds>,
    #[serde(default)]
    rollout: RolloutSection,
    #[serde(default)]
    preflight: Vec<serde_yaml::Value>,
    #[serde(default)]
    steps: Vec<serde_yaml::Value>,
    #[serde(default)]
    rollback: Vec<serde_yaml::Value>,
    #[serde(default)]
    report: indexmap::IndexMap<String, String>,
    failure_note: Option<String>,
    lock: Option<LockSection>,
    recheck: Option<RecheckSection>,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    verify: Vec<serde_yaml::Value>,
    gate: Option<GateSection>,
    window: Option<WindowTexts>,
    #[serde(default)]
    notifications: Vec<crate::notify::Notifier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    shell: String,
    when: Option<Condition>,
    register: Option<String>,
    timeout: Option<Seconds>,
    retries: Option<u32>,
    delay: Option<Seconds>,
    until: Option<Condition>,
    changed_when: Option<Condition>,
    failed_when: Option<Condition>,
    r#become: Option<bool>,
    become_user: Option<String>,
    #[serde(default)]
    point_of_no_return: bool,
    #[serde(default)]
    no_log: bool,
    #[serde(default)]
    vars: Vars,
}

impl Playbook {
    /// Reads and parses a playbook file.
    pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
        Playbook::parse(path, &crate::yaml::read_input(path, "playbook")?)
    }

    /// Parses a playbook's text; `path` is used in messages, and its directory holds the
    /// `vars_files`. Checks everything that the playbook alone decides: shapes, types,
    /// names, conditions' and templates' syntax.
    pub fn parse(path: &Path, text: &str) -> Result<Playbook, Diagnostics> {
        Playbook::parse_with(path, text, &[])
    }

    /// As [`Playbook::parse`], for a playbook built into fleetup: its `vars_files` are
    /// looked up by name in `builtin` (name, text) before the disk.
    pub fn parse_with(
        path: &Path,
        text: &str,
        builtin: &[(&str, &str)],
    ) -> Result<Playbook, Diagnostics> {
        let doc = Document::parse(path, text)?;
        if doc.value.is_sequence() {
            return Err(doc
                .error("", "a fleetup playbook is one play: a mapping, not a list")
                .hint("remove the leading `- ` and unindent the play")
                .into());
        }
        let raw: RawPlaybook = doc.get("")?;
        let mut errors = Vec::new();
        if raw.steps.is_empty() && raw.preflight.is_empty() {
            errors.push(doc.error(
                "steps",
                "a playbook needs at least one step (in `steps` or `preflight`)",
            ));
        }
        let hosts = Pattern::parse(&raw.hosts).unwrap_or_else(|m| {
            errors.push(doc.error("hosts", m));
            Pattern::all()
        });
        let vars = read_vars(&doc, &raw, builtin, &mut errors);
        check_names(&doc, &raw, &mut errors);
        let StepLists {
            steps,
            preflight_len,
            rollback,
            verify,
        } = read_step_lists(&doc, &raw, &mut errors);
        let windows = match &raw.window {
            None => Windows::default(),
            Some(texts) => Windows::parse(&texts.texts()).unwrap_or_else(|m| {
                errors.push(doc.error("window", m));
                Windows::default()
            }),
        };
        let playbook = Playbook {
            name: raw.name,
            hosts,
            vars: vars.into(),
            required_vars: raw.required_vars,
            secrets: raw.secrets,
            rollout: raw.rollout,
            steps,
            preflight_len,
            report: raw.report.into_iter().collect(),
            rollback,
            failure_note: raw.failure_note,
            lock: raw.lock,
            recheck: raw.recheck,
            audit: raw.audit,
            verify,
            gate: raw.gate,
            windows,
            notifications: raw.notifications,
            doc,
            text: text.to_string(),
        };
        errors.extend(check_structure(&playbook));
        if errors.is_empty() {
            Ok(playbook)
        } else {
            Err(Diagnostics(errors))
        }
    }
}

/// `vars:` over the `vars_files` it lists, so a playbook can change their defaults.
fn read_vars(
    doc: &Document,
    raw: &RawPlaybook,
    builtin: &[(&str, &str)],
    errors: &mut Vec<Diagnostic>,
) -> Vars {
    let mut vars = Vars::new();
    for (i, file) in raw.vars_files.iter().enumerate() {
        match read_vars_file(doc, i, file, builtin) {
            Ok(shared) => vars.extend(shared),
            Err(d) => errors.push(d),
        }
    }
    vars.extend(raw.vars.clone());
    for name in raw.vars.keys() {
        if let Err(m) = check_name(name) {
            errors.push(
                Diagnostic::new(&doc.file, format!("vars.{name}"), m)
                    .at(doc.key_pos(&format!("vars.{name}"))),
            );
        }
    }
    vars
}

/// The variables `required_vars` and `secrets` name must be possible variable names.
fn check_names(doc: &Document, raw: &RawPlaybook, errors: &mut Vec<Diagnostic>) {
    for (list, names) in [
        ("required_vars", &raw.required_vars),
        ("secrets", &raw.secrets),
    ] {
        for (i, name) in names.iter().enumerate() {
            if let Err(m) = check_name(name) {
                errors.push(doc.error(&format!("{list}[{i}]"), m));
            }
        }
    }
}

/// A host's steps (pre-flight first), its rollback and its verification.
struct StepLists {
    steps: Vec<Step>,
    preflight_len: usize,
    rollback: Vec<Step>,
    verify: Vec<Step>,
}

fn read_step_lists(doc: &Document, raw: &RawPlaybook, errors: &mut Vec<Diagnostic>) -> StepLists {
    let defaults = StepDefaults {
        become_: raw.r#become,
        become_user: raw.become_user.clone(),
        timeout: raw.timeout.map_or(DEFAULT_STEP_TIMEOUT, |s| s.0),
    };
    let mut steps = read_steps(doc, "preflight", &raw.preflight, &defaults, errors);
    let preflight_len = steps.len();
    for step in &mut steps {
        // Pre-flight steps only read: unless they say otherwise they change nothing.
        step.changed_when.get_or_insert(Condition::Always(false));
    }
    steps.extend(read_steps(doc, "steps", &raw.steps, &defaults, errors));
    let rollback = read_steps(doc, "rollback", &raw.rollback, &defaults, errors);
    let mut verify = read_steps(doc, "verify", &raw.verify, &defaults, errors);
    for step in &mut verify {
        step.changed_when.get_or_insert(Condition::Always(false));
    }
    StepLists {
        steps,
        preflight_len,
        rollback,
        verify,
    }
}

struct StepDefaults {
    become_: bool,
    become_user: Option<String>,
    timeout: Duration,
}

/// One of `vars_files`: a YAML mapping of variables, beside the playbook (or built in).
fn read_vars_file(
    doc: &Document,
    index: usize,
    file: &str,
    builtin: &[(&str, &str)],
) -> Result<Vars, Diagnostic> {
    let path = doc
        .file
        .parent()
        .unwrap_or_else(|| Path::new(""))
        .join(file);
    let text = match builtin.iter().find(|(name, _)| *name == file) {
        Some((_, text)) => text.to_string(),
        None => crate::yaml::read_input(&path, "vars file").map_err(|d| {
            doc.error(&format!("vars_files[{index}]"), d.message)
                .hint(format!("it is read from {}", path.display()))
        })?,
    };
    let vars_doc = Document::parse(&path, &text)?;
    let vars: Vars = vars_doc.get("")?;
    for name in vars.keys() {
        check_name(name).map_err(|m| vars_doc.error(name, m))?;
    }
    Ok(vars)
}

fn read_steps(
    doc: &Document,
    list: &str,
    raw: &[serde_yaml::Value],
    defaults: &StepDefaults,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 0..raw.len() {
        let field = format!("{list}[{i}]");
        let step: RawStep = match doc.get(&field) {
            Ok(s) => s,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        for name in step.vars.keys() {
            if let Err(m) = check_name(name) {
                errors.push(doc.error(&format!("{field}.vars.{name}"), m));
            }
        }
        steps.push(Step {
            name: step.name,
            shell: step.shell,
            when: step.when,
            register: step.register,
            timeout: step.timeout.map_or(defaults.timeout, |s| s.0),
            // As Ansible: `until` without `retries` tries three times.
            retries: step
                .retries
                .unwrap_or(if step.until.is_some() { 3 } else { 0 }),
            delay: step.delay.map_or(Duration::from_secs(5), |s| s.0),
            until: step.until,
            changed_when: step.changed_when,
            failed_when: step.failed_when,
            become_: step.r#become.unwrap_or(defaults.become_),
            become_user: step.become_user.or_else(|| defaults.become_user.clone()),
            point_of_no_return: step.point_of_no_return,
            no_log: step.no_log,
            vars: step.vars,
            keeps_lines: true,
            field,
        });
    }
    steps
}
