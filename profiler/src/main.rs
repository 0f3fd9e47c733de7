//! The `profiler` binary: parse arguments, run a subcommand, turn errors into messages and
//! exit codes.
use std::{io, process::ExitCode};

use clap::Parser;
use profiler::{
    cli::{Cli, Command},
    cmd,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Watch(args) => cmd::watch::run(*args).await,
            Command::Serve(args) => cmd::serve::run(*args).await,
            Command::Doctor(args) => cmd::doctor::run(args),
            Command::Report(args) => cmd::report::run(args),
            Command::AttachFloor(args) => cmd::floor::run(args).await,
        }
    });
    // A report still being made for a client (`serve`) does not hold up the exit: the
    // kubelet's grace period is 30 s, and the recording is already flushed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`profiler watch --json | head`) is the reader's choice, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
