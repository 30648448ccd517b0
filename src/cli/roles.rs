//! `crowbar roles list|show`.

use super::client::{Client, ClientArgs, PageArgs, filters, path};

#[derive(Debug, clap::Subcommand)]
pub enum RolesCommand {
    /// List roles.
    List {
        /// Only the roles of this barclamp.
        #[arg(long)]
        barclamp: Option<String>,
        /// Only the roles run by this jig.
        #[arg(long)]
        jig: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one role.
    Show {
        /// The role's name or id.
        role: String,
    },
}

pub async fn run(command: RolesCommand, args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    match command {
        RolesCommand::List {
            barclamp,
            jig,
            page,
        } => {
            let mut query = filters([("barclamp", barclamp), ("jig", jig)]);
            query.extend(page.query());
            client
                .list(
                    "/api/v2/roles",
                    &query,
                    &[
                        ("id", "/id"),
                        ("name", "/name"),
                        ("barclamp", "/barclamp"),
                        ("jig", "/jig"),
                        ("flags", "/flags"),
                        ("requires", "/requires"),
                    ],
                )
                .await
        }
        RolesCommand::Show { role } => client.show(&path(&["roles", &role])).await,
    }
}
