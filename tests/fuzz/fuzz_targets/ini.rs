//! INI inventory text → Inventory (sections, host lines split as shlex splits them, values
//! typed as Python literals), then every query an inventory serves and the
//! `fleetup inventory` renderings. Errors are fine; a panic, a hang or unbounded memory is
//! a bug, and so is a host without `inventory_hostname`, or a group listing a host the
//! inventory does not have.
#![no_main]

use std::path::Path;

use fleetup::inventory::parse_ini;
use fleetup::ui::inventory::{graph, list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(inventory) = parse_ini(Path::new("hosts.ini"), text) else {
        return;
    };
    let hosts: Vec<String> = inventory.host_names().map(str::to_string).collect();
    for host in &hosts {
        let vars = inventory.host_vars(host);
        assert_eq!(
            vars.get("inventory_hostname").and_then(|v| v.as_str()),
            Some(host.as_str())
        );
    }
    let groups: Vec<String> = inventory.group_names().map(str::to_string).collect();
    for group in &groups {
        for host in inventory.group_hosts(group) {
            assert!(
                inventory.has_host(host),
                "group {group} has unknown host {host}"
            );
        }
    }
    assert!(inventory.has_group("all") && inventory.has_group("ungrouped"));
    let json = list(&inventory, &hosts, false);
    assert!(
        serde_json::from_str::<serde_json::Value>(&json).is_ok(),
        "{json}"
    );
    if groups.len() < 50 {
        let _ = graph(&inventory, "all", true);
    }
});
