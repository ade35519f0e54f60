//! Ansible Vault text → plaintext, with two passwords (one labelled). Any text may be
//! refused; a panic (a bad slice of the header, the hex body or the padding) is a bug, and
//! so is a plaintext from a text whose HMAC does not hold, which the seed corpus's
//! ansible-vault files, changed by the fuzzer, exercise.
#![no_main]

use fleetup::vault::{decrypt, VaultSecret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let secrets = [
        VaultSecret::new("default", "hunter2"),
        VaultSecret::new("prod", "prod-pass"),
    ];
    let _ = decrypt(text, &secrets);
});
