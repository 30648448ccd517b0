//! The command line: `serve`, `migrate`, `doctor`, `simulate`, and client commands.

mod anneal;
mod audit;
mod barclamps;
mod client;
mod converge;
mod deployments;
mod doctor;
mod migrate;
mod node_roles;
mod nodes;
mod power;
mod roles;
mod serve;
mod simulate;
mod tokens;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use self::client::{Refused, Resource};
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
    /// Apply pending database migrations and exit; `--check` says what that would do
    /// during a rolling upgrade, changing nothing.
    Migrate(migrate::MigrateArgs),
    /// Check what crowbar needs on this machine and say how to fix what is missing. Takes
    /// the settings of `serve`; exits 0 unless a check fails.
    Doctor(Settings),
    /// Nodes on a running daemon: list, show, create, update, delete, set alive/available.
    Nodes(Resource<nodes::NodesCommand>),
    /// Roles (from barclamps) on a running daemon.
    Roles(Resource<roles::RolesCommand>),
    /// Barclamps on a running daemon.
    Barclamps(Resource<barclamps::BarclampsCommand>),
    /// Deployments: create, commit, propose, recall, plan, apply a desired-state document.
    Deployments(Resource<deployments::DeploymentsCommand>),
    /// Noderoles (roles bound to nodes): list, show, bind, retry, delete.
    NodeRoles(Resource<node_roles::NodeRolesCommand>),
    /// The convergence status now: counts of noderoles by state, and the failing ones.
    Anneal(anneal::AnnealArgs),
    /// Wait until everything converged, showing progress.
    #[command(long_about = converge::LONG_ABOUT)]
    Converge(converge::ConvergeArgs),
    /// Users on a running daemon: list, add (the password is read from stdin), set a role.
    Users(Resource<users::UsersCommand>),
    /// API tokens: list, create (with a role and an expiry), revoke.
    Tokens(Resource<tokens::TokensCommand>),
    /// The audit trail: who changed what, when and from where, newest first.
    Audit(audit::AuditArgs),
    /// Simulate a rollout of N nodes x M roles with a failure rate, through the real
    /// annealer and PostgreSQL, and report how it went.
    #[command(long_about = simulate::LONG_ABOUT)]
    Simulate(simulate::SimulateArgs),
}

/// Entry point of the binary: runs the command and turns any error into a short message
/// (the whole cause chain, no backtrace) and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::tls::install_default_provider();
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
        Ok(code) => code,
        Err(error) => {
            eprint!("{}", report(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error: <message>`, one `caused by:` line per cause that the line before does not
/// already spell out (many errors repeat their source in their own message), and when the
/// daemon refused, a `hint:` line saying what to do next.
pub(crate) fn report(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}\n");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !previous.contains(&cause) {
            text.push_str(&format!("  caused by: {cause}\n"));
        }
        previous = cause;
    }
    let hint = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Refused>())
        .and_then(|refused| refused.hint.as_deref());
    if let Some(hint) = hint {
        text.push_str(&format!("hint: {hint}\n"));
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(settings) => serve::serve(settings).await?,
        Command::Migrate(args) => return migrate::run(args).await,
        // doctor prints its own verdicts: its exit code says whether one failed
        Command::Doctor(settings) => return Ok(doctor::run(settings).await),
        Command::Nodes(nodes) => nodes::run(nodes.command, &nodes.client).await?,
        Command::Roles(roles) => roles::run(roles.command, &roles.client).await?,
        Command::Barclamps(barclamps) => {
            barclamps::run(barclamps.command, &barclamps.client).await?
        }
        Command::Deployments(deployments) => {
            deployments::run(deployments.command, &deployments.client).await?
        }
        Command::NodeRoles(node_roles) => {
            node_roles::run(node_roles.command, &node_roles.client).await?
        }
        Command::Anneal(args) => anneal::run(args).await?,
        // converge reports its own errors: its exit code tells why it stopped
        Command::Converge(args) => return Ok(converge::run(args).await),
        Command::Users(users) => users::run(users.command, &users.client).await?,
        Command::Tokens(tokens) => tokens::run(tokens.command, &tokens.client).await?,
        Command::Audit(args) => audit::run(args).await?,
        // simulate reports its own errors: its exit code tells how it ended
        Command::Simulate(args) => return Ok(simulate::run(args).await),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

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
