//! Playbook YAML text → Playbook::parse (shapes, types, names, template syntax). A playbook
//! that parses is then validated for one host and previewed, as `fleetup check`/`plan` do:
//! that renders every template and condition it holds.
#![no_main]

use std::path::Path;

use fleetup::play::{validate, HostInPlay};
use fleetup::playbook::Playbook;
use fleetup::vars::Layered;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(playbook) = Playbook::parse(Path::new("play.yml"), text) else {
        return;
    };
    assert!(playbook.preflight_len <= playbook.steps.len());
    // A host as play.rs builds it: the playbook's defaults under the inventory's values.
    let own = json!({
        "inventory_hostname": "sl-1",
        "group_names": ["production"],
        "ansible_host": "192.0.2.10",
        "sl_app_path": "/opt/simplelogin",
        "target": "v4.66.1",
        "fleetup_run_id": "",
    })
    .as_object()
    .unwrap()
    .clone();
    let host = HostInPlay {
        name: "sl-1".into(),
        vars: Layered::new(playbook.vars.clone(), own),
    };
    let _ = validate(&playbook, std::slice::from_ref(&host));
    let _ = playbook.preview(&host.vars);
});
