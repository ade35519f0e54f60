//! A play: a playbook applied to an inventory. Gathers the inputs of `plan`, `check` and
//! `run` (playbook, inventories, `-e`, `--limit`, rollout flags), selects the hosts, gives
//! each its variables, validates everything and plans the batches. Nothing here contacts a
//! host: if this fails, nothing was changed anywhere.

mod alike;
mod hosts;
mod inventory;
pub mod line_lists;
mod secrets;
mod select;
mod validate;

pub use hosts::{HostInPlay, HostsInPlay};
pub use secrets::secret_values;
pub use validate::validate;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::inventory::{Inventory, Pattern, Precedence};
use crate::plan::{make_plan, Canary, Order, Plan, PlanHost, Rollout, Serial};
use crate::playbook::{self, default_soak, GateSection, Playbook, Seconds};
use crate::schedule::Schedule;
use crate::secret::Redactor;
use crate::template::Templates;
use crate::vars::{overlay, parse_extra_vars, Layered, Lookup, Vars};
use crate::vault::VaultOptions;
use crate::window::{self, Windows};
use inventory::read_inventory;
use select::{group_hosts, group_list, select};

/// What the operator gave on the command line.
#[derive(Debug, Clone, Default)]
pub struct PlayInputs {
    pub inventories: Vec<PathBuf>,
    pub playbook: PathBuf,
    /// The playbook's text when it is built in rather than read from `playbook`.
    pub playbook_text: Option<&'static str>,
    /// The files a built-in playbook's `vars_files` name: (name, text).
    pub builtin_files: &'static [(&'static str, &'static str)],
    /// `-e` arguments as given.
    pub extra_vars: Vec<String>,
    pub limit: Option<String>,
    pub overrides: RolloutOverrides,
    /// `--window`: wins over the hosts' `window` variables and the playbook's `window:`.
    pub windows: Vec<String>,
    /// `--require-staged GROUP`: wins over the playbook's `gate.require_staged`.
    pub require_staged: Option<String>,
    /// `--soak`: wins over the playbook's `gate.soak`.
    pub soak: Option<Duration>,
    /// Where the passwords of vault-encrypted inventory values and files come from.
    pub vault: VaultOptions,
}

/// Rollout settings from the command line; each wins over the playbook's.
#[derive(Debug, Clone, Default)]
pub struct RolloutOverrides {
    pub serial: Option<Serial>,
    pub canary: Option<Canary>,
    pub max_fail_percentage: Option<f64>,
    pub order: Option<Order>,
    pub forks: Option<usize>,
    pub seed: Option<u64>,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Play {
    pub playbook: Playbook,
    pub inventory: Inventory,
    /// The selected hosts, in inventory order, with their variables.
    pub hosts: HostsInPlay,
    pub extra_vars: Vars,
    pub rollout: Rollout,
    pub plan: Plan,
    /// The maintenance windows of the hosts.
    pub schedule: Schedule,
    /// The promotion gate the run must pass, if any.
    pub gate: Option<GateSection>,
    /// Worth saying, not worth stopping for.
    pub warnings: Vec<Diagnostic>,
    /// Hides the secrets' values wherever the run shows or keeps text.
    pub redactor: Arc<Redactor>,
    /// `--limit`, as given: the plan and the run name it beside the playbook's `hosts:`.
    pub limit: Option<String>,
}

impl Play {
    /// A host of the play by name, in constant time.
    pub fn host(&self, name: &str) -> Option<&HostInPlay> {
        self.hosts.get(name)
    }

    /// Sets `fleetup_run_id` for every host: the id of the run (the same across its
    /// resumes), so that a playbook can tell its own earlier attempt's traces on a host from
    /// another run's. Plan and check see it empty.
    pub fn set_run_id(&mut self, id: &str) {
        self.hosts.set_var(RUN_ID_VAR, id);
    }

    /// Drops hosts from the play and plans the rest again, in the same order (a shuffle
    /// keeps its seed). Used by `--exclude-unhealthy`.
    pub fn exclude(&mut self, names: &[String]) {
        let names: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.hosts.retain(|h| !names.contains(h.name.as_str()));
        self.rollout.seed = self.plan.seed.or(self.rollout.seed);
        self.plan = plan_for(&self.hosts, &self.rollout, &self.inventory);
    }

    /// The hosts of the gate's staged group, with their variables as this play would give
    /// them (they need not be in the play: a production run reads staging).
    pub fn staged_hosts(&self) -> Vec<HostInPlay> {
        let Some(gate) = &self.gate else {
            return Vec::new();
        };
        let precedence = self.inventory.precedence();
        group_hosts(&self.inventory, &gate.require_staged)
            .into_iter()
            .map(|name| host_in_play(&self.playbook, &precedence, &self.extra_vars, name))
            .collect()
    }
}

fn plan_for(hosts: &[HostInPlay], rollout: &Rollout, inventory: &Inventory) -> Plan {
    let staged: HashSet<String> = rollout
        .staged_first
        .as_deref()
        .filter(|group| inventory.has_group(group))
        .map(|group| group_hosts(inventory, group).into_iter().collect())
        .unwrap_or_default();
    let plan_hosts: Vec<PlanHost> = hosts
        .iter()
        .map(|h| PlanHost {
            name: h.name.clone(),
            marked_canary: h.vars.get("canary").and_then(|v| v.as_bool()) == Some(true),
            staged: staged.contains(&h.name),
        })
        .collect();
    make_plan(&plan_hosts, rollout)
}

/// A host with its variables: the playbook's defaults, the inventory's, then `-e`.
fn host_in_play(
    playbook: &Playbook,
    precedence: &Precedence<'_>,
    extra_vars: &Vars,
    name: String,
) -> HostInPlay {
    let mut own = precedence.host_vars(&name);
    overlay(&mut own, extra_vars);
    own.insert(RUN_ID_VAR.into(), "".into());
    HostInPlay {
        name,
        vars: Layered::new(playbook.vars.clone(), own),
    }
}

const CLI_LIMIT: &str = "<command line --limit>";

/// The variable every template sees with the run's id (see [`Play::set_run_id`]).
pub const RUN_ID_VAR: &str = "fleetup_run_id";

/// Reads, selects, validates and plans. All problems are reported together.
pub fn prepare(inputs: &PlayInputs) -> Result<Play, Diagnostics> {
    let Read {
        playbook,
        inventory,
        extra_vars,
        limit,
    } = read(inputs)?;
    let mut warnings = inventory.warnings.clone();
    let names = select(&playbook, &inventory, limit.as_ref(), &mut warnings)?;
    let precedence = inventory.precedence();
    let hosts = HostsInPlay::new(
        names
            .into_iter()
            .map(|name| host_in_play(&playbook, &precedence, &extra_vars, name))
            .collect(),
    );
    let mut errors = validate(&playbook, &hosts);
    let schedule = schedule(&playbook, &hosts, inputs, &mut errors);
    let gate = gate(&playbook, inputs);
    if let Some(gate) = &gate {
        errors.extend(check_gate(gate, &playbook, &inventory, inputs));
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    let rollout = rollout(&playbook, &inputs.overrides);
    let plan = plan_for(&hosts, &rollout, &inventory);
    let mut secrets = secret_values(&Templates::new(), &playbook.secrets, &hosts);
    secrets.extend(inventory.secret_values().iter().cloned());
    let redactor = Arc::new(Redactor::new(secrets));
    let mut play = Play {
        playbook,
        inventory,
        hosts,
        extra_vars,
        rollout,
        plan,
        schedule,
        gate,
        warnings,
        redactor,
        limit: inputs.limit.clone(),
    };
    line_lists::mark(&mut play);
    Ok(play)
}

/// The inputs as read, each well formed on its own.
struct Read {
    playbook: Playbook,
    inventory: Inventory,
    extra_vars: Vars,
    limit: Option<Pattern>,
}

/// Reads the playbook, the inventories, `-e` and `--limit`, reporting every problem of
/// them all together.
fn read(inputs: &PlayInputs) -> Result<Read, Diagnostics> {
    let mut errors = Vec::new();
    let playbook = match inputs.playbook_text {
        Some(text) => Playbook::parse_with(&inputs.playbook, text, inputs.builtin_files),
        None => Playbook::load(&inputs.playbook),
    }
    .map_err(|d| errors.extend(d.0))
    .ok();
    let inventory = read_inventory(inputs, &mut errors);
    let mut extra_vars = Vars::new();
    for arg in &inputs.extra_vars {
        match parse_extra_vars(arg) {
            Ok(v) => overlay(&mut extra_vars, &v),
            Err(d) => errors.push(d),
        }
    }
    let limit = match inputs.limit.as_deref().map(Pattern::parse) {
        Some(Err(m)) => {
            errors.push(Diagnostic::new(Path::new(CLI_LIMIT), "--limit", m));
            None
        }
        other => other.and_then(Result::ok),
    };
    match (playbook, inventory, errors.is_empty()) {
        (Some(playbook), Some(inventory), true) => Ok(Read {
            playbook,
            inventory,
            extra_vars,
            limit,
        }),
        _ => Err(Diagnostics(errors)),
    }
}

/// What keeps the gate from being checked: versions to compare, and a staged group that
/// the inventory has.
fn check_gate(
    gate: &GateSection,
    playbook: &Playbook,
    inventory: &Inventory,
    inputs: &PlayInputs,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    if playbook.gate.is_none() {
        if let Some(missing) = playbook::gate_needs(&playbook.audit) {
            errors.push(Diagnostic::new(
                &inputs.playbook,
                "audit",
                format!("--require-staged {}: {missing}", gate.require_staged),
            ));
        }
    }
    if !inventory.has_group(&gate.require_staged) {
        let place = match inputs.require_staged {
            Some(_) => Diagnostic::new(Path::new("<command line>"), "--require-staged", ""),
            None => playbook.doc.error("gate.require_staged", ""),
        };
        let mut d = place;
        d.message = format!(
            "the staged group `{}` is not a group of the inventory",
            gate.require_staged
        );
        d.hint = did_you_mean(&gate.require_staged, inventory.group_names())
            .or_else(|| Some(format!("groups: {}", group_list(inventory))));
        errors.push(d);
    }
    errors
}

/// The playbook's gate with the command line's group and soak on top.
fn gate(playbook: &Playbook, inputs: &PlayInputs) -> Option<GateSection> {
    let mut gate = match (&inputs.require_staged, &playbook.gate) {
        (Some(group), _) => GateSection {
            require_staged: group.clone(),
            soak: playbook.gate.as_ref().map_or_else(default_soak, |g| g.soak),
        },
        (None, Some(gate)) => gate.clone(),
        (None, None) => return None,
    };
    if let Some(soak) = inputs.soak {
        gate.soak = Seconds(soak);
    }
    Some(gate)
}

/// Each host's windows: `--window`, else its `window` variable, else the playbook's. A
/// bad variable from the inventory was reported at its line already; one from `-e` or the
/// playbook's `vars` is reported here, once for all the hosts it reaches.
fn schedule(
    playbook: &Playbook,
    hosts: &[HostInPlay],
    inputs: &PlayInputs,
    errors: &mut Vec<Diagnostic>,
) -> Schedule {
    let given = match Windows::parse(&inputs.windows) {
        Ok(w) => w,
        Err(m) => {
            errors.push(Diagnostic::new(Path::new("<command line>"), "--window", m));
            return Schedule::default();
        }
    };
    let mut bad: IndexMap<String, Vec<&str>> = IndexMap::new();
    let mut per_host = Vec::new();
    for host in hosts {
        let windows = match host.vars.get(window::VAR) {
            _ if !given.is_empty() => given.clone(),
            Some(value) => match Windows::from_value(value) {
                Ok(w) => w,
                Err(m) => {
                    bad.entry(m).or_default().push(&host.name);
                    continue;
                }
            },
            None => playbook.windows.clone(),
        };
        per_host.push((host.name.clone(), windows));
    }
    for (message, names) in bad {
        errors.push(Diagnostic::new(
            Path::new("<variables>"),
            window::VAR,
            format!(
                "variable `{}` of {}: {message}",
                window::VAR,
                names.join(", ")
            ),
        ));
    }
    Schedule::new(per_host)
}

fn rollout(playbook: &Playbook, o: &RolloutOverrides) -> Rollout {
    let section = &playbook.rollout;
    let defaults = Rollout::default();
    Rollout {
        serial: o
            .serial
            .clone()
            .or_else(|| section.serial.clone())
            .unwrap_or(defaults.serial),
        canary: o.canary.or(section.canary).unwrap_or(defaults.canary),
        max_fail_percentage: o
            .max_fail_percentage
            .or(section.max_fail_percentage.map(|p| p.0))
            .unwrap_or(defaults.max_fail_percentage),
        order: o.order.or(section.order).unwrap_or(defaults.order),
        forks: o
            .forks
            .or(section.forks.map(|f| f.0))
            .unwrap_or(defaults.forks),
        seed: o.seed,
        staged_first: section
            .staged_first
            .clone()
            .or_else(|| playbook.gate.as_ref().map(|g| g.require_staged.clone())),
    }
}
