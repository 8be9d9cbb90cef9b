//! `suyunctl`: Suyun's command-line tool. `suyunctl plan` runs the planner offline over the
//! manifests kubectl would apply, the live cluster or a synthetic dataset, and prints the plan
//! as a table or JSON; `suyunctl forecast` answers when nodes run out, what capacity a
//! deadline needs and what a node change would do. `suyunctl journal verify` checks the
//! transition journals in the status store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use suyun_operator::manifests;
use suyun_operator::plan_input::{self, Objects};
use suyun_planner::forecast::{ForecastRequest, WhatIf};
use suyun_planner::model::PlanInput;

#[derive(Debug, Parser)]
#[command(name = "suyunctl", version, about = "Suyun command-line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan placement and migration offline: from manifests (-f), the live cluster
    /// (--from-cluster) or a synthetic dataset.
    Plan(PlanArgs),
    /// When each node runs out, what capacity a deadline needs, and what a node added, removed
    /// or cordoned changes.
    Forecast(ForecastArgs),
    /// The transition journals in the status store.
    #[command(subcommand)]
    Journal(JournalCommand),
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Verify every journal's chain (or one system's): sequences without gaps, each entry
    /// carrying the hash of the one before, each transition once and in order. Exits 1 when a
    /// chain is broken, naming the system and the first entry that breaks it.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    store: suyun_operator::store::StoreConfig,
    /// Only this system's journal.
    #[arg(long)]
    system: Option<String>,
}

/// Where the objects to plan come from.
#[derive(Debug, clap::Args)]
struct SourceArgs {
    /// YAML files or directories, as given to `kubectl apply -f` (multi-document; kinds other
    /// than Suyun's are ignored). Repeatable. With `--from-cluster`, laid over the cluster's
    /// objects (an object here replaces the cluster's of the same kind and name): the plan of
    /// the cluster as it would be once these are applied.
    #[arg(short = 'f', long = "filename", required_unless_present_any = ["synthetic", "from_cluster"], conflicts_with = "synthetic")]
    files: Vec<PathBuf>,
    /// Read CloudNodes, Tenants, GovSystems (with their status), MigrationWaves, CityBudgets and
    /// ResidencyPolicies from the cluster of the current kubeconfig context.
    #[arg(long, conflicts_with = "synthetic")]
    from_cluster: bool,
    /// A synthetic dataset instead of manifests.
    #[arg(long, value_enum)]
    synthetic: Option<Dataset>,
    /// Seed of the synthetic dataset.
    #[arg(long, default_value_t = 1, requires = "synthetic")]
    seed: u64,
    /// The instant the plan starts from: RFC 3339 (2026-12-01T00:00:00+08:00) or Unix seconds.
    /// Defaults to now for manifests and the cluster; synthetic datasets carry their own.
    #[arg(long)]
    now: Option<String>,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Run a baseline algorithm over the same input instead of the planner.
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
}

#[derive(Debug, clap::Args)]
struct ForecastArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Growth of what the systems use once migrated, percent per year, compounded (e.g. 15).
    #[arg(long, default_value_t = 0.0)]
    growth: f64,
    /// How far ahead to look for the date a node runs out, days.
    #[arg(long, default_value_t = suyun_planner::forecast::DEFAULT_HORIZON_DAYS)]
    horizon_days: u32,
    /// Find the least extra capacity, per node and per architecture, for every placeable system
    /// to finish migrating by this time: a date (the end of that day, China Standard Time),
    /// RFC 3339, or Unix seconds.
    #[arg(long)]
    deadline: Option<String>,
    /// A change to compare against the current plan: `cordon=NODE`, `remove=NODE`, or
    /// `add=FILE` (a CloudNode manifest). Repeatable; each is compared on its own.
    #[arg(long = "what-if", value_name = "CHANGE")]
    what_if: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dataset {
    /// Jiangsu: 14 nodes, about 7,900 systems.
    Jiangsu,
    /// 31 provinces of the same shape: about 450 nodes, 250,000 systems.
    National,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// For people: per-node utilisation, waves, the unplaceable list.
    Table,
    /// For tools.
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Baseline {
    /// Capacity-only first fit in input order.
    FirstFit,
}

fn parse_now(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("--now {text:?}: not Unix seconds or an RFC 3339 time ({e})"))
}

fn input(args: &SourceArgs) -> Result<PlanInput, String> {
    let now = args.now.as_deref().map(parse_now).transpose()?;
    if let Some(dataset) = args.synthetic {
        let mut input = match dataset {
            Dataset::Jiangsu => suyun_planner::synthetic::jiangsu(args.seed),
            Dataset::National => suyun_planner::synthetic::national(args.seed),
        };
        if let Some(now) = now {
            input.settings.now = now;
        }
        return Ok(input);
    }
    let mut objects = if args.from_cluster { cluster_objects()? } else { Default::default() };
    if !args.files.is_empty() {
        objects.overlay(manifests::load(&args.files).map_err(|e| e.to_string())?);
    }
    let problems = plan_input::check_references(&objects);
    if !problems.is_empty() {
        return Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }
    let now = now.unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().as_second());
    plan_input::plan_input(&objects, now)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// The Suyun objects of the current kubeconfig context's cluster.
fn cluster_objects() -> Result<Objects, String> {
    runtime()?.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| format!("connecting to the cluster: {e}"))?;
        suyun_operator::live::objects(&client).await.map_err(|e| format!("reading the cluster: {e}"))
    })
}

/// A deadline: a date (the end of that day, China Standard Time), RFC 3339, or Unix seconds.
fn parse_deadline(text: &str) -> Result<i64, String> {
    if let Ok(date) = text.parse::<k8s_openapi::jiff::civil::Date>() {
        let next = date.tomorrow().map_err(|e| format!("--deadline {text:?}: {e}"))?;
        let offset = k8s_openapi::jiff::tz::Offset::constant(8);
        return next
            .to_datetime(k8s_openapi::jiff::civil::Time::midnight())
            .to_zoned(k8s_openapi::jiff::tz::TimeZone::fixed(offset))
            .map(|z| z.timestamp().as_second())
            .map_err(|e| format!("--deadline {text:?}: {e}"));
    }
    parse_now(text)
        .map_err(|_| format!("--deadline {text:?}: not a date (2027-06-30), an RFC 3339 time or Unix seconds"))
}

fn what_if(text: &str) -> Result<WhatIf, String> {
    let (verb, arg) = text
        .split_once('=')
        .ok_or_else(|| format!("--what-if {text:?}: expected cordon=NODE, remove=NODE or add=FILE"))?;
    match verb {
        "cordon" => Ok(WhatIf::Cordon(arg.to_owned())),
        "remove" => Ok(WhatIf::Remove(arg.to_owned())),
        "add" => {
            let objects = manifests::load(&[PathBuf::from(arg)]).map_err(|e| e.to_string())?;
            match objects.cloud_nodes.as_slice() {
                [node] => plan_input::planner_node(node).map(WhatIf::Add).map_err(|e| e.to_string()),
                other => Err(format!("--what-if add={arg}: expected one CloudNode, found {}", other.len())),
            }
        }
        _ => Err(format!("--what-if {text:?}: unknown change {verb:?}; expected cordon, remove or add")),
    }
}

fn print<T: serde::Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> ExitCode {
    match format {
        Format::Json => match serde_json::to_string_pretty(value) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: serialising: {e}");
                return ExitCode::FAILURE;
            }
        },
        Format::Table => print!("{}", table()),
    }
    ExitCode::SUCCESS
}

fn forecast(args: &ForecastArgs) -> ExitCode {
    let request = (|| -> Result<(PlanInput, ForecastRequest), String> {
        let input = input(&args.source)?;
        let request = ForecastRequest {
            growth_percent_per_year: args.growth,
            horizon_days: args.horizon_days,
            deadline: args.deadline.as_deref().map(parse_deadline).transpose()?,
            what_if: args.what_if.iter().map(|w| what_if(w)).collect::<Result<_, _>>()?,
        };
        Ok((input, request))
    })();
    let (input, request) = match request {
        Ok(x) => x,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let forecast = suyun_planner::forecast::forecast(&input, &request);
    print(args.format, &forecast, || forecast.render_table())
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Plan(args) => plan(&args),
        Command::Forecast(args) => forecast(&args),
        Command::Journal(JournalCommand::Verify(args)) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let journals = runtime.block_on(async {
        let mut client = args.store.connect().await?;
        suyun_operator::store::read_journals(&mut client, &args.store.keys(), args.system.as_deref()).await
    });
    let journals = match journals {
        Ok(journals) => journals,
        Err(e) => {
            eprintln!("error: reading the journals: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut entries, mut missed, mut closed, mut broken) = (0, 0, 0, 0);
    for (system_id, chain) in &journals {
        match suyun_operator::journal::verify_chain(chain) {
            Ok(summary) => {
                entries += summary.entries;
                missed += summary.missed;
                closed += usize::from(summary.closed);
            }
            Err(why) => {
                broken += 1;
                println!("BROKEN {system_id}: {why}");
            }
        }
    }
    println!(
        "{} journals, {entries} entries verified, {broken} broken, {closed} closed (system deleted), {missed} transitions recorded as lost",
        journals.len()
    );
    if broken > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn plan(args: &PlanArgs) -> ExitCode {
    let input = match input(&args.source) {
        Ok(input) => input,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let plan = match args.baseline {
        None => suyun_planner::plan(&input),
        Some(Baseline::FirstFit) => suyun_planner::first_fit(&input),
    };
    print(args.format, &plan, || plan.render_table())
}
