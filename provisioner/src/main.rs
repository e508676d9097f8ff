use std::process::ExitCode;

use clap::Parser;
use provisioner::cli::{commands, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // Client commands are used in pipelines (`machines list | head`): a closed pipe ends
        // them quietly, as it does any Unix tool, instead of a panic.
        // SAFETY: resetting a signal disposition at startup, before any other thread exists
        // that could depend on it.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Serve(args) => provisioner::startup::serve(args, cli.global).await,
        Command::Machines(cmd) => commands::machines(&cli.global, cmd).await,
        Command::Profiles(cmd) => commands::profiles(&cli.global, cmd).await,
        Command::Events(args) => commands::events(&cli.global, args).await,
        Command::Leases => commands::leases(&cli.global).await,
        Command::Assets(cmd) => provisioner::cli::assets::assets(&cli.global, cmd).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
