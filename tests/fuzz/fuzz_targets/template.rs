//! Templates and conditions (minijinja with fleetup's filters and tests, fuel-limited).
//! The input is rendered as a template and evaluated as a condition, with fixed variables
//! that include templated ones (expanded on use) and a pair that refer to each other.
//! The engine has fuel set, so a hang here is a bug, as is a panic.
#![no_main]

use std::sync::OnceLock;

use fleetup::template::Templates;
use fleetup::vars::Vars;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn vars() -> &'static Vars {
    static VARS: OnceLock<Vars> = OnceLock::new();
    VARS.get_or_init(|| {
        json!({
            "app": "/opt/simple login",
            "target": "v4.66.1",
            "evil": "x; touch /tmp/pwned",
            "n": 3,
            "f": 2.5,
            "big": 9_007_199_254_740_993u64,
            "neg": -7,
            "yes": true,
            "nothing": null,
            "xs": [1, "two", 3.0, [4], {"five": 5}],
            "current": {"stdout": "v4.65.0", "rc": 0, "stdout_lines": ["v4.65.0"],
                        "nested": {"deep": {"deeper": "bottom"}}},
            "backups": "{{ app }}/backups",
            "dump": "{{ backups }}/db.sql.gz",
            "paths": ["{{ app }}", {"b": "{{ backups }}"}],
            "loop_a": "{{ loop_b }}",
            "loop_b": "{{ loop_a }}",
        })
        .as_object()
        .cloned()
        .unwrap()
    })
}

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(Templates::new)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let t = templates();
    let _ = t.render(text, vars());
    let _ = t.eval(text, vars());
    let _ = t.variables_of_template(text);
    let _ = t.variables_of_expression(text);
});
