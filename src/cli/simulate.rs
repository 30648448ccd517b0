//! `crowbar simulate`: the command around [`crate::simulate`]: its flags, the database it
//! simulates in (a throwaway private PostgreSQL unless told otherwise), progress on stderr,
//! the report on stdout and in `--out`.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    db,
    pg::{ManagedPostgres, PgOptions},
    secret::Secret,
    simulate::{
        Progress, Simulation, chart,
        draws::{Delay, Draws, parse_rate},
        fleet::{Fleet, Shape},
        report::{Ending, Report},
    },
    units::parse_duration,
};

pub const LONG_ABOUT: &str = "\
Simulate a rollout: N simulated nodes with M roles each, converged through the real annealer,
runner and PostgreSQL, then a report: time to converge, noderoles/s, how long work waited in
todo, runs per second over time, and what failed and what each failure held back.

Each noderole's failure and delay are drawn from --seed and its (node, role) alone: the same
seed gives the same outcome, whatever the timing. Progress goes to stderr once a second;
the report to stdout, and with --out DIR also to DIR/report.json, DIR/report.txt and a chart,
DIR/throughput.svg.

--delay takes a duration (0, 200ms, 2s: every run takes that long), uniform:MIN..MAX (e.g.
uniform:100ms..2s) or exp:MEAN (exponential with that mean, e.g. exp:500ms).

Without --database-url it runs in a throwaway private PostgreSQL in a temporary directory,
removed at the end. With one, it simulates in a new deployment named simulate-<time>-<hex>
and removes it, its nodes and noderoles afterwards (--keep leaves them, proposed, as they
ended); no other deployment is changed, and it refuses to start while another simulation's
work can run there. Prefer a database of its own: the run cap is shared by every daemon on
one database, so a simulation would slow a daemon's real work.

Exit codes:
  0  converged: nothing can run any more (failures included: they are the point)
  1  the simulation could not be set up (no PostgreSQL, a refused database, another
     simulation running in it)
  2  timed out (--timeout); the report says what was left. Also: flags that do not parse
  130  interrupted (Ctrl-C); the report says what was left";

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub nodes: u64,
    /// Roles on every node.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub roles: u64,
    /// How each node's roles depend on each other.
    #[arg(long, value_enum, default_value_t = Shape::Chain)]
    pub shape: Shape,
    /// Probability that a noderole's run fails: 0.02 or 2%.
    #[arg(long, default_value = "0", value_parser = parse_rate)]
    pub fail_rate: f64,
    /// How long each run takes: 0, 200ms, uniform:100ms..2s or exp:500ms (see --help).
    #[arg(long, default_value = "0")]
    pub delay: Delay,
    /// Seed of the failures and delays [default: a random one, printed in the report].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Runs executing at once (the annealer's run cap) [default: the daemon's,
    /// CROWBAR_RUN_CAP or 10].
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pub cap: Option<i64>,
    /// Give up waiting for convergence this long after the commit, e.g. 90s, 10m, 2h.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also write report.json, report.txt and throughput.svg into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// PostgreSQL to simulate in (postgres://...); never taken from CROWBAR_DATABASE_URL,
    /// so a daemon's database is used only when named here.
    #[arg(long)]
    pub database_url: Option<Secret>,
    /// Leave the simulated deployment, its nodes and noderoles in --database-url's database,
    /// proposed (nothing in it runs again), to look at them.
    #[arg(long, requires = "database_url")]
    pub keep: bool,
    /// Directory of the PostgreSQL server binaries for the throwaway PostgreSQL (as `serve`).
    #[arg(long, env = "CROWBAR_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<PathBuf>,
}

impl SimulateArgs {
    fn simulation(&self) -> Simulation {
        Simulation {
            fleet: Fleet {
                nodes: self.nodes,
                roles: self.roles,
                shape: self.shape,
            },
            draws: Draws {
                seed: self.seed.unwrap_or_else(rand::random),
                fail_rate: self.fail_rate,
                delay: self.delay,
            },
            cap: self.cap,
            timeout: self.timeout,
            keep: self.keep,
        }
    }
}

pub async fn run(args: SimulateArgs) -> ExitCode {
    match simulate(args).await {
        Ok(Ending::Converged) => ExitCode::SUCCESS,
        Ok(Ending::TimedOut) => ExitCode::from(2),
        Ok(Ending::Interrupted) => ExitCode::from(130),
        Err(error) => {
            eprint!("{}", super::report(&error));
            ExitCode::FAILURE
        }
    }
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<Ending> {
    // the annealer's own logs only when asked for: progress and the report are the output
    if std::env::var_os("RUST_LOG").is_some() {
        crate::telemetry::init(crate::telemetry::LogFormat::Text);
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    }
    let simulation = args.simulation();
    // Ctrl-C or SIGTERM stops it, and the report still says what was left and the
    // throwaway PostgreSQL and its directory still go
    let stop = CancellationToken::new();
    super::serve::spawn_signal_handler(stop.clone())?;
    let database = Database::open(&args).await?;
    let result = match db::migrate(&database.pool).await {
        Ok(()) => simulation
            .run(&database.pool, &stop, &mut show)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    database.close().await;
    let report = result?;
    print!("{}", report.text());
    if let Some(dir) = &args.out {
        write_out(dir, &report)?;
        println!(
            "report: {}, chart: {}",
            dir.join("report.json").display(),
            dir.join("throughput.svg").display()
        );
    }
    Ok(report.ending)
}

/// Progress on stderr: stdout holds only the report.
fn show(progress: Progress) {
    let line = match progress {
        Progress::Note(line) => line,
        Progress::Converging {
            seconds,
            counts,
            runs_per_second,
        } => {
            let count = |state: &str| counts.get(state).copied().unwrap_or(0);
            format!(
                "{seconds:6.1}s  active {}  todo {}  transition {}  blocked {}  error {}  ({runs_per_second:.0} runs/s)",
                count("active"),
                count("todo"),
                count("transition"),
                count("blocked"),
                count("error"),
            )
        }
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn write_out(dir: &Path, report: &Report) -> anyhow::Result<()> {
    let write = |name: &str, content: String| {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))
    };
    write("report.json", serde_json::to_string_pretty(report)? + "\n")?;
    write("report.txt", report.text())?;
    write(
        "throughput.svg",
        chart::svg(
            &report.throughput,
            &format!(
                "runs per second: {} nodes x {} roles, cap {}, seed {}",
                report.setup.nodes, report.setup.roles, report.setup.cap, report.setup.seed
            ),
        ),
    )
}

/// The database a simulation runs in: the one named by `--database-url`, or a throwaway
/// private PostgreSQL in a temporary directory.
struct Database {
    pool: PgPool,
    throwaway: Option<(ManagedPostgres, tempfile::TempDir)>,
}

impl Database {
    async fn open(args: &SimulateArgs) -> anyhow::Result<Database> {
        let pool_size = crate::config::default_db_pool_size();
        if let Some(url) = &args.database_url {
            return Ok(Database {
                pool: db::connect(url.expose(), pool_size).await?,
                throwaway: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("crowbar-simulate-")
            .tempdir()
            .context("cannot make a temporary directory for the throwaway PostgreSQL")?;
        // run as root, the private PostgreSQL runs as `postgres`, which must reach it
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot open up {}", dir.path().display()))?;
        let options = PgOptions {
            bin_dir: args.postgres_bin_dir.clone(),
            ..PgOptions::throwaway()
        };
        let managed = ManagedPostgres::start_with(&dir.path().join("postgres"), options).await?;
        match db::connect(managed.url().expose(), pool_size).await {
            Ok(pool) => Ok(Database {
                pool,
                throwaway: Some((managed, dir)),
            }),
            Err(e) => {
                managed.stop().await;
                Err(e.into())
            }
        }
    }

    /// Closes the pool; a throwaway PostgreSQL is stopped and its directory removed.
    async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.pool.close()).await;
        if let Some((managed, dir)) = self.throwaway {
            managed.stop().await;
            drop(dir);
        }
    }
}
