//! Templates as playbooks use them: filters, tests, lookups, variables that are templates.
use super::*;
use crate::vars::Vars;
use serde_json::json;
use std::cmp::Ordering;

fn vars(v: serde_json::Value) -> Vars {
    v.as_object().cloned().unwrap()
}

#[test]
fn renders_with_quote_filter() {
    let t = Templates::new();
    let v = vars(json!({"path": "/opt/simple login", "evil": "x; touch /tmp/pwned"}));
    assert_eq!(
        t.render("cd {{ path | quote }} && echo {{ evil | quote }}", &v)
            .unwrap(),
        "cd '/opt/simple login' && echo 'x; touch /tmp/pwned'"
    );
}

#[test]
fn undefined_variable_is_an_error_with_suggestion() {
    let t = Templates::new();
    let v = vars(json!({"sl_version": "v4.66.1"}));
    let e = t.render("pull {{ sl_versoin }}", &v).unwrap_err();
    assert!(e.undefined);
    assert_eq!(
        e.message,
        "undefined variable `sl_versoin` (did you mean `sl_version`?)"
    );
    assert!(t.eval("missing == 1", &v).unwrap_err().undefined);
}

#[test]
fn defaults_and_loops_do_not_count_as_undefined() {
    let t = Templates::new();
    let v = vars(json!({"xs": [1, 2]}));
    assert_eq!(
        t.render(
            "{% for x in xs %}{{ x }}{% endfor %}{{ y | default('d') }}",
            &v
        )
        .unwrap(),
        "12d"
    );
    assert!(!t.eval("y is defined", &v).unwrap());
    let e = t
        .render("{{ y | default('d') }} {{ y | quote }}", &v)
        .unwrap_err();
    assert_eq!(
        e.message, "undefined variable `y`",
        "one unguarded use is enough"
    );
    assert_eq!(
        t.render("{{ y | quote }}", &v).unwrap_err().message,
        "undefined variable `y`"
    );
}

#[test]
fn variables_may_be_templates() {
    let t = Templates::new();
    let v = vars(json!({
        "app": "/opt/sl",
        "backups": "{{ app }}/backups",
        "dump": "{{ backups }}/db.sql.gz",
        "list": ["{{ app }}"],
    }));
    assert_eq!(
        t.render("{{ dump }} {{ list[0] }}", &v).unwrap(),
        "/opt/sl/backups/db.sql.gz /opt/sl"
    );
    let cyclic = vars(json!({"a": "{{ b }}", "b": "{{ a }}"}));
    let e = t.render("{{ a }}", &cyclic).unwrap_err();
    assert!(e.message.contains("refer to each other"), "{}", e.message);
    let broken = vars(json!({"a": "{{ nope }}"}));
    let e = t.render("{{ a }}", &broken).unwrap_err();
    assert_eq!(e.message, "in variable `a`: undefined variable `nope`");
    assert!(e.undefined);
}

/// minijinja lists `o` as read where the template sets it in both branches of an `if`
/// first: a variable `o` that reads `a` back is no cycle, as Jinja renders it.
#[test]
fn a_cycle_through_a_name_the_template_sets_itself_is_no_cycle() {
    let sets_o = "{% if c %}{% set o = 1 %}{% else %}{% set o = 2 %}{% endif %}{{ o }}";
    let v = vars(json!({"o": "{{ a }}!", "a": sets_o, "c": true}));
    // Either variable worked out first, in a process that has seen neither.
    for (source, expected) in [("{{ a }} {{ o }}", "1 1!"), ("{{ o }} {{ a }}", "1! 1")] {
        assert_eq!(Templates::new().render(source, &v).unwrap(), expected);
    }
    // Longer, and with a real cycle beside it that is still one.
    let v = vars(json!({"o": "{{ p }}", "p": "{{ a }}", "a": sets_o, "c": false}));
    assert_eq!(Templates::new().render("{{ o }}{{ a }}", &v).unwrap(), "22");
    let v = vars(json!({"o": "{{ x }}", "x": "{{ o }}", "a": sets_o, "c": false}));
    let e = Templates::new().render("{{ a }}{{ x }}", &v).unwrap_err();
    assert!(e.message.contains("refer to each other"), "{}", e.message);
}

#[test]
fn a_variable_that_is_one_expression_keeps_its_type() {
    let t = Templates::new();
    let v = vars(json!({
        "found": {"stdout": r#"{"containers": [{"Name": "/sl-app"}], "size": 3}"#},
        "facts": "{{ found.stdout | from_json }}",
        "app": "{{ facts.containers[0].Name }}",
        "bigger": "{{ facts.size + 1 }}",
    }));
    assert_eq!(t.render("{{ app }} {{ bigger }}", &v).unwrap(), "/sl-app 4");
    assert!(t.eval("facts.size == 3 and bigger == 4", &v).unwrap());
    let reached = t.variables_reached("{{ app }}", false, &v).unwrap();
    assert!(reached.contains("found"), "{reached:?}");
    let garbage =
        vars(json!({"found": {"stdout": "oops"}, "facts": "{{ found.stdout | from_json }}"}));
    let e = t.render("{{ facts }}", &garbage).unwrap_err();
    assert!(e.message.contains("not JSON"), "{}", e.message);
    assert!(!e.undefined);
}

#[test]
fn a_rendered_variable_is_never_rendered_again() {
    let t = Templates::new();
    let v = vars(json!({
        "fmt": "docker inspect --format '{% raw %}{{.Name}}{% endraw %}' {{ name }}",
        "name": "sl-app",
        "both": "{{ fmt }}; {{ fmt }}",
    }));
    assert_eq!(
        t.render("{{ both }} && {{ fmt }}", &v).unwrap(),
        "docker inspect --format '{{.Name}}' sl-app; docker inspect --format '{{.Name}}' sl-app && docker inspect --format '{{.Name}}' sl-app"
    );
}

#[test]
fn docker_filters_read_inspect_output() {
    let t = Templates::new();
    let v = vars(json!({
        "c": {"Name": "/sl-app", "Config": {"Env": ["A=1", "B=2"], "Cmd": ["gunicorn"]},
              "HostConfig": {"PortBindings": {"7777/tcp": [{"HostIp": "127.0.0.1", "HostPort": "7777"}]}}},
        "i": {"Config": {"Env": ["A=1"], "Cmd": ["gunicorn"]}},
    }));
    let out = t
        .render(
            "{{ c | docker_run_options(i) | map('quote') | join(' ') }}|{{ c | docker_run_command(i) | length }}|{{ c | docker_published(7777) }}",
            &v,
        )
        .unwrap();
    assert_eq!(
        out,
        "--name sl-app -p 127.0.0.1:7777:7777 -e 'B=2'|0|127.0.0.1:7777"
    );
}

#[test]
fn inspect_output_by_container_name_and_label() {
    let t = Templates::new();
    let found = json!([
        {"Name": "/sl-db", "Config": {"Labels": null}},
        {"Name": "/sl-app", "Id": "x", "Config": {"Labels": {"svc": "app"}}}
    ]);
    let v = vars(json!({
        "found": {"stdout": found.to_string()},
        "cs": "{{ found.stdout | from_json | docker_by_name }}",
        "plain": found,
    }));
    let out = t
        .render(
            "{{ cs | list }} {{ cs['sl-app'].Id }} {{ cs | docker_label('svc') }} {{ (plain | docker_by_name)['sl-app'].Id }} {{ 'x' | docker_by_name | length }} {{ [] | docker_label('svc') | length }}",
            &v,
        )
        .unwrap();
    assert_eq!(out, "['sl-app', 'sl-db'] x {'sl-app': 'app'} x 0 0");
}

#[test]
fn conditions() {
    let t = Templates::new();
    let v = vars(json!({"current": {"stdout": "v4.65.0", "rc": 0}, "target": "v4.66.1"}));
    assert!(t.eval("current.rc == 0", &v).unwrap());
    assert!(t
        .eval("current.stdout is version(target, '<')", &v)
        .unwrap());
    assert!(!t
        .eval("current.stdout is version('v4.65.0', '!=')", &v)
        .unwrap());
    assert!(t.eval("'yes' | bool", &v).unwrap());
    let e = t.eval("{{ current.rc == 0 }}", &v).unwrap_err();
    assert!(e.message.contains("bare expression"), "{}", e.message);
}

#[test]
fn syntax_errors_are_reported() {
    let t = Templates::new();
    let e = t.render("echo {{ x ", &Vars::new()).unwrap_err();
    assert!(e.message.starts_with("syntax error"), "{}", e.message);
    assert!(!e.undefined);
}

#[test]
fn a_pinned_version_is_a_release_number() {
    let t = Templates::new();
    let v = vars(json!({"a": "v4.66.1", "b": "4.66.1", "c": "latest", "d": 4}));
    assert!(t
        .eval("a is pinned_version and b is pinned_version", &v)
        .unwrap());
    assert!(!t
        .eval("c is pinned_version or d is pinned_version", &v)
        .unwrap());
}

#[test]
fn version_order_is_numeric() {
    assert_eq!(
        compare_versions("v4.10.0", "v4.9.9"),
        Some(Ordering::Greater)
    );
    assert_eq!(compare_versions("4.66", "v4.66.0"), Some(Ordering::Equal));
    assert_eq!(compare_versions("latest", "v4.66.0"), None);
}

#[test]
fn lookups_read_the_environment_and_files() {
    let t = Templates::new();
    std::env::set_var("FLEETUP_TEST_LOOKUP", "s3cr3t value");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from a file\n").unwrap();
    let v = vars(json!({
        "pw": "{{ lookup('env', 'FLEETUP_TEST_LOOKUP') }}",
        "pw_file": file.to_str().unwrap(),
    }));
    assert_eq!(t.render("{{ pw | quote }}", &v).unwrap(), "'s3cr3t value'");
    assert_eq!(
        t.render("{{ lookup('file', pw_file) }}", &v).unwrap(),
        "from a file"
    );
    let unset = t
        .render("{{ lookup('env', 'FLEETUP_TEST_UNSET_VARIABLE') }}", &v)
        .unwrap_err();
    assert!(unset.message.contains("is not set"), "{}", unset.message);
    assert_eq!(
        t.render(
            "{{ lookup('env', 'FLEETUP_TEST_UNSET_VARIABLE', default='x') }}",
            &v
        )
        .unwrap(),
        "x"
    );
    let missing = t
        .render("{{ lookup('file', '/nonexistent/pw') }}", &v)
        .unwrap_err();
    assert!(
        missing.message.contains("/nonexistent/pw"),
        "{}",
        missing.message
    );
    let unknown = t.render("{{ lookup('vault', 'x') }}", &v).unwrap_err();
    assert!(unknown.message.contains("not known"), "{}", unknown.message);
}

#[test]
fn a_command_held_in_a_variable_is_quoted_word_by_word() {
    // `sl_compose: docker compose` is two words of a command; each is quoted, so a value
    // with shell in it stays arguments of the first word.
    let t = Templates::new();
    let source = "{{ c | split | map('quote') | join(' ') }} up -d";
    let v = vars(json!({"c": "docker compose"}));
    assert_eq!(t.render(source, &v).unwrap(), "docker compose up -d");
    let v = vars(json!({"c": "docker compose; touch /tmp/pwned"}));
    assert_eq!(
        t.render(source, &v).unwrap(),
        "docker 'compose;' touch /tmp/pwned up -d"
    );
}

#[test]
fn a_slice_or_a_name_read_to_set_itself_reaches_the_template_host_by_host() {
    // minijinja's own list of a template's variables misses these reads: they rendered
    // as "undefined", and a variable reading one was kept without it among its inputs.
    let t = Templates::new();
    let host = |lines: serde_json::Value| {
        vars(json!({
            "out": {"stdout_lines": lines},
            "last": "{{ out.stdout_lines[-1:] | join('') }}",
            "n": 2,
        }))
    };
    let (a, b) = (host(json!(["x", "y", "a"])), host(json!(["x", "y", "b"])));
    for _ in 0..2 {
        assert_eq!(t.render("{{ last }}", &a).unwrap(), "a");
        assert_eq!(t.render("{{ last }}", &b).unwrap(), "b");
    }
    let set_n = "{% set n = n + 1 %}{{ out.stdout_lines[:n] | join(',') }}";
    assert_eq!(t.render(set_n, &a).unwrap(), "x,y,a");
    assert!(t.eval("out.stdout_lines[2:] == ['b']", &b).unwrap());
    let e = t.render("{{ missing[1:] }}", &a).unwrap_err();
    assert_eq!(e.message, "undefined variable `missing`");
}

#[test]
fn a_name_a_template_may_set_itself_is_not_required_to_be_defined() {
    // Read where it may be undefined by design: handed to the template when defined, never
    // an "undefined variable" when not.
    let t = Templates::new();
    let with = vars(json!({"x": "host", "k": "c"}));
    let without = vars(json!({"k": "c"}));
    let default = "{% set x = x | default('d') %}[{{ x }}]";
    assert_eq!(t.render(default, &with).unwrap(), "[host]");
    assert_eq!(t.render(default, &without).unwrap(), "[d]");
    let both_ways = "{% if k %}{% set o = '-a' %}{% else %}{% set o = '' %}{% endif %}";
    assert_eq!(
        t.render(&format!("{both_ways}{{{{ o }}}}"), &without)
            .unwrap(),
        "-a"
    );
    let again = format!("{both_ways}{{% set o = o ~ ' -v' %}}{{{{ o }}}}");
    assert_eq!(t.render(&again, &without).unwrap(), "-a -v");
    let in_block = "{% filter upper %}{% set q = 'b' %}{% endfilter %}{{ q }}";
    assert_eq!(t.render(in_block, &without).unwrap(), "b");
    let filtered = "{% filter replace(q, 'Z') %}{% set q = 'b' %}abc{% endfilter %}";
    assert_eq!(t.render(filtered, &without).unwrap(), "aZc");
    let later = "{% macro m(p=r, r=1) %}{{ p }}{% endmacro %}{{ m() }}";
    assert_eq!(t.render(later, &without).unwrap(), "1");
    // What else is missing is named, not the name left to its default.
    let out = vars(json!({"out": {"stdout_lines": []}}));
    let e = t
        .render(
            "{% set svc = svc | default('app') %}{{ svc }} {{ out.stdout_lines[0] }}",
            &out,
        )
        .unwrap_err();
    assert!(!e.undefined, "{}", e.message);
    assert!(!e.message.contains("svc"), "{}", e.message);
}

#[test]
fn what_a_variable_reads_changing_is_seen_at_once_host_by_host() {
    // One Templates for a whole run: values worked out for one host, or before a step
    // registered its output, must never be served for other inputs.
    let t = Templates::new();
    let host = |stdout: &str| {
        vars(json!({
            "found": {"stdout": stdout, "rc": 0},
            "facts": "{{ found.stdout | from_json }}",
            "app": "{{ facts.containers[0].Name }}",
            "cmd": "docker restart {{ app | quote }}",
        }))
    };
    let a = host(r#"{"containers": [{"Name": "/sl-app"}]}"#);
    let b = host(r#"{"containers": [{"Name": "/other app"}]}"#);
    for _ in 0..2 {
        assert_eq!(t.render("{{ cmd }}", &a).unwrap(), "docker restart /sl-app");
        assert_eq!(
            t.render("{{ cmd }}", &b).unwrap(),
            "docker restart '/other app'"
        );
        assert!(t.eval("app == '/sl-app'", &a).unwrap());
    }
    // The same text in another key order is another value: a loop over it shows the order.
    let ordered =
        |v: serde_json::Value| vars(json!({"m": v, "keys": "{{ m | list | join(',') }}"}));
    let ab = t
        .render("{{ keys }}", &ordered(json!({"a": 1, "b": 2})))
        .unwrap();
    let ba = t
        .render("{{ keys }}", &ordered(json!({"b": 2, "a": 1})))
        .unwrap();
    assert_eq!(
        ab,
        Templates::new()
            .render("{{ keys }}", &ordered(json!({"a": 1, "b": 2})))
            .unwrap()
    );
    assert_eq!(
        ba,
        Templates::new()
            .render("{{ keys }}", &ordered(json!({"b": 2, "a": 1})))
            .unwrap()
    );
    // A failure is the same each time, and does not stick to other inputs.
    let broken = host("not json");
    for _ in 0..2 {
        let e = t.render("{{ cmd }}", &broken).unwrap_err();
        assert!(
            e.message.starts_with("in variable `facts`: "),
            "{}",
            e.message
        );
    }
    assert_eq!(t.render("{{ cmd }}", &a).unwrap(), "docker restart /sl-app");
}

#[test]
fn a_lookup_is_read_again_at_each_render() {
    let t = Templates::new();
    let v = vars(json!({"pw": "{{ lookup('env', 'FLEETUP_TEST_LOOKUP_AGAIN') }}"}));
    std::env::set_var("FLEETUP_TEST_LOOKUP_AGAIN", "one");
    assert_eq!(t.render("{{ pw }}", &v).unwrap(), "one");
    std::env::set_var("FLEETUP_TEST_LOOKUP_AGAIN", "two");
    assert_eq!(t.render("{{ pw }}", &v).unwrap(), "two");
}

#[test]
fn a_host_variable_that_changes_is_read_anew_through_its_notes() {
    let t = Templates::new();
    let mut host = crate::vars::HostVars::new(vars(json!({
        "found": {"stdout": "a"},
        "derived": "{{ found.stdout }}x",
    })));
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "ax");
    host.insert("found".into(), json!({"stdout": "b"}));
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "bx");
    let laid = vars(json!({"found": {"stdout": "c"}}));
    host.overlay_noted(laid, &crate::vars::ContentNotes::default());
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "cx");
    // A step's own variable of the same name hides the host's, notes and all.
    let top = vars(json!({"found": {"stdout": "d"}}));
    let step = crate::vars::Over {
        base: &host,
        top: std::borrow::Cow::Borrowed(&top),
        registered: false,
    };
    assert_eq!(t.render("{{ derived }}", &step).unwrap(), "dx");
    assert_eq!(t.render("{{ derived }}", &host.clone()).unwrap(), "cx");
}

#[test]
fn notes_made_by_other_templates_are_not_taken_for_their_own() {
    // Two memos give the same ids to different contents: here `found` is id 2 in both.
    let other = Templates::new();
    let plain = vars(json!({"found": "zzz", "derived": "{{ found }}x"}));
    assert_eq!(other.render("{{ derived }}", &plain).unwrap(), "zzzx");
    let t = Templates::new();
    let host = crate::vars::HostVars::new(vars(json!({"found": "a", "derived": "{{ found }}x"})));
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "ax");
    assert_eq!(other.render("{{ derived }}", &host).unwrap(), "ax");
}

#[test]
fn what_a_host_noted_about_a_chain_of_facts_holds_until_a_link_changes() {
    let t = Templates::new();
    let mut host = crate::vars::HostVars::new(vars(json!({
        "found": {"stdout": "a"},
        "mid": "{{ found.stdout }}-",
        "derived": "{{ mid }}x",
        "pw": "{{ lookup('env', 'FLEETUP_TEST_NOTED_LOOKUP') }}",
        "through": "{{ pw }}!",
    })));
    for _ in 0..2 {
        assert_eq!(t.render("{{ derived }}", &host).unwrap(), "a-x");
    }
    // A layer that sets what a link of the chain reads hides the host's notes.
    let top = vars(json!({"found": {"stdout": "d"}}));
    let step = crate::vars::Over {
        base: &host,
        top: std::borrow::Cow::Borrowed(&top),
        registered: false,
    };
    assert_eq!(t.render("{{ derived }}", &step).unwrap(), "d-x");
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "a-x");
    host.insert("found".into(), json!({"stdout": "b"}));
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "b-x");
    // A fact that reads a lookup through another is read again at every render.
    std::env::set_var("FLEETUP_TEST_NOTED_LOOKUP", "one");
    assert_eq!(t.render("{{ through }}", &host).unwrap(), "one!");
    std::env::set_var("FLEETUP_TEST_NOTED_LOOKUP", "two");
    assert_eq!(t.render("{{ through }}", &host).unwrap(), "two!");
}

#[test]
fn a_fact_the_memo_forgot_is_rendered_again_from_the_host_notes() {
    let t = Templates::new();
    let host = crate::vars::HostVars::new(vars(json!({
        "found": "a",
        "derived": "{{ found }}x",
        "blob": "b".repeat(17 << 20),
        "huge": "{{ blob }}",
    })));
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "ax");
    // Past the memo's 16 MB, the oldest values make way: `derived`'s among them.
    assert_eq!(t.render("{{ huge | length }}", &host).unwrap(), "17825792");
    assert_eq!(t.render("{{ derived }}", &host).unwrap(), "ax");
}

#[test]
fn a_noted_fact_that_failed_fails_again_in_the_same_rendering() {
    let t = Templates::new();
    let host = crate::vars::HostVars::new(vars(json!({
        "found": "not json",
        "facts": "{{ found | from_json }}",
    })));
    assert!(t.render("{{ facts }}", &host).is_err());
    // The host's notes now give `facts` its id; one rendering asks for it twice.
    let mut rendering = t.with(&host);
    for _ in 0..2 {
        let e = rendering.render("{{ facts }}").unwrap_err();
        assert!(
            e.message.starts_with("in variable `facts`: "),
            "{}",
            e.message
        );
    }
}

#[test]
fn a_retired_host_leaves_kept_only_what_other_hosts_share() {
    let t = Templates::new();
    let defaults = std::sync::Arc::new(vars(json!({
        "dir": "/opt/sl",
        "script": "ls {{ dir }}",
        "facts": "{{ found.stdout | from_json }}",
        "app": "{{ facts.name }}",
    })));
    let host = |name: &str| {
        let mut host =
            crate::vars::HostVars::new(crate::vars::Layered::new(defaults.clone(), Vars::new()));
        let found = format!(r#"{{"name": "{name}"}}"#);
        host.insert("found".into(), json!({ "stdout": found }));
        host
    };
    let (a, b) = (host("a"), host("b"));
    assert_eq!(
        t.render("{{ script }} {{ app }}", &a).unwrap(),
        "ls /opt/sl a"
    );
    assert_eq!(
        t.render("{{ script }} {{ app }}", &b).unwrap(),
        "ls /opt/sl b"
    );
    // `script` once for both; `facts` and `app` for each.
    assert_eq!(t.memo().kept(), 5);
    t.retire(&a);
    assert_eq!(t.memo().kept(), 3);
    t.retire(&b);
    assert_eq!(t.memo().kept(), 1);
    // What is forgot is worked out again if it is read after all.
    assert_eq!(t.render("{{ app }}", &a).unwrap(), "a");
}

#[test]
fn what_a_host_registered_is_never_rendered_whatever_braces_it_holds() {
    let t = Templates::new();
    let said = json!({"stdout": "{{ 6 * 7 }}{% if true %}!{% endif %}"});
    let mut host = crate::vars::HostVars::new(vars(json!({"heard": "{{ out.stdout }}"})));
    host.insert("out".into(), said.clone());
    let literal = "{{ 6 * 7 }}{% if true %}!{% endif %}";
    assert_eq!(t.render("{{ out.stdout }}", &host).unwrap(), literal);
    assert_eq!(
        t.render("{{ heard }}", &host).unwrap(),
        literal,
        "through a variable"
    );
    // A step's own result, in its conditions.
    let own = crate::vars::Over {
        base: &host,
        top: std::borrow::Cow::Owned(vars(json!({ "result": said }))),
        registered: true,
    };
    assert!(t.eval("result.stdout.startswith('{{')", &own).unwrap());
    // A variable the operator wrote is a template.
    assert_eq!(
        t.render("{{ heard }}", &vars(json!({"heard": "{{ 6 * 7 }}"})))
            .unwrap(),
        "42"
    );
}
