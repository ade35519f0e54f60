//! A container's networks beyond `--network`: the aliases and the address it was given on
//! it, and the other networks an operator connected it to (`docker network connect`, a
//! reverse proxy's network, say). A container re-created without them answers on its
//! published port as before, so every check passes, while the proxy can no longer reach
//! it: they are given back as `docker run`'s flags and as `docker network connect`'s.

use super::docker::{name, short_id, str_at};
use super::node::Node as Value;

/// `--network-alias`, `--ip` and `--ip6` for `container`'s own network (one object of
/// `docker inspect`).
pub fn run_flags(container: &Value, args: &mut Vec<String>) {
    if let Some(endpoint) = networks(container).find(|(name, _)| *name == primary(container)) {
        for alias in own_aliases(container, endpoint.1) {
            args.extend(["--network-alias".to_string(), alias.to_string()]);
        }
        addresses(endpoint.1, args);
    }
}

/// The arguments of `docker network connect` (without the container) for each network
/// `container` is on besides its own: `[--alias A]... [--ip IP] NETWORK`.
pub fn connects(container: &Value) -> Vec<Vec<String>> {
    let own = primary(container);
    (networks(container).filter(|(name, _)| *name != own))
        .map(|(name, endpoint)| {
            let mut args = Vec::new();
            for alias in own_aliases(container, endpoint) {
                args.extend(["--alias".to_string(), alias.to_string()]);
            }
            addresses(endpoint, &mut args);
            args.push(name.to_string());
            args
        })
        .collect()
}

/// The network `--network` gave: docker's `default` is the `bridge` network.
fn primary(container: &Value) -> &str {
    match str_at(container, &["HostConfig", "NetworkMode"]) {
        "" | "default" => "bridge",
        mode => mode,
    }
}

fn networks(container: &Value) -> impl Iterator<Item = (&str, &Value)> {
    let networks = container.pointer("/NetworkSettings/Networks");
    (networks.and_then(Value::as_object).into_iter()).flat_map(|n| n.iter())
}

/// The aliases an operator gave: docker adds the container's short id (and, on some
/// versions, its name) by itself, and would again.
fn own_aliases<'c>(container: &'c Value, endpoint: &'c Value) -> impl Iterator<Item = &'c str> {
    let aliases = endpoint.get("Aliases").and_then(Value::as_array);
    (aliases.into_iter().flatten().filter_map(Value::as_str))
        .filter(move |alias| *alias != short_id(container) && *alias != name(container))
}

/// The address an operator fixed (`IPAMConfig`), not the one docker gave.
fn addresses(endpoint: &Value, args: &mut Vec<String>) {
    for (key, flag) in [("IPv4Address", "--ip"), ("IPv6Address", "--ip6")] {
        let address = endpoint.get("IPAMConfig").and_then(|c| c.get(key));
        match address.and_then(Value::as_str) {
            Some(address) if !address.is_empty() => {
                args.extend([flag.to_string(), address.to_string()]);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value as J};

    use super::Value as Node;

    const ID: &str = "4f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d";

    /// sl-app on sl-network with an alias and a fixed address, and connected to a proxy's
    /// network with an alias of its own.
    fn app() -> J {
        json!({"Id": ID, "Name": "/sl-app", "HostConfig": {"NetworkMode": "sl-network"},
        "NetworkSettings": {"Networks": {
            "sl-network": {"IPAMConfig": {"IPv4Address": "172.18.0.50"},
                           "Aliases": ["app", "4f9c2d1e8a7b"], "IPAddress": "172.18.0.50"},
            "proxy": {"IPAMConfig": null, "Aliases": ["4f9c2d1e8a7b", "sl-app", "simplelogin"],
                      "IPAddress": "172.19.0.3"}
        }}})
    }

    #[test]
    fn the_own_network_s_aliases_and_fixed_address_are_run_flags() {
        let mut args = Vec::new();
        super::run_flags(&Node::from(&app()), &mut args);
        assert_eq!(args, ["--network-alias", "app", "--ip", "172.18.0.50"]);
    }

    #[test]
    fn every_other_network_is_connected_again_with_its_own_aliases() {
        let connects = super::connects(&Node::from(&app()));
        assert_eq!(connects, [["--alias", "simplelogin", "proxy"]]);
    }

    #[test]
    fn a_container_on_docker_s_default_network_alone_has_nothing_to_add() {
        let c = json!({"Id": ID, "HostConfig": {"NetworkMode": "default"},
            "NetworkSettings": {"Networks": {"bridge": {"IPAMConfig": null, "Aliases": null}}}});
        let mut args = Vec::new();
        super::run_flags(&Node::from(&c), &mut args);
        assert!(args.is_empty());
        assert!(super::connects(&Node::from(&c)).is_empty());
    }
}
