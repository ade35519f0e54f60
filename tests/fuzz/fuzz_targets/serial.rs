//! `serial` and `canary` as YAML (the playbook's `rollout:` section, or a bare serial),
//! then the plan they make for a fuzzer-chosen fleet.
//!
//! Input: a 13-byte header, then YAML text.
//!   bytes 0-1  host count, little-endian, modulo 10_001
//!   byte  2    order (inventory, reverse_inventory, sorted, reverse_sorted, shuffle),
//!              unless the YAML sets `order`
//!   byte  3    canary when the YAML sets none: high bit = marked, else the first N (0-127)
//!   bytes 4-11 shuffle seed
//!   byte  12   share of hosts marked `canary: true` (0-255 of 256)
//! The YAML is read as `RolloutSection` (serial, canary, order, forks, pauses...), and also
//! as a bare `Serial` and `Canary`, and with the command-line parsers; the first serial and
//! canary that parse are used.
//!
//! Invariants: every host appears exactly once across batches, no batch is empty, only the
//! first batch may be the canary batch, the canary batch is what `canary` asks for, the
//! other batches have the sizes `serial` gives (the last one possibly smaller), and order
//! is kept within the canary and non-canary hosts.
#![no_main]

use fleetup::plan::{make_plan, Canary, Order, PlanHost, Rollout, Serial};
use fleetup::playbook::RolloutSection;
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 13;
const ORDERS: [Order; 5] = [
    Order::Inventory,
    Order::ReverseInventory,
    Order::Sorted,
    Order::ReverseSorted,
    Order::Shuffle,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let (head, body) = data.split_at(HEADER);
    let count = u16::from_le_bytes([head[0], head[1]]) as usize % 10_001;
    let header_order = ORDERS[head[2] as usize % ORDERS.len()];
    let header_canary = if head[3] & 0x80 != 0 {
        Canary::Marked
    } else {
        Canary::First((head[3] & 0x7f) as usize)
    };
    let seed = u64::from_le_bytes(head[4..12].try_into().unwrap());
    let density = head[12];
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };

    let section = serde_yaml::from_str::<RolloutSection>(text).ok();
    let bare_serial = serde_yaml::from_str::<Serial>(text).ok();
    let bare_canary = serde_yaml::from_str::<Canary>(text).ok();
    let cli_serial = text.parse::<Serial>().ok();
    let cli_canary = text.parse::<Canary>().ok();
    if let Some(s) = &bare_serial {
        // What the plan prints must read back as the same serial (command-line form).
        if !s.0.is_empty() {
            let shown = s.to_string().replace(' ', "");
            let again: Serial = shown.parse().unwrap_or_else(|e| panic!("{shown}: {e}"));
            assert_eq!(again.0.len(), s.0.len(), "{shown}");
        }
    }
    let section = section.unwrap_or_default();
    let serial = section
        .serial
        .clone()
        .or(bare_serial)
        .or(cli_serial)
        .unwrap_or_default();
    let canary = section
        .canary
        .or(bare_canary)
        .or(cli_canary)
        .unwrap_or(header_canary);
    let order = section.order.unwrap_or(header_order);

    let hosts: Vec<PlanHost> = (0..count)
        .map(|i| PlanHost {
            name: format!("h{i:05}"),
            marked_canary: ((i as u32).wrapping_mul(0x9E37_79B1) >> 24) < u32::from(density),
            // The staged group's batch before the canary is proven by plan's unit tests; the
            // invariants below are those of one group.
            staged: false,
        })
        .collect();
    let rollout = Rollout {
        serial: serial.clone(),
        canary,
        order,
        seed: Some(seed),
        ..Rollout::default()
    };
    let plan = make_plan(&hosts, &rollout);

    // Every host exactly once.
    let mut all: Vec<&str> = plan
        .batches
        .iter()
        .flat_map(|b| b.hosts.iter().map(String::as_str))
        .collect();
    assert_eq!(all.len(), count, "host count");
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count, "a host is in two batches");
    assert_eq!(plan.host_count(), count);
    // No empty batch; only the first may be the canary batch.
    for (i, b) in plan.batches.iter().enumerate() {
        assert!(!b.hosts.is_empty(), "batch {i} is empty");
        assert!(!b.canary || i == 0, "canary batch {i} is not first");
    }
    let has_canary = plan.batches.first().is_some_and(|b| b.canary);
    let canaries: &[String] = if has_canary {
        &plan.batches[0].hosts
    } else {
        &[]
    };
    let marked = |name: &str| hosts[name[1..].parse::<usize>().unwrap()].marked_canary;
    match canary {
        Canary::Marked => {
            let want = hosts.iter().filter(|h| h.marked_canary).count();
            assert_eq!(canaries.len(), want, "marked canaries");
            assert!(canaries.iter().all(|h| marked(h)));
        }
        Canary::First(n) => assert_eq!(canaries.len(), n.min(count), "first-n canaries"),
    }
    // Batch sizes follow serial, the last size repeating; the final batch may be short.
    let rest = &plan.batches[usize::from(has_canary)..];
    for (i, b) in rest.iter().enumerate() {
        let want = match serial.0.get(i).or(serial.0.last()) {
            None => count,
            Some(size) => match size {
                fleetup::plan::BatchSize::Hosts(n) => *n,
                fleetup::plan::BatchSize::Percent(p) => {
                    ((count as f64 * p / 100.0).floor() as usize).max(1)
                }
            },
        };
        if i + 1 < rest.len() {
            assert_eq!(b.hosts.len(), want, "batch {i} of serial {serial}");
        } else {
            assert!(b.hosts.len() <= want, "last batch of serial {serial}");
        }
    }
    // Order is kept within each part.
    let flat = |bs: &[fleetup::plan::Batch]| -> Vec<String> {
        bs.iter().flat_map(|b| b.hosts.iter().cloned()).collect()
    };
    let rest_hosts = flat(rest);
    for part in [canaries, &rest_hosts[..]] {
        let sorted = part.windows(2).all(|w| w[0] < w[1]);
        let reversed = part.windows(2).all(|w| w[0] > w[1]);
        match order {
            Order::Inventory | Order::Sorted => assert!(sorted, "{order} order"),
            Order::ReverseInventory | Order::ReverseSorted => assert!(reversed, "{order} order"),
            Order::Shuffle => {}
        }
    }
    if order == Order::Shuffle {
        assert_eq!(plan.seed, Some(seed));
        // The same seed gives the same plan.
        assert_eq!(make_plan(&hosts, &rollout), plan);
    }
});
