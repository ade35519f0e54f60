//! Unit tests of the Vault decoder, on texts `ansible-vault` 2.19 made (password
//! `hunter2`): `ansible-vault encrypt` of a file, `encrypt_string` without and with a vault
//! id. tests/inventory_vault.rs makes fresh ones with `ansible-vault` on every run.

use super::*;

const FILE: &str = "$ANSIBLE_VAULT;1.1;AES256\n31323666613264366465366461373835363963316137333136333736623834323131383230316661\n6164386662316431323464366233306465323564666237300a313338663535393132666136343131\n61393135656438663863666338333733616230636239303235303936656639353463333236626136\n3039306165356161320a393161323037356337623531316534313962353934376661303837646262\n33653037323739643464653366623338626139396130316135373132376437633039333732346664\n3462643165636366343937653964663132326436343938383462\n";
pub(crate) const VALUE: &str = "$ANSIBLE_VAULT;1.1;AES256\n66353766623564656538383431326136333331353537363363333932386139363035623831656437\n3062633630303035396630383839363063346431393732640a626336623863326463366161383037\n36613535653365323063643663306564646538373464303535383865663462373262386139666564\n3539313463333832390a366336353765386666366636643630333239666436653838636166346433\n3937";
const LABELLED: &str = "$ANSIBLE_VAULT;1.2;AES256;prod\n34336562616438346138613334636539336561363139393031316635386630623531393933616537\n3262336133306366373261656365653133626661306134350a383130396630353032653639353336\n64396133373162343939353364646433373839626438383834666136333139323937643132316537\n3633313334623435350a636435323361656165346538636166373663663737653635626232376264\n6664";

fn pw(label: &str, p: &str) -> VaultSecret {
    VaultSecret::new(label, p)
}

#[test]
fn opens_what_ansible_vault_wrote() {
    let right = [pw("default", "hunter2")];
    assert_eq!(
        decrypt(FILE, &right).unwrap(),
        b"db_password: s3cret\napi: {token: abc}\n"
    );
    assert_eq!(decrypt(VALUE, &right).unwrap(), b"tiny");
    assert_eq!(decrypt(LABELLED, &right).unwrap(), b"labelled");
    // The label's password is tried first, then the others.
    let several = [pw("dev", "nope"), pw("prod", "hunter2")];
    assert_eq!(decrypt(LABELLED, &several).unwrap(), b"labelled");
    assert_eq!(decrypt(VALUE, &several).unwrap(), b"tiny");
    assert!(is_encrypted(FILE) && is_encrypted(&format!("  {VALUE}")));
}

#[test]
fn a_wrong_password_or_a_changed_text_opens_nothing() {
    let e = decrypt(FILE, &[pw("default", "hunter3"), pw("prod", "x")]).unwrap_err();
    assert_eq!(e.to_string(), "no vault password given opens it (tried default, prod): a wrong password, or the text was changed");
    // One hex digit of the data changed: the HMAC refuses it.
    let last = FILE.trim_end().len() - 3;
    let mut tampered = FILE.to_string();
    let digit = if &FILE[last..last + 1] == "3" {
        "4"
    } else {
        "3"
    };
    tampered.replace_range(last..last + 1, digit);
    assert!(matches!(
        decrypt(&tampered, &[pw("default", "hunter2")]),
        Err(VaultError::NoMatch { .. })
    ));
    assert_eq!(decrypt(FILE, &[]).unwrap_err(), VaultError::NoSecret);
}

#[test]
fn malformed_texts_are_named() {
    let right = [pw("default", "hunter2")];
    assert!(matches!(
        decrypt("$ANSIBLE_VAULT;1.0;AES\n00", &right),
        Err(VaultError::Unsupported(_))
    ));
    assert!(matches!(
        decrypt("$ANSIBLE_VAULT;1.1;AES256\nzz", &right),
        Err(VaultError::Format(_))
    ));
    assert!(matches!(
        decrypt("hello", &right),
        Err(VaultError::Format(_))
    ));
    assert!(matches!(
        decrypt("$ANSIBLE_VAULT;1.1;AES256\n3030", &right),
        Err(VaultError::Format(_))
    ));
}
