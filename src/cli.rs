//! The command line, as clap sees it. Flag names are a contract with operators' scripts:
//! add, never rename.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use fleetup::plan::{Canary, Order, Serial};
use fleetup::play::{PlayInputs, RolloutOverrides};
use fleetup::vault::VaultOptions;

#[derive(Debug, Parser)]
#[command(
    name = "fleetup",
    version,
    about = "Upgrade a fleet of self-hosted SimpleLogin servers over SSH: canary first, in batches, halting on failure.",
    after_help = "Exit codes: 0 success, 2 a host failed, 3 deferred to the next maintenance window \
                  (continue with --resume), 4 a host was unreachable (none failed), 5 invalid input or \
                  usage (nothing contacted; also a resume refused), 6 refused by the promotion gate \
                  (nothing changed), 99 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the batches a run would use, in order, without contacting any host.
    #[command(
        after_help = "Example:\n  fleetup plan -i inventories/example.yml playbooks/simplelogin-upgrade.yml \\\n      -e sl_version=v4.66.1 --limit production --serial 1,3,50%"
    )]
    Plan(PlanArgs),
    /// Validate the inventory and playbook, then run the read-only pre-flight on every
    /// selected host (nothing changes on them; --offline contacts none).
    #[command(
        after_help = "Example:\n  fleetup check -i inventories/example.yml playbooks/simplelogin-upgrade.yml -e sl_version=v4.66.1"
    )]
    Check(CheckArgs),
    /// Run a playbook across the fleet: canary first, batch after batch, halting on failure.
    #[command(
        after_help = "Example:\n  fleetup run -i inventories/example.yml playbooks/simplelogin-upgrade.yml \\\n      -e sl_version=v4.66.1 --limit staging\nContinue the last run after a halt or a crash:\n  fleetup run -i inventories/example.yml --resume last"
    )]
    Run(RunArgs),
    /// Each host's running version, health and last backup, and a count per version.
    #[command(
        after_help = "Example:\n  fleetup status -i inventories/example.yml --limit production"
    )]
    Status(StatusArgs),
    /// The runs recorded in the journal: when, what, where, and how each ended.
    #[command(after_help = "Example:\n  fleetup history -i inventories/example.yml")]
    History(HistoryArgs),
    /// A recorded run's recap again, one host's step outputs (--host), or an HTML report.
    #[command(
        after_help = "Example:\n  fleetup show last -i inventories/example.yml\nOne host's step outputs:\n  fleetup show 20261202T064000-000 -i inventories/example.yml --host sl-prod-03\nA report to open in a browser:\n  fleetup show last -i inventories/example.yml --html -o report.html"
    )]
    Show(ShowArgs),
    /// Run one command on every matched host (Ansible's ad-hoc mode).
    #[command(
        after_help = "Example:\n  fleetup exec -i inventories/example.yml production -- docker ps"
    )]
    Exec(ExecArgs),
    /// What fleetup makes of an inventory, in ansible-inventory's shapes (to diff the two).
    #[command(
        after_help = "Examples:\n  fleetup inventory -i hosts.ini --list\n  fleetup inventory -i hosts.ini --graph production --vars\n  diff <(fleetup inventory -i hosts.ini --list) <(ansible-inventory -i hosts.ini --list)"
    )]
    Inventory(InventoryCmdArgs),
}

/// `-i`, shared by every command that reads an inventory. Not required by clap: a resumed
/// run reads its own from the journal, and the commands that need one say so.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Inventory file, folder or script (Ansible INI, YAML, JSON); repeat to merge several.
    /// Default: ANSIBLE_INVENTORY, or the inventory of Ansible's ansible.cfg.
    #[arg(short = 'i', long = "inventory", value_name = "INVENTORY")]
    pub inventories: Vec<PathBuf>,
    /// A file holding the vault password, or an executable that prints it; repeatable.
    #[arg(
        long = "vault-password-file",
        value_name = "FILE",
        env = "ANSIBLE_VAULT_PASSWORD_FILE"
    )]
    pub vault_password_files: Vec<PathBuf>,
    /// A vault password with its label: LABEL@FILE, LABEL@prompt, or FILE; repeatable.
    #[arg(long = "vault-id", value_name = "[LABEL@]SOURCE")]
    pub vault_ids: Vec<String>,
    /// Ask for the vault password.
    #[arg(long)]
    pub ask_vault_pass: bool,
}

impl InventoryArgs {
    pub fn vault(&self) -> VaultOptions {
        VaultOptions {
            ids: self.vault_ids.clone(),
            password_files: self.vault_password_files.clone(),
            ask: self.ask_vault_pass,
        }
    }
}

/// The inputs of a play: inventories, playbook, variables, host selection.
#[derive(Debug, Args)]
pub struct PlayArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// The playbook (YAML).
    #[arg(value_name = "PLAYBOOK")]
    pub playbook: PathBuf,
    #[command(flatten)]
    pub selection: SelectionArgs,
}

/// Variables and host selection, beside the playbook.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Extra variables, highest precedence: KEY=VALUE, @FILE.yml, or a JSON mapping.
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Narrow the playbook's hosts further with a host pattern (e.g. `production:!eu*`).
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
}

/// Where the journal is: `--state-dir`, else `.fleetup/` beside the first inventory.
#[derive(Debug, Args)]
pub struct JournalArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Where runs are recorded (default: `.fleetup/` beside the first inventory, or in
    /// the current directory without -i).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Rollout settings; each overrides the playbook's `rollout:`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Batch sizes, e.g. `5`, `25%` or `1,5,25%` (the last repeats).
    #[arg(long, value_name = "SPEC", value_parser = parse_serial)]
    pub serial: Option<Serial>,
    /// Canary batch: `marked` (hosts with canary: true), a number of hosts, or `none`.
    #[arg(long, value_name = "N|marked|none", value_parser = parse_canary)]
    pub canary: Option<Canary>,
    /// Halt when a batch's failed and unreachable hosts exceed this percentage.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percentage)]
    pub max_fail_percentage: Option<f64>,
    /// Host order.
    #[arg(long, value_enum)]
    pub order: Option<Order>,
    /// Seed of `--order shuffle`, to repeat an earlier order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most hosts at once.
    #[arg(short = 'f', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub play: PlayArgs,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    #[command(flatten)]
    pub staging: StagingArgs,
    /// Where the journal is, for the gate's verdict and the estimates (default:
    /// `.fleetup/` beside the first inventory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// `text` for people, `json` (one object) for programs.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Also show each host's steps, rendered.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub play: PlayArgs,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Only validate the files; do not run the read-only pre-flight on the hosts.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Where the hosts' logs go (default: `.fleetup/` beside the first inventory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// A read-only playbook with a `report:` (default: the built-in SimpleLogin status).
    #[arg(long, value_name = "PLAYBOOK")]
    pub playbook: Option<PathBuf>,
    /// Extra variables: KEY=VALUE, @FILE.yml, or a JSON mapping.
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Only these hosts (a host pattern).
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Most hosts at once.
    #[arg(short = 'f', long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Where the hosts' logs go (default: `.fleetup/` beside the first inventory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How fleetup connects; shared by `run` and `exec`.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// known_hosts file to verify host keys against (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// `strict` refuses unknown keys, `accept-new` records them, `off` (unsafe) skips checks.
    #[arg(long, value_enum, default_value_t)]
    pub host_key_checking: HostKeyChecking,
    /// Read the passphrase of an encrypted key from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// Seconds to wait for a host to answer.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// OpenSSH client config to honour (default ~/.ssh/config).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Attempts to reach a host again whose connection was lost mid-upgrade, to roll it back.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub reconnect_attempts: u32,
    /// Seconds before the first reconnection attempt (doubling after each, at most 30).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub reconnect_delay: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum HostKeyChecking {
    #[default]
    Strict,
    AcceptNew,
    Off,
}

/// Staged rollouts: the promotion gate and the maintenance windows.
#[derive(Debug, Args, Default)]
pub struct StagingArgs {
    /// Refuse to run on hosts outside GROUP until GROUP runs the same version, healthy, for
    /// the soak time (a successful run in the journal, and the hosts checked live).
    #[arg(long, value_name = "GROUP")]
    pub require_staged: Option<String>,
    /// How long the staged group must have run the version (default: the playbook's
    /// `gate.soak`, else 24h), e.g. `24h`, `90m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub soak: Option<Duration>,
    /// A maintenance window, e.g. `sat,sun 02:00-05:00 Europe/Paris` (repeat for several);
    /// wins over the playbook's `window:` and the hosts' `window` variables.
    #[arg(long = "window", value_name = "WINDOW")]
    pub windows: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The playbook (YAML); not with --resume, which runs the journal's.
    #[arg(value_name = "PLAYBOOK", required_unless_present = "resume")]
    pub playbook: Option<PathBuf>,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub rollout: RolloutArgs,
    #[command(flatten)]
    pub staging: StagingArgs,
    /// Run without the promotion gate's consent (recorded in the journal and in the hosts'
    /// audit lines).
    #[arg(long)]
    pub skip_gate: bool,
    /// Outside a maintenance window, refuse instead of waiting for the next one.
    #[arg(long)]
    pub no_wait: bool,
    /// Continue a halted, interrupted, deferred or killed run (an id from `fleetup history`, or
    /// `last`) with its own plan: finished hosts are left alone, the others run again from
    /// their pre-flight. With --resume, -i only says where the journal is.
    #[arg(
        long,
        value_name = "RUN_ID|last",
        conflicts_with_all = ["playbook", "limit", "serial", "canary", "max_fail_percentage", "order", "seed", "forks", "require_staged", "soak", "skip_gate"]
    )]
    pub resume: Option<String>,
    /// Resume even though the playbook or the inventory changed since the run started.
    #[arg(long, requires = "resume")]
    pub force: bool,
    /// Take over host locks whose run is gone (its process died, or older than the
    /// playbook's `lock.stale_after`). A live run's lock is never taken.
    #[arg(long)]
    pub break_lock: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Stop starting hosts as soon as one fails, even inside a batch.
    #[arg(long)]
    pub halt_immediately: bool,
    /// Leave out hosts that are unreachable or fail the pre-flight, instead of not starting.
    #[arg(long)]
    pub exclude_unhealthy: bool,
    /// Do not ask for confirmation before starting.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// `text` (progress bars on a terminal, plain lines otherwise) or `json` (event lines).
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Tell someone as the run goes: `webhook:URL` (the event POSTed as JSON, with a `text`
    /// line for chats) or `command:CMD` (the event as JSON on its stdin); repeat for several.
    /// Added to the playbook's `notifications:`; halts, deferrals, failed hosts and the end.
    #[arg(long, value_name = "webhook:URL|command:CMD", value_parser = parse_notifier)]
    pub notify: Vec<fleetup::notify::Notifier>,
    /// Keep an HTML report of the run in FILE, rewritten as the run goes (see `show --html`).
    #[arg(long, value_name = "FILE")]
    pub html_report: Option<PathBuf>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub journal: JournalArgs,
    /// `text` (a table) or `json` (one object per run and line).
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A run id from `fleetup history`, or `last`.
    #[arg(value_name = "RUN_ID|last")]
    pub run: String,
    /// Print this host's step outputs (its log) instead of the recap.
    #[arg(long, value_name = "HOST", conflicts_with = "html")]
    pub host: Option<String>,
    /// The run as one self-contained HTML page (timeline, hosts, pre-flight), on stdout
    /// or in the file of -o.
    #[arg(long)]
    pub html: bool,
    /// Where the HTML page goes.
    #[arg(
        short = 'o',
        long = "output-file",
        value_name = "FILE",
        requires = "html"
    )]
    pub html_file: Option<PathBuf>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Host pattern, e.g. `production:!canaries`.
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
    /// Most hosts at once.
    #[arg(short = 'f', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,
    /// Seconds the command may run on each host.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Run the command through sudo -n.
    #[arg(short = 'b', long = "become")]
    pub become_: bool,
    /// The user sudo runs the command as (default root).
    #[arg(long, value_name = "USER")]
    pub become_user: Option<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// `text` (output grouped per host) or `json` (event lines).
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// The command, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["list", "graph", "host"])))]
pub struct InventoryCmdArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Every group and host, and each host's variables (`_meta.hostvars`), as JSON.
    #[arg(long)]
    pub list: bool,
    /// The groups as a tree, from GROUP (default all).
    #[arg(long)]
    pub graph: bool,
    /// One host's variables, as JSON.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The group `--graph` starts from.
    #[arg(value_name = "GROUP", requires = "graph")]
    pub group: Option<String>,
    /// Only the hosts this pattern selects (with --list).
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// With --graph: show the variables of each host and group.
    #[arg(long, requires = "graph")]
    pub vars: bool,
    /// With --list: each group's and host's own variables, not each host's merged ones.
    #[arg(long, requires = "list")]
    pub export: bool,
    /// Also read the group_vars/ and host_vars/ of this folder, as beside a playbook.
    #[arg(long, value_name = "DIR")]
    pub playbook_dir: Option<PathBuf>,
}

impl PlayArgs {
    pub fn inputs(&self, rollout: &RolloutArgs, staging: &StagingArgs) -> PlayInputs {
        self.selection
            .inputs(&self.inventory, self.playbook.clone(), rollout, staging)
    }
}

impl SelectionArgs {
    pub fn inputs(
        &self,
        inventory: &InventoryArgs,
        playbook: PathBuf,
        rollout: &RolloutArgs,
        staging: &StagingArgs,
    ) -> PlayInputs {
        PlayInputs {
            inventories: inventory.inventories.clone(),
            playbook,
            playbook_text: None,
            builtin_files: &[],
            extra_vars: self.extra_vars.clone(),
            limit: self.limit.clone(),
            overrides: RolloutOverrides {
                serial: rollout.serial.clone(),
                canary: rollout.canary,
                max_fail_percentage: rollout.max_fail_percentage,
                order: rollout.order,
                forks: rollout.forks.map(|f| f as usize),
                seed: rollout.seed,
            },
            windows: staging.windows.clone(),
            require_staged: staging.require_staged.clone(),
            soak: staging.soak,
            vault: inventory.vault(),
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    fleetup::duration::parse(s)
        .map_err(|_| format!("`{s}` is not a duration such as 24h, 90m or 1h30m"))
}

fn parse_notifier(s: &str) -> Result<fleetup::notify::Notifier, String> {
    fleetup::notify::Notifier::parse_flag(s)
}

fn parse_serial(s: &str) -> Result<Serial, String> {
    s.parse()
}

fn parse_canary(s: &str) -> Result<Canary, String> {
    s.parse()
}

fn parse_percentage(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentage from 0 to 100")),
    }
}
