//! Host patterns (`hosts:` and `--limit`). Input: the first line is the pattern, the rest an
//! inventory. The pattern is parsed on its own; when the inventory also parses, the pattern
//! selects from it and the selection is checked: known hosts only, each once, in
//! inventory order.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use fleetup::inventory::{Inventory, Pattern};
use fleetup::yaml::Document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(pattern) = Pattern::parse(line) else {
        return;
    };
    assert_eq!(pattern.as_str(), line);
    let Ok(doc) = Document::parse(Path::new("inv.yml"), rest) else {
        return;
    };
    let Ok(inventory) = Inventory::from_document(&doc) else {
        return;
    };
    let selection = inventory.select(&pattern);
    let order: Vec<&str> = inventory.host_names().collect();
    let mut seen = HashSet::new();
    let mut last = None;
    for host in &selection.hosts {
        assert!(seen.insert(host.as_str()), "{host} selected twice");
        let at = order.iter().position(|h| h == host);
        assert!(at.is_some(), "selected unknown host {host}");
        assert!(at > last, "selection out of inventory order at {host}");
        last = at;
    }
    // `all` selects every host.
    assert_eq!(inventory.select(&Pattern::all()).hosts.len(), order.len());
});
