//! The secrets' values in a play: what the play's [`Redactor`](crate::secret::Redactor)
//! hides wherever the run shows or keeps text.

use std::collections::HashSet;

use super::HostInPlay;
use crate::secret::looks_secret;
use crate::template::Templates;

/// The values of the secret variables, as every host renders them (a secret is often
/// `{{ lookup('env', ...) }}`, and may differ per host). A value that does not render is
/// left out: the step that uses it fails before running, so it never reaches a host.
pub fn secret_values(
    templates: &Templates,
    declared: &[String],
    hosts: &[HostInPlay],
) -> Vec<String> {
    let declared: HashSet<&str> = declared.iter().map(String::as_str).collect();
    let mut values = Vec::new();
    for host in hosts {
        for (name, value) in host.vars.iter() {
            let listed = declared.contains(name.as_str());
            if !listed && !looks_secret(name) {
                continue;
            }
            let text = match value {
                serde_json::Value::String(s) => templates.render(s, &host.vars).ok(),
                // `token_ttl: 3600` is a number, not a secret; a listed one is redacted in
                // whatever form it takes.
                serde_json::Value::Null | serde_json::Value::Bool(_) => None,
                other if listed => Some(other.to_string()),
                _ => None,
            };
            values.extend(text);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_come_from_listed_and_secret_looking_variables_as_rendered() {
        std::env::set_var("FLEETUP_TEST_SECRET_VALUE", "from-env");
        let host = HostInPlay {
            name: "h".into(),
            vars: json!({
                "db_password": "{{ lookup('env', 'FLEETUP_TEST_SECRET_VALUE') }}",
                "token_ttl": 3600,
                "license": 123456,
                "sl_app_path": "/opt/sl",
            })
            .as_object()
            .unwrap()
            .clone()
            .into(),
        };
        let mut values = secret_values(&Templates::new(), &["license".into()], &[host]);
        values.sort();
        assert_eq!(values, ["123456", "from-env"]);
    }
}
