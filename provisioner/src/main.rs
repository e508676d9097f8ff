use std::process::ExitCode;

use clap::Parser;
use provisioner::cli::{commands, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => provisioner::startup::serve(args, cli.global).await,
        Command::Machines(cmd) => commands::machines(&cli.global, cmd).await,
        Command::Profiles(cmd) => commands::profiles(&cli.global, cmd).await,
        Command::Events(args) => commands::events(&cli.global, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
