//! Which steps give their result Ansible's line lists (`stdout_lines`, `stderr_lines`).
//!
//! A list holds a string and an allocation per line of a step's output: a SimpleLogin
//! host's 94 kB `docker inspect` is ~2,000 of them, made, hashed for the memo and dropped
//! at each step that registers it, and held for as long as the host is in flight (19 MB of
//! `fleetup status` at 1000 hosts, 200 at once). The shipped playbooks read `found.stdout`
//! and never the lists, so a result gets them only where some template of the run can read
//! them. Every template and condition of the playbook, and every variable that is a
//! template (the playbook's, the steps', each host's and `-e`'s), is read for the chains
//! of attributes it names: a chain that names a result whole (`found`, passed to a filter,
//! subscripted, looped over), or through an attribute other than those of its texts and
//! status (`found.stdout_lines`, but also `found.get(...)` or `found.items()`), keeps the
//! lists of that name. `result` keeps them for every step: each step's conditions see its
//! own result under that name.
//!
//! Templates cannot reach a variable but by its name (fleetup has no `vars[...]` nor
//! `lookup('vars')`), so a list no chain names is one no template reads.

use std::collections::HashSet;

use crate::playbook::Playbook;
use crate::template::{is_template, Templates};

use super::HostsInPlay;

/// The attributes of a registered result that are neither its line lists nor a way to
/// reach them.
const PLAIN: [&str; 7] = [
    "stdout", "stderr", "rc", "changed", "failed", "skipped", "attempts",
];

/// The name whose line lists a chain of attributes can read, if any.
fn reads_lines(path: &str) -> Option<&str> {
    match path.split_once('.') {
        None => Some(path),
        Some((name, rest)) => {
            let attribute = rest.split('.').next().unwrap_or(rest);
            (!PLAIN.contains(&attribute)).then_some(name)
        }
    }
}

/// Decides, for every step of the play, whether its result keeps its line lists. A
/// template that does not compile leaves every step with them: the validator reports it.
pub(super) fn mark(playbook: &mut Playbook, hosts: &HostsInPlay) {
    let readers = Readers::of(playbook, hosts);
    let steps = (playbook.steps.iter_mut())
        .chain(&mut playbook.rollback)
        .chain(&mut playbook.verify);
    for step in steps {
        step.keeps_lines = match &readers {
            None => true,
            Some(names) => {
                names.contains("result")
                    || step.register.as_ref().is_some_and(|r| names.contains(r))
            }
        };
    }
}

/// The names whose line lists some template can read, from every source once.
struct Readers<'a> {
    templates: Templates,
    seen: HashSet<(&'a str, bool)>,
    names: HashSet<String>,
}

impl<'a> Readers<'a> {
    fn of(playbook: &'a Playbook, hosts: &'a HostsInPlay) -> Option<HashSet<String>> {
        let mut readers = Readers {
            templates: Templates::new(),
            seen: HashSet::new(),
            names: HashSet::new(),
        };
        for step in playbook.every_step() {
            for field in step.templates() {
                readers.source(field.text, field.is_expr)?;
            }
            step.vars.values().try_for_each(|v| readers.value(v))?;
        }
        for field in playbook.host_templates() {
            readers.source(field.text, false)?;
        }
        for (_, template) in &playbook.report {
            readers.source(template, false)?;
        }
        playbook.vars.values().try_for_each(|v| readers.value(v))?;
        for host in hosts.iter() {
            host.vars
                .own()
                .values()
                .try_for_each(|v| readers.value(v))?;
        }
        Some(readers.names)
    }

    /// The templates a variable's value holds, at any depth.
    fn value(&mut self, value: &'a serde_json::Value) -> Option<()> {
        match value {
            serde_json::Value::String(text) if is_template(text) => self.source(text, false),
            serde_json::Value::Array(items) => items.iter().try_for_each(|v| self.value(v)),
            serde_json::Value::Object(map) => map.values().try_for_each(|v| self.value(v)),
            _ => Some(()),
        }
    }

    fn source(&mut self, text: &'a str, is_expression: bool) -> Option<()> {
        if !self.seen.insert((text, is_expression)) {
            return Some(());
        }
        let paths = self.templates.paths_read(text, is_expression).ok()?;
        let names = paths.iter().filter_map(|path| reads_lines(path));
        self.names.extend(names.map(str::to_string));
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Step;

    #[test]
    fn a_chain_through_a_text_or_the_status_reads_no_list() {
        for path in [
            "found.stdout",
            "found.rc",
            "found.stdout.foo",
            "found.attempts",
        ] {
            assert_eq!(reads_lines(path), None, "{path}");
        }
        for path in [
            "found",
            "found.stdout_lines",
            "found.stderr_lines",
            "found.get",
            "found.items",
        ] {
            assert_eq!(reads_lines(path), Some("found"), "{path}");
        }
    }

    fn playbook(text: &str) -> Playbook {
        Playbook::parse(std::path::Path::new("t.yml"), text).expect("a playbook")
    }

    fn keeping(text: &str) -> Vec<(String, bool)> {
        let mut playbook = playbook(text);
        mark(&mut playbook, &HostsInPlay::default());
        let steps: Vec<&Step> = playbook.every_step().collect();
        steps
            .iter()
            .map(|s| (s.name.clone(), s.keeps_lines))
            .collect()
    }

    const STEPS: &str = "name: t\nhosts: all\nsteps:\n  - {name: a, shell: x, register: a}\n  - {name: b, shell: x, register: b}\n";

    fn with(more: &str) -> Vec<bool> {
        keeping(&format!("{STEPS}{more}"))
            .into_iter()
            .map(|(_, keeps)| keeps)
            .collect()
    }

    #[test]
    fn only_the_results_whose_lists_some_template_reads_keep_them() {
        let read = |shell: &str| with(&format!("  - {{name: c, shell: '{shell}'}}\n"));
        assert_eq!(
            read("echo {{ a.stdout }} {{ b.rc }}"),
            [false, false, false]
        );
        assert_eq!(read("echo {{ a.stdout_lines[0] }}"), [true, false, false]);
        assert_eq!(read("echo {{ b | to_json }}"), [false, true, false]);
        assert_eq!(read("echo {{ b[\"stdout_lines\"] }}"), [false, true, false]);
        assert_eq!(
            read("echo {{ a.get(\"stderr_lines\") }}"),
            [true, false, false]
        );
        assert_eq!(
            read("{% for l in b.stderr_lines %}{{ l }}{% endfor %}"),
            [false, true, false]
        );
    }

    #[test]
    fn conditions_reading_result_keep_every_steps_lists() {
        let until = "  - {name: c, shell: x, until: 'result.stdout_lines | length > 1'}\n";
        assert_eq!(with(until), [true, true, true]);
        let failed = "  - {name: c, shell: x, failed_when: 'result.rc != 0'}\n";
        assert_eq!(with(failed), [false, false, false]);
    }

    #[test]
    fn variables_that_are_templates_count_wherever_they_are_defined() {
        let play_vars = "vars:\n  n: '{{ a.stdout_lines | length }}'\n";
        assert_eq!(with(play_vars), [true, false]);
        let step_vars = "  - name: c\n    shell: x\n    vars:\n      all: ['{{ b }}']\n";
        assert_eq!(with(step_vars), [false, true, false]);
        let report = "report:\n  lines: '{{ b.stdout_lines | length }}'\n";
        assert_eq!(with(report), [false, true]);
    }

    #[test]
    fn a_host_variable_that_reads_the_lists_keeps_them() {
        let mut playbook = playbook(STEPS);
        let mut own = crate::vars::Vars::new();
        own.insert("n".into(), "{{ b.stdout_lines }}".into());
        let hosts = HostsInPlay::new(vec![super::super::HostInPlay {
            name: "h".into(),
            vars: crate::vars::Layered::new(Default::default(), own),
        }]);
        mark(&mut playbook, &hosts);
        let keeps: Vec<bool> = playbook.steps.iter().map(|s| s.keeps_lines).collect();
        assert_eq!(keeps, [false, true]);
    }

    #[test]
    fn the_shipped_playbooks_hold_no_hosts_docker_inspect_as_lines() {
        for name in ["simplelogin-upgrade.yml", "simplelogin-status.yml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
            let mut playbook = Playbook::load(&path.join(name)).expect("the shipped playbook");
            mark(&mut playbook, &HostsInPlay::default());
            let keeping: Vec<&str> = (playbook.every_step())
                .filter(|s| s.register.is_some() && s.keeps_lines)
                .filter_map(|s| s.register.as_deref())
                .collect();
            // `kept | default(...)` reads that result whole: a line or two.
            let expected: &[&str] = match name {
                "simplelogin-upgrade.yml" => &["kept"],
                _ => &[],
            };
            assert_eq!(keeping, expected, "{name}");
        }
    }

    #[test]
    fn a_template_that_does_not_compile_leaves_every_list() {
        assert_eq!(with("vars:\n  n: '{{ a.stdout'\n"), [true, true]);
    }
}
