//! Which reader an inventory file needs, decided as Ansible decides it: by content, with
//! the extension only choosing which readers may try. A `.yml`, `.yaml`, `.json` or
//! extension-less file is read as YAML when it is a YAML mapping, else as INI; any other
//! file (`hosts.ini`, `production`, `inventory.cfg`) as INI. A YAML file that configures an
//! inventory plugin (`plugin: ...`) is refused with the way to export what it makes.

use std::path::{Path, PathBuf};

use super::ini::parse_ini;
use super::list::{is_list_form, read_list};
use super::Inventory;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::yaml::Document;

/// Ansible's default `INVENTORY_IGNORE_EXTS`: files of a folder that are not inventories.
const IGNORED_EXTS: [&str; 12] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];
/// Entries of a folder that are never inventories.
const IGNORED_NAMES: [&str; 3] = ["host_vars", "group_vars", "vars_plugins"];

/// Reads the text of one inventory file, by its content.
pub fn parse_text(file: &Path, text: &str) -> Result<Inventory, Diagnostics> {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "toml" {
        return Err(
            Diagnostic::new(file, "", "TOML inventories are not read by fleetup")
                .hint("export it: ansible-inventory -i FILE --list --export -y > inventory.yml")
                .into(),
        );
    }
    if !matches!(ext, "yml" | "yaml" | "json" | "") {
        return parse_ini(file, text);
    }
    let yaml = Document::parse(file, text);
    match &yaml {
        Ok(doc) if doc.value.is_mapping() => return from_yaml(doc),
        Ok(doc) if doc.value.is_null() => return Inventory::from_document(doc),
        _ => {}
    }
    match (parse_ini(file, text), yaml) {
        (Ok(inv), _) => Ok(inv),
        // Neither: say what the file most likely meant to be.
        (Err(_), Err(yaml)) if !ext.is_empty() || !looks_ini(text) => Err(yaml.into()),
        (Err(ini), _) => Err(ini),
    }
}

/// A YAML mapping: Ansible's YAML inventory, the `--list` JSON form, or a plugin's
/// configuration.
fn from_yaml(doc: &Document) -> Result<Inventory, Diagnostics> {
    if let Some(plugin) = doc.value.get("plugin").and_then(|p| p.as_str()) {
        return Err(doc
            .error(
                "plugin",
                format!(
                    "this configures the inventory plugin `{plugin}`, which fleetup does not run"
                ),
            )
            .hint(format!(
                "export the hosts it makes and give fleetup that: ansible-inventory -i {} --list --export -y > inventory.yml",
                doc.file.display()
            ))
            .into());
    }
    if is_list_form(&doc.value) {
        return read_list(doc).map(|l| l.inventory);
    }
    Inventory::from_document(doc)
}

/// Whether a text that is neither valid YAML nor valid INI was meant as INI: it has a
/// `[section]` line.
fn looks_ini(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        l.starts_with('[') && l.contains(']') && !l.contains(": ")
    })
}

/// The inventory files of a folder given to `-i`, as Ansible walks it: sorted by name,
/// into subfolders, skipping hidden entries, `group_vars`, `host_vars` and the ignored
/// extensions.
pub(super) fn files_in(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Diagnostic::new(dir, "", format!("cannot read folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !ignored(p))
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            files.extend(files_in(&entry)?);
        } else {
            files.push(entry);
        }
    }
    Ok(files)
}

fn ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
    name.starts_with('.')
        || IGNORED_NAMES.contains(&name)
        || IGNORED_EXTS.iter().any(|ext| name.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(file: &str, text: &str) -> Result<Vec<String>, String> {
        parse_text(Path::new(file), text)
            .map(|inv| inv.host_names().map(String::from).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_content_decides_not_the_extension() {
        let ini = "[web]\nw1\nw2\n";
        let yaml = "web:\n  hosts:\n    w1:\n";
        for file in ["hosts", "hosts.yml", "hosts.ini", "production"] {
            assert_eq!(kinds(file, ini).unwrap(), ["w1", "w2"], "{file}");
        }
        for file in ["hosts", "hosts.yml", "hosts.yaml", "hosts.json"] {
            assert_eq!(kinds(file, yaml).unwrap(), ["w1"], "{file}");
        }
        // A plain list of hosts is a YAML string, but an INI inventory.
        assert_eq!(kinds("hosts.yml", "h1\nh2\n").unwrap(), ["h1", "h2"]);
    }

    #[test]
    fn broken_files_get_the_error_of_what_they_look_like() {
        let e = kinds("hosts", "[web]\nw1 novalue\n").unwrap_err();
        assert!(e.contains("hosts:2:1: expected key=value"), "{e}");
        let e = kinds("inv.yml", "all:\n  hosts: [\n").unwrap_err();
        assert!(e.contains("not valid YAML"), "{e}");
    }

    #[test]
    fn plugin_configurations_are_refused_with_the_export_command() {
        let e = kinds(
            "aws_ec2.yml",
            "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
        )
        .unwrap_err();
        assert!(e.contains("inventory plugin `amazon.aws.aws_ec2`"), "{e}");
        assert!(
            e.contains("ansible-inventory -i aws_ec2.yml --list --export -y > inventory.yml"),
            "{e}"
        );
    }
}
