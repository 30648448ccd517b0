//! The command line: `serve`, `migrate`, and client commands.

mod barclamps;
mod client;
mod serve;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "crowbar",
    version,
    about = "Bare-metal provisioning orchestrator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (API, UI, annealer). Works with no configuration at all.
    Serve(Settings),
    /// Apply pending database migrations and exit.
    Migrate(Settings),
    /// Barclamps on a running daemon.
    #[command(subcommand)]
    Barclamps(barclamps::BarclampsCommand),
    /// Web UI users on a running daemon.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

/// Entry point of the binary: runs the command and turns any error into a short message
/// (the whole cause chain, no backtrace) and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("{}", report(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error: <message>` and one `caused by:` line per cause that the line before does not
/// already spell out (many errors repeat their source in their own message).
fn report(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}\n");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !previous.contains(&cause) {
            text.push_str(&format!("  caused by: {cause}\n"));
        }
        previous = cause;
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => serve::serve(settings).await,
        Command::Migrate(settings) => serve::migrate_only(settings).await,
        Command::Barclamps(command) => barclamps::run(command).await,
        Command::Users(command) => users::run(command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_skip_causes_already_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("cannot open /x: no such file");
        assert_eq!(report(&error), "error: cannot open /x: no such file\n");
        let error = anyhow::anyhow!("address in use").context("cannot listen on :80");
        assert_eq!(
            report(&error),
            "error: cannot listen on :80\n  caused by: address in use\n"
        );
    }
}
