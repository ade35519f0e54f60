//! The rollout plan: which hosts, in which order, in which batches.
//!
//! Pure arithmetic, kept apart so that it can be proven in tests: the canary batch first
//! and alone, then batches sized by `serial` (counts or percentages of all hosts in play,
//! the last size repeating), in the chosen order.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Deserializer, Serialize};

/// One entry of `serial`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchSize {
    Hosts(usize),
    /// Of all hosts in play, rounded down, never below one host.
    Percent(f64),
}

impl BatchSize {
    fn hosts(self, total: usize) -> usize {
        match self {
            BatchSize::Hosts(n) => n,
            BatchSize::Percent(p) => ((total as f64 * p / 100.0).floor() as usize).max(1),
        }
    }
}

impl FromStr for BatchSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!("serial `{s}` must be above 0% and at most 100%"));
            }
            return Ok(BatchSize::Percent(p));
        }
        match s.parse::<usize>() {
            Ok(0) => Err("serial `0` would never start a host: use 1 or more".into()),
            Ok(n) => Ok(BatchSize::Hosts(n)),
            Err(_) => Err(format!(
                "`{s}` is not a batch size: use a number of hosts (5) or a percentage (25%)"
            )),
        }
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSize::Hosts(n) => write!(f, "{n}"),
            BatchSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `serial`: batch sizes in order, the last repeating; empty means all hosts in one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Serial(pub Vec<BatchSize>);

impl FromStr for Serial {
    type Err = String;
    /// The command line form: `1,3,50%`.
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Serial)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "all at once");
        }
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(", "))
    }
}

impl<'de> Deserialize<'de> for Serial {
    /// The playbook form: `5`, `"25%"` or `[1, 5, "25%"]`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Int(i64),
            Text(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(Item),
            Many(Vec<Item>),
        }
        let items = match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "serial is a number of hosts, a percentage (\"25%\"), or a list of them",
            )
        })? {
            Form::One(i) => vec![i],
            Form::Many(v) => v,
        };
        if items.is_empty() {
            return Err(serde::de::Error::custom("serial is an empty list"));
        }
        items
            .into_iter()
            .map(|i| match i {
                Item::Int(n) => n.to_string().parse(),
                Item::Text(s) => s.parse(),
            })
            .collect::<Result<_, _>>()
            .map(Serial)
            .map_err(serde::de::Error::custom)
    }
}

/// Which hosts form the canary batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Canary {
    /// The hosts marked `canary: true` in the inventory (none marked: no canary batch).
    #[default]
    Marked,
    /// The first N hosts in order (0: no canary batch).
    First(usize),
}

impl FromStr for Canary {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "marked" => Ok(Canary::Marked),
            "none" | "false" => Ok(Canary::First(0)),
            n => n.parse().map(Canary::First).map_err(|_| {
                format!("canary `{s}`: use `marked` (hosts with canary: true) or a number of hosts")
            }),
        }
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Canary::Marked => write!(f, "hosts marked canary"),
            Canary::First(0) => write!(f, "none"),
            Canary::First(n) => write!(f, "first {n}"),
        }
    }
}

impl<'de> Deserialize<'de> for Canary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Int(usize),
            Bool(bool),
            Text(String),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("canary is `marked`, `none` or a number of hosts")
        })? {
            Form::Int(n) => Ok(Canary::First(n)),
            Form::Bool(false) => Ok(Canary::First(0)),
            Form::Bool(true) => Ok(Canary::Marked),
            Form::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The order hosts are taken in, as Ansible's `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Inventory,
    ReverseInventory,
    Sorted,
    ReverseSorted,
    Shuffle,
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Order::Inventory => "inventory",
            Order::ReverseInventory => "reverse_inventory",
            Order::Sorted => "sorted",
            Order::ReverseSorted => "reverse_sorted",
            Order::Shuffle => "shuffle",
        };
        f.write_str(s)
    }
}

/// The rollout settings in force, from the playbook and the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub serial: Serial,
    pub canary: Canary,
    /// A batch halts the run when its failed and unreachable hosts exceed this share.
    pub max_fail_percentage: f64,
    pub order: Order,
    /// Most hosts at once.
    pub forks: usize,
    /// The seed of `order: shuffle`; chosen at random (and printed) when not given.
    pub seed: Option<u64>,
    /// A group whose hosts go before all others when a run selects both (`staged_first`).
    pub staged_first: Option<String>,
}

pub const DEFAULT_FORKS: usize = 10;

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            serial: Serial::default(),
            canary: Canary::default(),
            max_fail_percentage: 0.0,
            order: Order::default(),
            forks: DEFAULT_FORKS,
            seed: None,
            staged_first: None,
        }
    }
}

/// A host as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanHost {
    pub name: String,
    /// `canary: true` in the inventory.
    pub marked_canary: bool,
    /// In the group that goes first (`staged_first`).
    pub staged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub hosts: Vec<String>,
    pub canary: bool,
    /// The hosts of the staged group, ahead of every other host.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Batch>,
    /// The shuffle seed used, to repeat the same order with `--seed`.
    pub seed: Option<u64>,
}

impl Plan {
    pub fn host_count(&self) -> usize {
        self.batches.iter().map(|b| b.hosts.len()).sum()
    }

    /// The index of the last batch with hosts: no pause follows it. (A resumed run's
    /// batches whose hosts all finished earlier are empty.)
    pub fn last_with_hosts(&self) -> Option<usize> {
        self.batches.iter().rposition(|b| !b.hosts.is_empty())
    }
}

/// Orders `hosts` (given in inventory order) and cuts them into batches. When the run
/// selects hosts of the staged group and others, the staged hosts come first, as one batch,
/// and the others are planned after them as if alone (their canary, their batches): staging
/// proves a release before any production canary runs it.
pub fn make_plan(hosts: &[PlanHost], rollout: &Rollout) -> Plan {
    let (staged, others): (Vec<PlanHost>, Vec<PlanHost>) =
        hosts.iter().cloned().partition(|h| h.staged);
    if staged.is_empty() || others.is_empty() {
        return plan_batches(hosts, rollout);
    }
    let first = plan_batches(
        &staged,
        &Rollout {
            serial: Serial::default(),
            canary: Canary::First(0),
            ..rollout.clone()
        },
    );
    let rest = plan_batches(&others, rollout);
    let mut batches: Vec<Batch> = first
        .batches
        .into_iter()
        .map(|b| Batch { staged: true, ..b })
        .collect();
    batches.extend(rest.batches);
    Plan {
        batches,
        seed: rest.seed.or(first.seed),
    }
}

fn plan_batches(hosts: &[PlanHost], rollout: &Rollout) -> Plan {
    let mut ordered: Vec<&PlanHost> = hosts.iter().collect();
    let mut seed = None;
    match rollout.order {
        Order::Inventory => {}
        Order::ReverseInventory => ordered.reverse(),
        Order::Sorted => ordered.sort_by(|a, b| a.name.cmp(&b.name)),
        Order::ReverseSorted => ordered.sort_by(|a, b| b.name.cmp(&a.name)),
        Order::Shuffle => {
            let s = rollout.seed.unwrap_or_else(rand::random);
            // ChaCha8 is documented to give the same sequence for a seed on every platform
            // and release, so a printed seed reproduces the order.
            ordered.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(s));
            seed = Some(s);
        }
    }
    let (canaries, rest): (Vec<&PlanHost>, Vec<&PlanHost>) = match rollout.canary {
        Canary::Marked => ordered.iter().partition(|h| h.marked_canary),
        Canary::First(n) => {
            let n = n.min(ordered.len());
            (ordered[..n].to_vec(), ordered[n..].to_vec())
        }
    };
    let names = |hs: &[&PlanHost]| hs.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    let mut batches = Vec::new();
    if !canaries.is_empty() {
        batches.push(Batch {
            hosts: names(&canaries),
            canary: true,
            staged: false,
        });
    }
    let total = hosts.len();
    let mut sizes = rollout.serial.0.iter().copied();
    let mut last = BatchSize::Percent(100.0);
    let mut remaining = &rest[..];
    while !remaining.is_empty() {
        if let Some(next) = sizes.next() {
            last = next;
        }
        let take = last.hosts(total).min(remaining.len());
        batches.push(Batch {
            hosts: names(&remaining[..take]),
            canary: false,
            staged: false,
        });
        remaining = &remaining[take..];
    }
    Plan { batches, seed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize, canaries: &[usize]) -> Vec<PlanHost> {
        (1..=n)
            .map(|i| PlanHost {
                name: format!("h{i:02}"),
                marked_canary: canaries.contains(&i),
                staged: false,
            })
            .collect()
    }

    fn sizes(plan: &Plan) -> Vec<(usize, bool)> {
        plan.batches
            .iter()
            .map(|b| (b.hosts.len(), b.canary))
            .collect()
    }

    fn rollout(serial: &str) -> Rollout {
        Rollout {
            serial: serial.parse().unwrap(),
            ..Rollout::default()
        }
    }

    #[test]
    fn canary_alone_then_list_with_percentage_of_all_hosts() {
        // 10 hosts, one canary, serial 1,3,50%: the canary, then 1, 3, 5 (50% of 10).
        let plan = make_plan(&hosts(10, &[4]), &rollout("1,3,50%"));
        assert_eq!(
            sizes(&plan),
            vec![(1, true), (1, false), (3, false), (5, false)]
        );
        assert_eq!(plan.batches[0].hosts, vec!["h04"]);
        assert_eq!(plan.batches[1].hosts, vec!["h01"]);
        assert_eq!(plan.host_count(), 10);
    }

    #[test]
    fn last_size_repeats() {
        let plan = make_plan(&hosts(12, &[]), &rollout("1,5"));
        assert_eq!(
            sizes(&plan),
            vec![(1, false), (5, false), (5, false), (1, false)]
        );
    }

    #[test]
    fn percentages_round_down_but_never_below_one() {
        let plan = make_plan(&hosts(7, &[]), &rollout("10%"));
        assert_eq!(plan.batches.len(), 7);
        let plan = make_plan(&hosts(9, &[]), &rollout("25%"));
        assert_eq!(
            sizes(&plan),
            vec![(2, false), (2, false), (2, false), (2, false), (1, false)]
        );
    }

    #[test]
    fn no_serial_is_one_batch() {
        let plan = make_plan(&hosts(5, &[2]), &Rollout::default());
        assert_eq!(sizes(&plan), vec![(1, true), (4, false)]);
    }

    #[test]
    fn canary_first_n_takes_the_head_of_the_order() {
        let r = Rollout {
            canary: Canary::First(2),
            order: Order::ReverseSorted,
            ..rollout("3")
        };
        let plan = make_plan(&hosts(6, &[1]), &r);
        assert_eq!(plan.batches[0].hosts, vec!["h06", "h05"]);
        assert!(plan.batches[0].canary);
        assert_eq!(plan.batches[1].hosts, vec!["h04", "h03", "h02"]);
    }

    #[test]
    fn shuffle_is_reproducible_from_its_seed() {
        let r = Rollout {
            order: Order::Shuffle,
            seed: Some(42),
            ..rollout("2")
        };
        let a = make_plan(&hosts(20, &[]), &r);
        let b = make_plan(&hosts(20, &[]), &r);
        assert_eq!(a, b);
        assert_eq!(a.seed, Some(42));
        assert_ne!(a.batches[0].hosts, vec!["h01", "h02"], "shuffled");
        let unseeded = make_plan(&hosts(3, &[]), &Rollout { seed: None, ..r });
        assert!(unseeded.seed.is_some(), "a chosen seed is reported");
    }

    #[test]
    fn serial_parse_errors() {
        assert!("0".parse::<Serial>().unwrap_err().contains("never start"));
        assert!("150%"
            .parse::<Serial>()
            .unwrap_err()
            .contains("at most 100%"));
        assert!("0%".parse::<Serial>().unwrap_err().contains("above 0%"));
        assert!("x"
            .parse::<Serial>()
            .unwrap_err()
            .contains("not a batch size"));
        assert_eq!(
            "1, 5 ,25%".parse::<Serial>().unwrap().0,
            vec![
                BatchSize::Hosts(1),
                BatchSize::Hosts(5),
                BatchSize::Percent(25.0)
            ]
        );
    }

    #[test]
    fn serial_from_yaml() {
        let s: Serial = serde_yaml::from_str("[1, 5, \"25%\"]").unwrap();
        assert_eq!(s.to_string(), "1, 5, 25%");
        let s: Serial = serde_yaml::from_str("3").unwrap();
        assert_eq!(s.0, vec![BatchSize::Hosts(3)]);
        assert!(serde_yaml::from_str::<Serial>("0").is_err());
        assert!(serde_yaml::from_str::<Serial>("[]").is_err());
    }

    #[test]
    fn canary_forms() {
        assert_eq!("marked".parse::<Canary>(), Ok(Canary::Marked));
        assert_eq!("2".parse::<Canary>(), Ok(Canary::First(2)));
        assert_eq!(
            serde_yaml::from_str::<Canary>("false").unwrap(),
            Canary::First(0)
        );
        assert!("some".parse::<Canary>().is_err());
    }

    #[test]
    fn the_staged_group_goes_before_the_production_canary() {
        // staging hosts h01, h02 written after production in the inventory; h03 the canary.
        let mut hs = hosts(6, &[3]);
        hs[4].staged = true;
        hs[5].staged = true;
        let plan = make_plan(&hs, &rollout("1,2"));
        let batches: Vec<(Vec<&str>, bool, bool)> = plan
            .batches
            .iter()
            .map(|b| {
                let names = b.hosts.iter().map(String::as_str).collect();
                (names, b.canary, b.staged)
            })
            .collect();
        assert_eq!(
            batches,
            [
                (vec!["h05", "h06"], false, true),
                (vec!["h03"], true, false),
                (vec!["h01"], false, false),
                (vec!["h02", "h04"], false, false),
            ]
        );
        let json = serde_json::to_string(&plan.batches[1]).unwrap();
        assert_eq!(json, r#"{"hosts":["h03"],"canary":true}"#);
    }

    #[test]
    fn a_run_of_the_staged_group_alone_is_planned_as_usual() {
        let mut hs = hosts(3, &[1]);
        for h in &mut hs {
            h.staged = true;
        }
        assert_eq!(
            sizes(&make_plan(&hs, &rollout("1"))),
            [(1, true), (1, false), (1, false)]
        );
    }
}
