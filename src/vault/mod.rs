//! Ansible Vault: values tagged `!vault` and whole encrypted files, in the formats
//! `ansible-vault` writes (`$ANSIBLE_VAULT;1.1;AES256` and, with a vault id,
//! `$ANSIBLE_VAULT;1.2;AES256;LABEL`). The body is hex of `hex(salt)\nhex(hmac)\nhex(data)`;
//! PBKDF2-HMAC-SHA256 of the password and salt (10 000 rounds) gives 80 bytes: the AES-256
//! key, the HMAC-SHA256 key and the CTR counter's start; the HMAC of the data is checked
//! (in constant time) before AES-256-CTR decrypts it, and PKCS#7 padding is removed.
//! Pure; where passwords come from is [`secrets`].

pub mod secrets;

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use secrets::{load_secrets, VaultOptions};

const HEADER: &str = "$ANSIBLE_VAULT";
const ROUNDS: u32 = 10_000;

/// One password, with the vault id label it was given under (`default` when none).
#[derive(Clone)]
pub struct VaultSecret {
    pub label: String,
    password: Vec<u8>,
}

impl std::fmt::Debug for VaultSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password itself.
        write!(f, "VaultSecret({})", self.label)
    }
}

impl VaultSecret {
    pub fn new(label: &str, password: impl Into<Vec<u8>>) -> VaultSecret {
        VaultSecret {
            label: label.to_string(),
            password: password.into(),
        }
    }
}

/// Why a vault could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("not an Ansible Vault text: {0}")]
    Format(&'static str),
    #[error("vault format {0} is not one fleetup reads (1.1 and 1.2 with AES256)")]
    Unsupported(String),
    #[error("encrypted, but no vault password was given")]
    NoSecret,
    /// No password opens it: a wrong password, or a tampered text (the two cannot be told
    /// apart, by design of the HMAC).
    #[error("no vault password given opens it (tried {tried}): a wrong password, or the text was changed")]
    NoMatch { tried: String },
}

/// Whether `text` is vault-encrypted (a whole file, or a `!vault` value).
pub fn is_encrypted(text: &str) -> bool {
    text.trim_start().starts_with(HEADER)
}

/// Decrypts `text` with the first secret that opens it: those whose label the text names
/// first (format 1.2), then the others, as Ansible tries them.
pub fn decrypt(text: &str, secrets: &[VaultSecret]) -> Result<Vec<u8>, VaultError> {
    let envelope = Envelope::parse(text)?;
    if secrets.is_empty() {
        return Err(VaultError::NoSecret);
    }
    let (named, others): (Vec<&VaultSecret>, Vec<&VaultSecret>) = secrets
        .iter()
        .partition(|s| Some(s.label.as_str()) == envelope.label.as_deref());
    for secret in named.into_iter().chain(others) {
        if let Some(plain) = envelope.open(&secret.password) {
            return Ok(plain);
        }
    }
    let tried: Vec<&str> = secrets.iter().map(|s| s.label.as_str()).collect();
    Err(VaultError::NoMatch {
        tried: tried.join(", "),
    })
}

struct Envelope {
    label: Option<String>,
    salt: Vec<u8>,
    mac: Vec<u8>,
    data: Vec<u8>,
}

impl Envelope {
    fn parse(text: &str) -> Result<Envelope, VaultError> {
        let mut lines = text.trim().lines().map(str::trim);
        let header = lines.next().ok_or(VaultError::Format("empty"))?;
        let fields: Vec<&str> = header.split(';').collect();
        if fields.first() != Some(&HEADER) || fields.len() < 3 {
            return Err(VaultError::Format("no $ANSIBLE_VAULT header"));
        }
        let label = match (fields[1], fields[2], fields.get(3)) {
            ("1.1", "AES256", None) => None,
            ("1.2", "AES256", Some(label)) => Some(label.to_string()),
            _ => return Err(VaultError::Unsupported(header.to_string())),
        };
        let body: String = lines.collect();
        let inner = hex(&body).ok_or(VaultError::Format("the body is not hex"))?;
        let inner = String::from_utf8(inner).map_err(|_| VaultError::Format("bad body"))?;
        let parts: Vec<&str> = inner.split('\n').collect();
        let [salt, mac, data] = parts[..] else {
            return Err(VaultError::Format("the body is not salt, HMAC and data"));
        };
        let field = |s: &str| hex(s).ok_or(VaultError::Format("a body field is not hex"));
        Ok(Envelope {
            label,
            salt: field(salt)?,
            mac: field(mac)?,
            data: field(data)?,
        })
    }

    /// The plaintext, when `password` is the right one.
    fn open(&self, password: &[u8]) -> Option<Vec<u8>> {
        let mut keys = [0u8; 80];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, &self.salt, ROUNDS, &mut keys);
        let (cipher_key, rest) = keys.split_at(32);
        let (mac_key, iv) = rest.split_at(32);
        let mut mac = Hmac::<Sha256>::new_from_slice(mac_key).ok()?;
        mac.update(&self.data);
        mac.verify_slice(&self.mac).ok()?;
        let mut plain = self.data.clone();
        ctr::Ctr128BE::<Aes256>::new_from_slices(cipher_key, iv)
            .ok()?
            .apply_keystream(&mut plain);
        unpad(plain)
    }
}

/// Removes PKCS#7 padding (the HMAC already vouched for the data).
fn unpad(mut plain: Vec<u8>) -> Option<Vec<u8>> {
    let n = usize::from(*plain.last()?);
    if n == 0
        || n > 16
        || n > plain.len()
        || !plain[plain.len() - n..]
            .iter()
            .all(|&b| usize::from(b) == n)
    {
        return None;
    }
    plain.truncate(plain.len() - n);
    Some(plain)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
