//! Which steps give their result Ansible's line lists (`stdout_lines`, `stderr_lines`).
//!
//! A list holds a string and an allocation per line of a step's output: a SimpleLogin
//! host's 94 kB `docker inspect` is ~2,000 of them, made, hashed for the memo and dropped
//! at each step that registers it, and held for as long as the host is in flight (19 MB of
//! `fleetup status` at 1000 hosts, 200 at once). The shipped playbooks read `found.stdout`
//! and never the lists, so a result gets them only where some template of the run may read
//! them. Every template and condition of the playbook, and every variable that is a
//! template (the playbook's, the steps', each host's and `-e`'s, the gate's staged hosts'
//! too), is read as text: a result's name standing anywhere in one (literal text and
//! comments included) other than as `name.stdout`, `.stderr`, `.rc`, `.changed`,
//! `.failed`, `.skipped` or `.attempts` keeps that name's lists (`found.stdout_lines`, but
//! also `found | to_json`, `found['...']`, `found.get(...)`, `{% set f = found %}`).
//! `result` keeps them for every step: each step's conditions see its own result under
//! that name.
//!
//! Text, not the parsed template: what matters is every way a name is used, not only
//! whether it is read, and on this side a mistake costs memory, never a failed step. A
//! template can reach a variable only by its name (fleetup has no `vars[...]`), except
//! through `debug()` or a template it includes: a source that names `debug` or includes
//! one leaves every step its lists.

use std::collections::HashSet;

use crate::playbook::Playbook;
use crate::template::{is_ident, is_template, name_uses};

use super::{HostInPlay, Play};

/// The attributes of a registered result that are neither its line lists nor a way to
/// reach them.
const PLAIN: [&str; 7] = [
    "stdout", "stderr", "rc", "changed", "failed", "skipped", "attempts",
];

/// Decides, for every step of the play, whether its result keeps its line lists.
pub(super) fn mark(play: &mut Play) {
    let staged = play.staged_hosts();
    decide(&mut play.playbook, play.hosts.iter().chain(&staged));
}

fn decide<'h>(playbook: &mut Playbook, hosts: impl Iterator<Item = &'h HostInPlay>) {
    let readers = Readers::of(playbook, hosts);
    for step in playbook.every_step_mut() {
        step.keeps_lines = match &readers {
            None => true,
            Some(names) => {
                names.contains("result")
                    || step.register.as_ref().is_some_and(|r| names.contains(r))
            }
        };
    }
}

/// The names whose line lists some source may read; None when one may read any.
struct Readers<'a> {
    /// Every register name, and `result`.
    names: Vec<&'a str>,
    seen: HashSet<&'a str>,
    reading: HashSet<&'a str>,
}

impl<'a> Readers<'a> {
    fn of<'h: 'a>(
        playbook: &'a Playbook,
        hosts: impl Iterator<Item = &'h HostInPlay>,
    ) -> Option<HashSet<String>> {
        let registers = playbook.every_step().filter_map(|s| s.register.as_deref());
        let mut readers = Readers {
            names: registers.chain(["result"]).collect(),
            seen: HashSet::new(),
            reading: HashSet::new(),
        };
        for (_, field) in playbook.every_template() {
            readers.source(field.text)?;
        }
        for step in playbook.every_step() {
            step.vars.values().try_for_each(|v| readers.value(v))?;
        }
        playbook.vars.values().try_for_each(|v| readers.value(v))?;
        for host in hosts {
            host.vars
                .own()
                .values()
                .try_for_each(|v| readers.value(v))?;
        }
        Some(readers.reading.iter().map(|n| n.to_string()).collect())
    }

    /// The templates a variable's value holds, at any depth.
    fn value(&mut self, value: &'a serde_json::Value) -> Option<()> {
        match value {
            serde_json::Value::String(text) if is_template(text) => self.source(text),
            serde_json::Value::Array(items) => items.iter().try_for_each(|v| self.value(v)),
            serde_json::Value::Object(map) => map.values().try_for_each(|v| self.value(v)),
            _ => Some(()),
        }
    }

    fn source(&mut self, text: &'a str) -> Option<()> {
        if !self.seen.insert(text) {
            return Some(());
        }
        if reaches_unnamed(text) {
            return None;
        }
        let read = self.names.iter().filter(|name| reads_lines_of(text, name));
        self.reading.extend(read);
        Some(())
    }
}

/// Whether `name` stands in `text` as a variable other than through a plain attribute.
fn reads_lines_of(text: &str, name: &str) -> bool {
    name_uses(text, name).any(|after| !plain_attribute(after))
}

/// Whether `after` (what follows a name) starts with one of the [`PLAIN`] attributes.
fn plain_attribute(after: &str) -> bool {
    let Some(rest) = after.strip_prefix('.') else {
        return false;
    };
    PLAIN.iter().any(|attribute| {
        rest.strip_prefix(attribute)
            .is_some_and(|tail| !tail.starts_with(is_ident))
    })
}

/// Whether `text` may read a variable without naming it: `debug()` prints every value a
/// template sees (and may be called under another name), and a template it includes or
/// imports is not in the text.
fn reaches_unnamed(text: &str) -> bool {
    // Named at all: `(debug)()` or `{% set d = debug %}` call it too.
    let debug = name_uses(text, "debug").next().is_some();
    let statements = text
        .split("{%")
        .skip(1)
        .map(|s| s.trim_start_matches(['-', '+']));
    let loads = statements.map(str::trim_start).any(|s| {
        ["include", "import", "from", "extends"].iter().any(|k| {
            s.strip_prefix(k)
                .is_some_and(|tail| !tail.starts_with(is_ident))
        })
    });
    debug || loads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_read_through_a_text_or_the_status_reads_no_list() {
        for text in [
            "{{ found.stdout }}",
            "{{ found.rc }} {{ found.stdout.split() }}",
            "found.attempts > 1 and found.stderr == ''",
            "{{ x.found }} {{ unfound }} {{ found_it }}",
        ] {
            assert!(!reads_lines_of(text, "found"), "{text}");
        }
        for text in [
            "{{ found }}",
            "{{ found.stdout_lines }}",
            "{{ found.stderr_lines[-1:] }}",
            "{{ found.rc }}{{ found | to_json }}",
            "{{ found['stdout'] }}",
            "{{ found.get('stdout_lines') }}",
            "{{ found.stdout_x }}",
            "{% set found = found %}{{ found.rc }}",
            "echo found {{ 1 }}",
        ] {
            assert!(reads_lines_of(text, "found"), "{text}");
        }
    }

    #[test]
    fn debug_and_included_templates_may_read_anything() {
        for text in [
            "{{ debug() }}",
            "{{ (debug)() }}",
            "{% set d = debug %}{{ d() }}",
            "d: '{{ debug }}'",
            "{% include 'x' %}",
            "{%- import 'x' as y %}",
            "{% from 'x' import y %}",
            "{%+ extends 'x' %}",
        ] {
            assert!(reaches_unnamed(text), "{text}");
        }
        for text in [
            "echo debugging",
            "{{ x.debug() }}",
            "{% if imported %}{% endif %}",
        ] {
            assert!(!reaches_unnamed(text), "{text}");
        }
    }

    const STEPS: &str = "name: t\nhosts: all\nsteps:\n  - {name: one, shell: x, register: one}\n  - {name: two, shell: x, register: two}\n";

    fn keeping(more: &str, hosts: &[HostInPlay]) -> Vec<bool> {
        let text = format!("{STEPS}{more}");
        let path = std::path::Path::new("t.yml");
        let mut playbook = Playbook::parse(path, &text).expect("a playbook");
        decide(&mut playbook, hosts.iter());
        playbook.every_step().map(|s| s.keeps_lines).collect()
    }

    fn with(more: &str) -> Vec<bool> {
        keeping(more, &[])
    }

    #[test]
    fn only_the_results_whose_lists_some_template_reads_keep_them() {
        let read = |shell: &str| with(&format!("  - name: c\n    shell: \"{shell}\"\n"));
        assert_eq!(
            read("echo {{ one.stdout }} {{ two.rc }}"),
            [false, false, false]
        );
        assert_eq!(read("echo {{ one.stdout_lines[0] }}"), [true, false, false]);
        assert_eq!(read("echo {{ two | to_json }}"), [false, true, false]);
        assert_eq!(
            read("echo {{ two.rc }} {{ two.stdout_lines[-1:] }}"),
            [false, true, false]
        );
        assert_eq!(
            read("{% for l in two.stderr_lines %}{{ l }}{% endfor %}"),
            [false, true, false]
        );
        assert_eq!(read("{{ one.rc }}{{ debug() }}"), [true, true, true]);
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
        let play_vars = "vars:\n  n: '{{ one.stdout_lines | length }}'\n  m: one\n";
        assert_eq!(with(play_vars), [true, false]);
        let step_vars = "  - name: c\n    shell: x\n    vars:\n      all: ['{{ two }}']\n";
        assert_eq!(with(step_vars), [false, true, false]);
        let report = "report:\n  lines: '{{ two.stdout_lines | length }}'\n";
        assert_eq!(with(report), [false, true]);
    }

    #[test]
    fn a_hosts_variable_that_reads_the_lists_keeps_them() {
        let mut own = crate::vars::Vars::new();
        own.insert("n".into(), "{{ two.stdout_lines }}".into());
        let host = HostInPlay {
            name: "h".into(),
            vars: crate::vars::Layered::new(Default::default(), own),
        };
        assert_eq!(keeping("", &[host]), [false, true]);
    }

    #[test]
    fn the_gates_staged_hosts_count_though_the_run_does_not_select_them() {
        let dir = std::env::temp_dir().join(format!("fleetup-line-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inventory = dir.join("hosts.ini");
        let staged = "[staging]\ns1 n='{{ two.stdout_lines | length }}'\n";
        std::fs::write(&inventory, format!("{staged}[production]\np1\n")).unwrap();
        let playbook = dir.join("pb.yml");
        let text = "name: t\nhosts: all\npreflight:\n  - {name: one, shell: x, register: one}\nsteps:\n  - {name: two, shell: x, register: two}\naudit: {from: '{{ one.stdout }}', to: v2}\ngate: {require_staged: staging}\n";
        std::fs::write(&playbook, text).unwrap();
        let inputs = crate::play::PlayInputs {
            inventories: vec![inventory],
            playbook,
            limit: Some("production".into()),
            ..Default::default()
        };
        let play = crate::play::prepare(&inputs);
        std::fs::remove_dir_all(&dir).unwrap();
        let play = play.expect("a play");
        let keeps: Vec<bool> = play.playbook.steps.iter().map(|s| s.keeps_lines).collect();
        assert_eq!(keeps, [false, true]);
    }

    #[test]
    fn the_shipped_playbooks_hold_no_hosts_docker_inspect_as_lines() {
        for name in ["simplelogin-upgrade.yml", "simplelogin-status.yml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
            let mut playbook = Playbook::load(&path.join(name)).expect("the shipped playbook");
            decide(&mut playbook, [].iter());
            let keeping: Vec<&str> = (playbook.every_step())
                .filter(|s| s.keeps_lines)
                .filter_map(|s| s.register.as_deref())
                .collect();
            // `kept | default(...)` reads that result whole; `backup` and `restored` stand as
            // words in the scripts' text. A line or two each.
            let expected: &[&str] = match name {
                "simplelogin-upgrade.yml" => &["backup", "kept", "restored"],
                _ => &["backup"],
            };
            assert_eq!(keeping, expected, "{name}");
        }
    }
}
