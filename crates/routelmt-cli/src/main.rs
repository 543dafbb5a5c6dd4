//! The `routelmt` binary: a thin clap front door onto `routelmt-model`, `routelmt-route` and
//! `routelmt-train`. Layers, each using only those below it: the commands (`cmd_*.rs`, one
//! file per family, none importing another), the shared pieces (`args.rs` argument groups,
//! `requests.rs` the read → prepare → batch → run → write driver, `io.rs` atomic files and
//! progress), then the libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alloc_count;
mod args;
mod cmd_bench;
mod cmd_model;
mod cmd_route;
mod cmd_serve;
mod cmd_train;
mod io;
mod requests;

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

/// RouteLMT: a portable learned router for hybrid LLM translation.
#[derive(Parser, Debug)]
#[command(name = "routelmt", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build LMT prompts and token ids: {"id","src","src_lang","tgt_lang"} -> {"id","prompt","input_ids"}.
    Tokenize(cmd_model::TokenizeArgs),
    /// Last-prompt-token hidden states of the small model: -> {"id","n_tokens","hidden"}.
    Features(cmd_model::FeaturesArgs),
    /// Describe a model folder: architecture, parameters, dtype on disk, device.
    Info(cmd_model::InfoArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
    /// Evaluate routers against real quality scores (metrics, curve, plot).
    Eval(cmd_route::EvalArgs),
    /// Calibrate a streaming threshold so that about P of requests exceed it.
    Calibrate(cmd_route::CalibrateArgs),
    /// Add `route: "large"|"small"` to every record, in input order.
    Route(cmd_route::RouteArgs),
    /// Fill `score_small`/`score_large` from hypotheses and references (chrF).
    Labels(cmd_route::LabelsArgs),
    /// Train a router: LoRA + a linear head predicting the gain (or quality) from the prefill.
    Train(cmd_train::TrainArgs),
    /// Score records with a trained router: adds "score" (and "pred_quality" for `both`).
    Score(cmd_train::ScoreArgs),
    /// An OpenAI-compatible routing gateway in front of a small and a large endpoint.
    Serve(Box<routelmt_serve::ServeArgs>),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenize(a) => cmd_model::tokenize(a),
        Command::Features(a) => cmd_model::features(a),
        Command::Info(a) => cmd_model::info(a),
        Command::Bench(a) => cmd_bench::bench(a),
        Command::Eval(a) => cmd_route::eval(a),
        Command::Calibrate(a) => cmd_route::calibrate(a),
        Command::Route(a) => cmd_route::route(a),
        Command::Labels(a) => cmd_route::labels(a),
        Command::Train(a) => cmd_train::train(a),
        Command::Score(a) => cmd_train::score(a),
        Command::Serve(a) => cmd_serve::serve(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
