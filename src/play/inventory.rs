//! The inventory of a play: the sources `-i` names (or Ansible's configuration does), the
//! vault passwords, and the `group_vars/` and `host_vars/` beside the playbook, which
//! Ansible layers above those beside the inventory.

use std::path::Path;

use super::PlayInputs;
use crate::diagnostic::Diagnostic;
use crate::inventory::{self, Environment, Inventory};
use crate::vault;

/// Reads the play's inventory; every problem goes to `errors`.
pub(super) fn read_inventory(
    inputs: &PlayInputs,
    errors: &mut Vec<Diagnostic>,
) -> Option<Inventory> {
    let env = Environment::of_process();
    let sources = match inventory::sources(&inputs.inventories, &env) {
        Ok(sources) if sources.is_empty() => {
            errors.push(Diagnostic::new(
                Path::new("<command line>"),
                "-i",
                "no inventory given: pass -i INVENTORY, or set ANSIBLE_INVENTORY or an ansible.cfg's inventory",
            ));
            return None;
        }
        Ok(sources) => sources,
        Err(d) => {
            errors.push(d);
            return None;
        }
    };
    let secrets = inventory::vault_options(&inputs.vault, &env)
        .and_then(|opts| vault::load_secrets(&opts))
        .map_err(|d| errors.push(d))
        .ok()?;
    let mut inventory = inventory::load(&sources, &secrets)
        .map_err(|d| errors.extend(d.0))
        .ok()?;
    // A built-in playbook has no folder of its own.
    if inputs.playbook_text.is_none() {
        let dir = inputs.playbook.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        inventory::load_playbook_vars(&mut inventory, dir, &secrets)
            .map_err(|d| errors.extend(d.0))
            .ok()?;
    }
    Some(inventory)
}
