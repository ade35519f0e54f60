//! Inventory YAML text → Document → Inventory, then every query an inventory serves:
//! each host's variables and each group's hosts. Errors are fine; a panic, a hang or
//! unbounded memory is a bug, and so is an inline host variable that the host does not get
//! (checked for host names without a `[range]`: the variable's name must be among the
//! host's variables, whatever value a later definition gave it).
#![no_main]

use std::path::Path;

use fleetup::inventory::Inventory;
use fleetup::yaml::Document;
use libfuzzer_sys::fuzz_target;
use serde_yaml::Value;

/// (host, variable) for every inline host variable of the document, walking groups as
/// Inventory::read_group does (top-level groups, their `children`, their `hosts`).
fn inline_host_vars(groups: &Value, out: &mut Vec<(String, String)>, depth: usize) {
    let Some(groups) = groups.as_mapping() else {
        return;
    };
    if depth > 200 {
        return;
    }
    for def in groups.values() {
        let Some(def) = def.as_mapping() else {
            continue;
        };
        if let Some(children) = def.get("children") {
            inline_host_vars(children, out, depth + 1);
        }
        let Some(hosts) = def.get("hosts").and_then(Value::as_mapping) else {
            continue;
        };
        for (host, vars) in hosts {
            let (Some(host), Some(vars)) = (host.as_str(), vars.as_mapping()) else {
                continue;
            };
            if host.contains('[') {
                continue;
            }
            for name in vars.keys().filter_map(Value::as_str) {
                out.push((host.to_string(), name.to_string()));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = Document::parse(Path::new("inv.yml"), text) else {
        return;
    };
    let Ok(inventory) = Inventory::from_document(&doc) else {
        return;
    };
    let hosts: Vec<String> = inventory.host_names().map(str::to_string).collect();
    for host in &hosts {
        let vars = inventory.host_vars(host);
        assert_eq!(
            vars.get("inventory_hostname").and_then(|v| v.as_str()),
            Some(host.as_str()),
            "inventory_hostname of {host}"
        );
        assert!(vars.get("group_names").is_some_and(|v| v.is_array()));
    }
    let groups: Vec<String> = inventory.group_names().map(str::to_string).collect();
    for group in &groups {
        assert!(inventory.has_group(group), "group_names lists {group}");
        for host in inventory.group_hosts(group) {
            assert!(
                inventory.has_host(host),
                "group {group} has unknown host {host}"
            );
        }
    }
    assert_eq!(inventory.group_hosts("all").len(), hosts.len());
    let mut inline = Vec::new();
    inline_host_vars(&doc.value, &mut inline, 0);
    for (host, name) in inline {
        assert!(
            inventory.host_vars(&host).contains_key(&name),
            "host `{host}` lost its inline variable `{name}`"
        );
    }
});
