//! `suyunctl`: Suyun's command-line tool. `suyunctl plan` runs the planner offline over the
//! manifests kubectl would apply, or over a synthetic dataset, and prints the plan as a table
//! or JSON. `suyunctl journal verify` checks the transition journals in the status store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use suyun_operator::{manifests, plan_input};
use suyun_planner::model::PlanInput;

#[derive(Debug, Parser)]
#[command(name = "suyunctl", version, about = "Suyun command-line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan placement and migration offline: from manifests (-f) or a synthetic dataset.
    Plan(PlanArgs),
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

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// YAML files or directories, as given to `kubectl apply -f` (multi-document; kinds other
    /// than Suyun's are ignored). Repeatable.
    #[arg(short = 'f', long = "filename", required_unless_present = "synthetic", conflicts_with = "synthetic")]
    files: Vec<PathBuf>,
    /// A synthetic dataset instead of manifests.
    #[arg(long, value_enum)]
    synthetic: Option<Dataset>,
    /// Seed of the synthetic dataset.
    #[arg(long, default_value_t = 1, requires = "synthetic")]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Run a baseline algorithm over the same input instead of the planner.
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
    /// The instant the plan starts from: RFC 3339 (2026-12-01T00:00:00+08:00) or Unix seconds.
    /// Defaults to now for manifests; synthetic datasets carry their own.
    #[arg(long)]
    now: Option<String>,
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

fn input(args: &PlanArgs) -> Result<PlanInput, String> {
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
    let objects = manifests::load(&args.files).map_err(|e| e.to_string())?;
    let problems = plan_input::check_references(&objects);
    if !problems.is_empty() {
        return Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }
    let now = now.unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().as_second());
    plan_input::plan_input(&objects, now)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Plan(args) => plan(&args),
        Command::Journal(JournalCommand::Verify(args)) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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
    let input = match input(args) {
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
    match args.format {
        Format::Json => match serde_json::to_string_pretty(&plan) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: serialising the plan: {e}");
                return ExitCode::FAILURE;
            }
        },
        Format::Table => print!("{}", plan.render_table()),
    }
    ExitCode::SUCCESS
}
