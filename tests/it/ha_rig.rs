//! The HA PostgreSQL harness itself (`support::ha`): a real etcd + Patroni pair starts
//! healthy with the other member as streaming synchronous standby; a crashed leader (kill -9 of
//! its postmaster) fails over to it without losing an acknowledged row, and the new leader takes
//! writes; the old leader rejoins as the sync standby by itself; and a planned switchover
//! moves the leadership back, writable again.

use std::time::{Duration, Instant};

use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::support::ha::HaCluster;

#[tokio::test]
async fn ha_cluster_fails_over_and_switches_over_without_losing_writes() {
    let started = Instant::now();
    let cluster = HaCluster::start().await;
    let start_took = started.elapsed();

    let leader = cluster.leader().await;
    let other = cluster
        .members()
        .iter()
        .find(|m| m.name != leader)
        .unwrap()
        .name
        .clone();
    let pool = connect(&cluster.member_url(&leader)).await;
    sqlx::query("CREATE TABLE rig_rows (id int PRIMARY KEY, note text NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO rig_rows VALUES (1, 'before the crash')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(cluster.sync_standby().await, Some(other.clone()));

    // A crash: the sync standby takes over, with every acknowledged row.
    let (old, killed_at) = cluster.kill_leader_postmaster().await;
    assert_eq!(old, leader);
    let (new, failover_took) = cluster.wait_new_leader(&old, killed_at).await;
    assert_eq!(new, other);
    let url = cluster.member_url(&new);
    write(
        &url,
        "INSERT INTO rig_rows VALUES (2, 'after the crash') ON CONFLICT DO NOTHING",
    )
    .await;
    let write_after_crash = killed_at.elapsed();
    assert_eq!(notes(&url).await, ["before the crash", "after the crash"]);

    // The old leader comes back by itself, as the new leader's sync standby.
    cluster.wait_healthy().await;
    let healthy_after_crash = killed_at.elapsed();
    assert_eq!(cluster.sync_standby().await, Some(old.clone()));

    // A planned switchover hands the leadership back.
    let switch_started = Instant::now();
    let (from, to, switchover_took) = cluster.switchover().await;
    assert_eq!((from.as_str(), to.as_str()), (new.as_str(), old.as_str()));
    let (leader_now, _) = cluster.wait_new_leader(&from, switch_started).await;
    assert_eq!(leader_now, to);
    let url = cluster.member_url(&to);
    write(
        &url,
        "INSERT INTO rig_rows VALUES (3, 'after the switchover') ON CONFLICT DO NOTHING",
    )
    .await;
    let write_after_switchover = switch_started.elapsed();
    assert_eq!(
        notes(&url).await,
        [
            "before the crash",
            "after the crash",
            "after the switchover"
        ]
    );
    cluster.wait_healthy().await;
    let healthy_after_switchover = switch_started.elapsed();

    eprintln!(
        "ha_rig: start {start_took:.2?}; kill -9 of the leader's postmaster: new leader after \
         {failover_took:.2?}, write ok after {write_after_crash:.2?}, healthy after \
         {healthy_after_crash:.2?}; switchover: patronictl {switchover_took:.2?}, write ok after \
         {write_after_switchover:.2?}, healthy after {healthy_after_switchover:.2?}"
    );
    let stopping = Instant::now();
    cluster.stop().await;
    eprintln!("ha_rig: stop {:.2?}", stopping.elapsed());
}

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Runs `sql` (idempotent) until it commits: Patroni names the new leader a moment before
/// its promotion has finished, so the first tries may meet a server still read-only or
/// starting up. 30 s at most.
async fn write(url: &str, sql: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let error = match connect_once(url).await {
            Ok(pool) => {
                let result = sqlx::query(sql).execute(&pool).await;
                pool.close().await;
                match result {
                    Ok(_) => return,
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "{sql} never committed: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_once(url: &str) -> Result<PgPool, String> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| e.to_string())
}

async fn notes(url: &str) -> Vec<String> {
    let pool = connect(url).await;
    let notes = sqlx::query_scalar("SELECT note FROM rig_rows ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    notes
}
