//! `fleetup inventory`: what fleetup makes of an inventory, in `ansible-inventory`'s own
//! shapes, so that an operator can diff the two.

use fleetup::diagnostic::did_you_mean;
use std::path::Path;

use fleetup::diagnostic::Diagnostic;
use fleetup::exit::Exit;
use fleetup::inventory::{self, Environment, Inventory, Pattern};
use fleetup::ui;
use fleetup::vault;

use super::{print_warnings, CliError};
use crate::cli::{InventoryArgs, InventoryCmdArgs};

/// The inventories given with `-i`, else those Ansible is configured with, read (with the
/// `group_vars/` and `host_vars/` of `playbook_dir`); their warnings printed.
pub(crate) fn load(
    args: &InventoryArgs,
    playbook_dir: Option<&Path>,
) -> Result<Inventory, CliError> {
    let input = |d: Diagnostic| CliError::Input(d.into());
    let env = Environment::of_process();
    let sources = inventory::sources(&args.inventories, &env).map_err(input)?;
    if sources.is_empty() {
        return Err(CliError::NoInventory);
    }
    let vault = inventory::vault_options(&args.vault(), &env).map_err(input)?;
    let secrets = vault::load_secrets(&vault).map_err(input)?;
    let mut inventory = inventory::load(&sources, &secrets)?;
    if let Some(dir) = playbook_dir {
        inventory::load_playbook_vars(&mut inventory, dir, &secrets)?;
    }
    print_warnings(&inventory.warnings);
    Ok(inventory)
}

pub fn inventory(args: &InventoryCmdArgs) -> Result<Exit, CliError> {
    let inventory = load(&args.inventory, args.playbook_dir.as_deref())?;
    let hosts: Vec<String> = match &args.limit {
        Some(limit) => {
            let pattern = Pattern::parse(limit).map_err(CliError::Pattern)?;
            let selection = inventory.select(&pattern);
            for term in &selection.unmatched {
                eprintln!("warning: --limit: `{term}` matches no host or group");
            }
            selection.hosts
        }
        None => inventory.host_names().map(String::from).collect(),
    };
    if args.list {
        println!("{}", ui::inventory::list(&inventory, &hosts, args.export));
    } else if let Some(host) = &args.host {
        if !inventory.has_host(host) {
            return Err(CliError::NoMatch(host.clone()));
        }
        println!("{}", ui::inventory::host(&inventory, host));
    } else {
        let group = args.group.as_deref().unwrap_or("all");
        if !inventory.has_group(group) {
            let hint = did_you_mean(group, inventory.group_names())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(CliError::Pattern(format!(
                "--graph: `{group}` is not a group of the inventory{hint}"
            )));
        }
        println!("{}", ui::inventory::graph(&inventory, group, args.vars));
    }
    Ok(Exit::Success)
}
