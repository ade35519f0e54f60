//! Vault-encrypted values in an inventory. Reading keeps a `!vault` value as the object
//! Ansible's own JSON writes for one (`{"__ansible_vault": "$ANSIBLE_VAULT;..."}`, which a
//! script's JSON may hold too) with the place it was written; [`Inventory::open_vaults`]
//! then decrypts every one with the operator's passwords, so reading stays free of
//! secrets and a wrong password is one error per value, each at its line, before any
//! host is contacted. Each plaintext is kept for redaction.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::parse::check_value;
use super::Inventory;
use crate::diagnostic::{Diagnostic, Pos};
use crate::vars::Vars;
use crate::vault::{self, VaultError, VaultSecret};

const VAULT_KEY: &str = "__ansible_vault";
const FILE_KEY: &str = "__fleetup_file";
const LINE_KEY: &str = "__fleetup_line";
const COLUMN_KEY: &str = "__fleetup_column";

/// Whether `value` is an encrypted value not yet decrypted.
pub(super) fn is_marker(value: &Value) -> bool {
    value.get(VAULT_KEY).is_some_and(Value::is_string)
}

/// The placeholder of an encrypted value written at `pos` of `file`.
pub(super) fn marker(ciphertext: &str, file: &Path, pos: Option<Pos>) -> Value {
    let mut m = Map::new();
    m.insert(VAULT_KEY.into(), ciphertext.into());
    m.insert(FILE_KEY.into(), file.display().to_string().into());
    if let Some(pos) = pos {
        m.insert(LINE_KEY.into(), pos.line.into());
        m.insert(COLUMN_KEY.into(), pos.column.into());
    }
    Value::Object(m)
}

impl Inventory {
    /// Decrypts every vault value with `secrets`; each that cannot be opened is reported.
    pub(super) fn open_vaults(&mut self, secrets: &[VaultSecret]) -> Vec<Diagnostic> {
        let mut opener = Opener {
            secrets,
            errors: Vec::new(),
            plaintexts: Vec::new(),
            ciphertexts: HashMap::new(),
        };
        for def in self.hosts.values_mut() {
            opener.vars(&mut def.vars, "");
            opener.vars(&mut def.file_vars, "");
            opener.vars(&mut def.play_vars, "");
        }
        for def in self.groups.values_mut() {
            opener.vars(&mut def.vars, "");
            opener.vars(&mut def.file_vars, "");
            opener.vars(&mut def.play_vars, "");
        }
        self.secret_values.extend(opener.plaintexts);
        self.ciphertexts.extend(opener.ciphertexts);
        opener.errors
    }

    /// Marks every string of the inventory secret: it was read from an encrypted file.
    pub(super) fn all_values_secret(&mut self) {
        let mut found = Vec::new();
        for def in self.hosts.values() {
            strings_of(&def.vars, &mut found);
        }
        for def in self.groups.values() {
            strings_of(&def.vars, &mut found);
        }
        self.secret_values.extend(found);
    }

    /// A value as `ansible-inventory` shows it: a decrypted `!vault` value as the object
    /// Ansible writes for it (its ciphertext), any other secret value redacted.
    pub fn shown(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => match self.ciphertexts.get(s) {
                Some(cipher) => {
                    let mut m = Map::new();
                    m.insert(VAULT_KEY.into(), cipher.as_str().into());
                    Value::Object(m)
                }
                None if self.secret_values.contains(s) => crate::secret::REDACTED.into(),
                None => value.clone(),
            },
            Value::Array(items) => items.iter().map(|v| self.shown(v)).collect(),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.shown(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The values that were vault-encrypted, decrypted: secrets, hidden wherever fleetup
    /// shows or keeps text.
    pub fn secret_values(&self) -> &[String] {
        &self.secret_values
    }
}

struct Opener<'a> {
    secrets: &'a [VaultSecret],
    errors: Vec<Diagnostic>,
    plaintexts: Vec<String>,
    ciphertexts: HashMap<String, String>,
}

impl Opener<'_> {
    fn vars(&mut self, vars: &mut Vars, path: &str) {
        for (name, value) in vars.iter_mut() {
            let field = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            self.value(value, &field);
        }
    }

    fn value(&mut self, value: &mut Value, field: &str) {
        if is_marker(value) {
            let Some(marker) = value.as_object() else {
                return;
            };
            let place = place(marker);
            if let Some(text) = self.open(marker, field) {
                *value = Value::String(text);
                // A variable fleetup relies on (`ansible_port`...) is checked once readable.
                if let Err(m) = check_value(field, value) {
                    let (file, pos) = place;
                    self.errors
                        .push(Diagnostic::new(Path::new(&file), field, m).at(pos));
                }
            }
            return;
        }
        match value {
            Value::Object(map) => self.vars(map, field),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &format!("{field}[{i}]"));
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, marker: &Map<String, Value>, field: &str) -> Option<String> {
        let ciphertext = marker.get(VAULT_KEY).and_then(Value::as_str).unwrap_or("");
        let (file, pos) = place(marker);
        let failed = |e: &VaultError| {
            let d = Diagnostic::new(
                Path::new(&file),
                field,
                format!("vault-encrypted value: {e}"),
            )
            .at(pos);
            match e {
                VaultError::NoSecret => d.hint("give its password with --vault-password-file FILE, --vault-id [LABEL@]SOURCE or --ask-vault-pass"),
                _ => d,
            }
        };
        match vault::decrypt(ciphertext, self.secrets) {
            Ok(plain) => match String::from_utf8(plain) {
                Ok(text) => {
                    self.plaintexts.push(text.clone());
                    self.ciphertexts
                        .insert(text.clone(), ciphertext.to_string());
                    Some(text)
                }
                Err(_) => {
                    self.errors.push(failed(&VaultError::Format(
                        "the decrypted value is not UTF-8 text",
                    )));
                    None
                }
            },
            Err(e) => {
                self.errors.push(failed(&e));
                None
            }
        }
    }
}

/// Where the encrypted value was written.
fn place(marker: &Map<String, Value>) -> (String, Option<Pos>) {
    let file = marker
        .get(FILE_KEY)
        .and_then(Value::as_str)
        .unwrap_or("<inventory>");
    let at = |key: &str| {
        marker
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    let pos = at(LINE_KEY).map(|line| Pos {
        line,
        column: at(COLUMN_KEY).unwrap_or(0),
    });
    (file.to_string(), pos)
}

/// Every string of a decrypted vars file: all of them are secrets.
pub(super) fn strings_of(vars: &Vars, out: &mut Vec<String>) {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            // A number (a port) would hide every such number in the output.
            _ => {}
        }
    }
    vars.values().for_each(|v| walk(v, out));
}
