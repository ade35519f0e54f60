//! Checks of the playbook alone, before any inventory is read: step names, registers,
//! secrets, the point of no return, the gate's needs, and every template's syntax (so
//! errors show even when no host is selected). The checks that render templates for the
//! hosts in play are the play's ([`crate::play::validate()`]).

use std::collections::BTreeMap;

use super::{AuditSection, Condition, Playbook, Step};
use crate::diagnostic::Diagnostic;
use crate::template::Templates;
use crate::vars::check_name;

/// A template a playbook holds, and where: `key` is its field in the step (`shell`,
/// `when`...) or in the playbook (`lock.dir`...).
#[derive(Debug, Clone, Copy)]
pub struct TemplateField<'a> {
    pub key: &'static str,
    pub text: &'a str,
    /// A bare expression (a condition) rather than text with `{{ }}` in it.
    pub is_expr: bool,
}

impl Step {
    /// The step's templates and conditions, by field.
    pub fn templates(&self) -> Vec<TemplateField<'_>> {
        let mut out = vec![TemplateField {
            key: "shell",
            text: &self.shell,
            is_expr: false,
        }];
        for (key, cond) in [
            ("when", &self.when),
            ("until", &self.until),
            ("changed_when", &self.changed_when),
            ("failed_when", &self.failed_when),
        ] {
            if let Some(Condition::Expr(text)) = cond {
                out.push(TemplateField {
                    key,
                    text,
                    is_expr: true,
                });
            }
        }
        if let Some(user) = &self.become_user {
            out.push(TemplateField {
                key: "become_user",
                text: user,
                is_expr: false,
            });
        }
        out
    }
}

impl Playbook {
    /// The playbook's templates about a whole host rather than one step, by field.
    pub fn host_templates(&self) -> Vec<TemplateField<'_>> {
        [
            ("failure_note", self.failure_note.as_deref()),
            ("lock.dir", self.lock.as_ref().map(|l| l.dir.as_str())),
            ("audit.from", self.audit.from.as_deref()),
            ("audit.to", self.audit.to.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, text)| {
            text.map(|text| TemplateField {
                key,
                text,
                is_expr: false,
            })
        })
        .collect()
    }

    /// Every step: the upgrade's (pre-flight first), the rollback's, the verification's.
    pub fn every_step(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.rollback).chain(&self.verify)
    }

    /// As [`Playbook::every_step`], to change them.
    pub fn every_step_mut(&mut self) -> impl Iterator<Item = &mut Step> {
        (self.steps.iter_mut())
            .chain(&mut self.rollback)
            .chain(&mut self.verify)
    }

    /// Every template and condition the playbook holds, with the field it is written in
    /// (`lock.dir`, `report.version`, `steps[3].shell`), as diagnostics name it.
    pub fn every_template(&self) -> Vec<(String, TemplateField<'_>)> {
        let host = self.host_templates().into_iter();
        let mut out: Vec<_> = host.map(|field| (field.key.to_string(), field)).collect();
        out.extend(self.report.iter().map(|(column, text)| {
            let field = TemplateField {
                key: "report",
                text,
                is_expr: false,
            };
            (format!("report.{column}"), field)
        }));
        for step in self.every_step() {
            let fields = step.templates().into_iter();
            out.extend(fields.map(|field| (format!("{}.{}", step.field, field.key), field)));
        }
        out
    }
}

/// Checks of the playbook alone (no inventory needed).
pub(super) fn check_structure(playbook: &Playbook) -> Vec<Diagnostic> {
    let mut errors = check_steps(playbook);
    errors.extend(check_secrets(playbook));
    errors.extend(check_rollout(playbook));
    errors.extend(check_syntax(playbook));
    errors
}

/// Every step has a name of its own and registers under a valid name.
fn check_steps(playbook: &Playbook) -> Vec<Diagnostic> {
    let doc = &playbook.doc;
    let mut errors = Vec::new();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for step in playbook.every_step() {
        let field = format!("{}.name", step.field);
        if step.name.trim().is_empty() {
            errors.push(doc.error(&field, "a step needs a name"));
        } else if let Some(first) = seen.insert(&step.name, &step.field) {
            errors.push(
                doc.error(&field, format!("duplicate step name `{}`", step.name))
                    .hint(format!(
                        "{first} has the same name; names identify steps in reports and logs"
                    )),
            );
        }
        if let Some(register) = &step.register {
            if let Err(m) = check_name(register) {
                errors.push(doc.error(&format!("{}.register", step.field), m));
            }
        }
    }
    errors
}

/// A secret is known before the run: a step's register cannot be one.
fn check_secrets(playbook: &Playbook) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for (i, name) in playbook.secrets.iter().enumerate() {
        let registered_by = playbook
            .every_step()
            .find(|s| s.register.as_ref() == Some(name));
        if let Some(step) = registered_by {
            errors.push(
                playbook.doc.error(
                    &format!("secrets[{i}]"),
                    format!(
                        "`{name}` is registered by step `{}`: a secret is a variable given to fleetup, known before the run, not a result a host prints",
                        step.name
                    ),
                )
                .hint("make the value the host needs a secret variable (e.g. with lookup('env', ...)); its echoes in any output are then hidden too"),
            );
        }
    }
    errors
}

/// The gate has versions to compare, and the point of no return sits on an upgrade step
/// whenever there is a rollback to run.
fn check_rollout(playbook: &Playbook) -> Vec<Diagnostic> {
    let doc = &playbook.doc;
    let mut errors = Vec::new();
    if playbook.gate.is_some() {
        if let Some(missing) = gate_needs(&playbook.audit) {
            errors.push(doc.error("gate", missing));
        }
    }
    if playbook.recheck.is_some() && playbook.recheck_step().is_none() {
        errors.push(
            doc.error("recheck.step", "names no pre-flight step").hint(
                "name one of the `preflight:` steps, e.g. the one that reads the host's state",
            ),
        );
    }
    if !playbook.rollback.is_empty() && playbook.point_of_no_return().is_none() {
        errors.push(
            doc.error(
                "rollback",
                "rollback steps are given but no step is marked `point_of_no_return: true`",
            )
            .hint(
                "mark the first step that changes the host, e.g. the one that stops the containers",
            ),
        );
    }
    for step in playbook.steps[..playbook.preflight_len]
        .iter()
        .chain(&playbook.rollback)
        .chain(&playbook.verify)
        .filter(|s| s.point_of_no_return)
    {
        errors.push(doc.error(
            &format!("{}.point_of_no_return", step.field),
            "point_of_no_return belongs on an upgrade step, not on a pre-flight or rollback step",
        ));
    }
    errors
}

/// Syntax once per template, so errors show even when no host is selected.
fn check_syntax(playbook: &Playbook) -> Vec<Diagnostic> {
    let doc = &playbook.doc;
    let templates = Templates::new();
    let mut errors = Vec::new();
    for (place, field) in playbook.every_template() {
        let checked = if field.is_expr {
            templates.variables_of_expression(field.text)
        } else {
            templates.variables_of_template(field.text)
        };
        if let Err(e) = checked {
            errors.push(doc.error(&place, e.message));
        }
    }
    errors
}

/// What a promotion gate lacks to compare versions, if anything: it reads the staged hosts'
/// version now (`audit.from`, after the pre-flight) and the version a run goes to
/// (`audit.to`).
pub fn gate_needs(audit: &AuditSection) -> Option<&'static str> {
    match (&audit.from, &audit.to) {
        (Some(_), Some(_)) => None,
        _ => Some(
            "a promotion gate compares versions: the playbook needs `audit.from` (a host's version, read by its pre-flight) and `audit.to` (the version it goes to)",
        ),
    }
}
