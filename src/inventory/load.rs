//! Reading inventories from disk: the `-i` files (or folders of them) and the
//! `group_vars/` and `host_vars/` folders beside them, as Ansible finds them.

use std::path::{Path, PathBuf};

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::vars::Vars;
use crate::vault::{self, VaultError, VaultSecret};
use crate::yaml::{read_input, Document};

use super::parse::check_vars;
use super::script::{is_script, run_script};
use super::source::{files_in, parse_text};
use super::value::to_vars;
use super::vaulted::strings_of;
use super::{Inventory, Layer};

const VARS_EXTENSIONS: [&str; 4] = ["yml", "yaml", "json", ""];

/// Loads and merges the inventories given with `-i`, in order (a later one wins), and
/// decrypts their vault-encrypted files and values with `secrets`.
pub fn load(sources: &[PathBuf], secrets: &[VaultSecret]) -> Result<Inventory, Diagnostics> {
    let mut inventory = Inventory::default();
    let mut errors = Vec::new();
    let mut vars_dirs = Vec::new();
    for source in sources {
        let (files, dir) = if source.is_dir() {
            (folder_files(source)?, source.clone())
        } else {
            let dir = source.parent().map(Path::to_path_buf).unwrap_or_default();
            (vec![source.clone()], dir)
        };
        for file in files {
            match read_source(&file, secrets) {
                Ok(part) => inventory.merge(part),
                Err(d) => errors.extend(d.0),
            }
        }
        vars_dirs.push(dir);
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    if let Some(cycle) = inventory.find_cycle() {
        let file = sources.first().cloned().unwrap_or_default();
        return Err(Diagnostic::new(&file, "", cycle).into());
    }
    inventory.reconcile();
    for dir in vars_dirs {
        load_vars_dirs(&mut inventory, &dir, Layer::Inventory, secrets, &mut errors);
    }
    errors.extend(inventory.open_vaults(secrets));
    if errors.is_empty() {
        Ok(inventory)
    } else {
        Err(Diagnostics(errors))
    }
}

/// An input file's text, decrypted when the whole file is vault-encrypted (then `true`:
/// every value in it is a secret).
fn read_text(path: &Path, secrets: &[VaultSecret]) -> Result<(String, bool), Diagnostic> {
    let text = read_input(path, "inventory file")?;
    if !vault::is_encrypted(&text) {
        return Ok((text, false));
    }
    let plain = vault::decrypt(&text, secrets).map_err(|e| {
        let d = Diagnostic::new(path, "", format!("vault-encrypted file: {e}"));
        match e {
            VaultError::NoSecret => d.hint("give its password with --vault-password-file FILE, --vault-id [LABEL@]SOURCE or --ask-vault-pass"),
            _ => d,
        }
    })?;
    let plain = String::from_utf8(plain).map_err(|_| {
        Diagnostic::new(
            path,
            "",
            "vault-encrypted file: decrypted, but not UTF-8 text",
        )
    })?;
    Ok((plain, true))
}

/// Adds `DIR/group_vars/` and `DIR/host_vars/` beside the playbook in `dir`, with their
/// place in Ansible's precedence (above those beside the inventory).
pub fn load_playbook_vars(
    inventory: &mut Inventory,
    dir: &Path,
    secrets: &[VaultSecret],
) -> Result<(), Diagnostics> {
    let mut errors = Vec::new();
    load_vars_dirs(inventory, dir, Layer::Playbook, secrets, &mut errors);
    errors.extend(inventory.open_vaults(secrets));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(errors))
    }
}

/// One inventory file, whatever its kind: an executable is run, as Ansible runs it.
fn read_source(path: &Path, secrets: &[VaultSecret]) -> Result<Inventory, Diagnostics> {
    if is_script(path) {
        return run_script(path);
    }
    let (text, encrypted) = read_text(path, secrets)?;
    let mut inventory = parse_text(path, &text)?;
    if encrypted {
        inventory.all_values_secret();
    }
    Ok(inventory)
}

/// The inventory files of a folder given to `-i` (see [`files_in`]).
fn folder_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
    let files = files_in(dir)?;
    if files.is_empty() {
        return Err(Diagnostic::new(dir, "", "folder holds no inventory file").into());
    }
    Ok(files)
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// Applies `DIR/group_vars/` and `DIR/host_vars/` to the groups and hosts they name.
/// A file that names no group or host is almost always a typo, so it is warned about.
fn load_vars_dirs(
    inventory: &mut Inventory,
    dir: &Path,
    layer: Layer,
    secrets: &[VaultSecret],
    errors: &mut Vec<Diagnostic>,
) {
    for (folder, is_group) in [("group_vars", true), ("host_vars", false)] {
        let base = dir.join(folder);
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            let Some(name) = vars_entry_name(&path) else {
                continue;
            };
            let known = if is_group {
                inventory.has_group(&name)
            } else {
                inventory.has_host(&name)
            };
            if !known {
                let mut w = Diagnostic::new(
                    &path,
                    "",
                    format!(
                        "no {} is named `{name}`: file ignored",
                        if is_group { "group" } else { "host" }
                    ),
                );
                let names: Vec<String> = if is_group {
                    inventory.group_names().map(String::from).collect()
                } else {
                    inventory.host_names().map(String::from).collect()
                };
                w.hint = did_you_mean(&name, names.iter().map(String::as_str));
                inventory.warnings.push(w);
                continue;
            }
            let mut found = Vec::new();
            match read_vars_entry(&path, secrets, &mut found) {
                Ok(vars) => {
                    inventory.add_file_vars(is_group, layer, &name, &vars);
                    inventory.secret_values.extend(found);
                }
                Err(d) => errors.extend(d.0),
            }
        }
    }
}

/// `web1.yml`, `web1.yaml`, `web1.json`, `web1` or a folder `web1/` all name `web1`.
fn vars_entry_name(path: &Path) -> Option<String> {
    let file_name = path.file_name()?.to_str()?;
    if file_name.starts_with('.') {
        return None;
    }
    if path.is_dir() {
        return Some(file_name.to_string());
    }
    let ext = extension(path);
    if !VARS_EXTENSIONS.contains(&ext) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    Some(if ext.is_empty() { file_name } else { stem }.to_string())
}

/// A vars file, or every vars file inside a folder (sorted, recursively), merged. The
/// strings of vault-encrypted files go to `secret`.
fn read_vars_entry(
    path: &Path,
    secrets: &[VaultSecret],
    secret: &mut Vec<String>,
) -> Result<Vars, Diagnostics> {
    let mut vars = Vars::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Diagnostic::new(path, "", format!("cannot read folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| vars_entry_name(p).is_some())
            .collect();
        entries.sort();
        for entry in entries {
            crate::vars::overlay(&mut vars, &read_vars_entry(&entry, secrets, secret)?);
        }
        return Ok(vars);
    }
    let (text, encrypted) = read_text(path, secrets)?;
    let doc = Document::parse(path, &text)?;
    if doc.value.is_null() {
        return Ok(vars);
    }
    vars = to_vars(&doc, "", &doc.value)
        .ok_or_else(|| doc.error("", "a vars file is a mapping of name: value"))?;
    if encrypted {
        strings_of(&vars, secret);
    }
    let mut errors = Vec::new();
    check_vars(&doc, "", &vars, &mut errors);
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(Diagnostics(errors))
    }
}
