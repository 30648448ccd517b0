//! ICMP echo with one shared surge-ping client per address family.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU16, Ordering},
    time::Duration,
};

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence};
use tokio::sync::OnceCell;

/// Pings addresses. Cheap to share; the sockets are opened on first use (inside the runtime).
#[derive(Default)]
pub struct Pinger {
    v4: OnceCell<Client>,
    v6: OnceCell<Client>,
    /// Each ping gets an identifier of its own, so concurrent pings never take each other's
    /// replies.
    next_ident: AtomicU16,
}

impl Pinger {
    /// Sends up to `attempts` echo requests to `addr`, each waiting `timeout`; the first reply
    /// wins. Returns the round-trip time, or why nothing answered.
    pub async fn ping(
        &self,
        addr: IpAddr,
        timeout: Duration,
        attempts: u16,
    ) -> Result<Duration, String> {
        let client = self.client(addr).await?;
        let ident = PingIdentifier(self.next_ident.fetch_add(1, Ordering::Relaxed));
        let mut pinger = client.pinger(addr, ident).await;
        pinger.timeout(timeout);
        let mut last = String::new();
        for seq in 0..attempts.max(1) {
            match pinger.ping(PingSequence(seq), &[0; 16]).await {
                Ok((_, rtt)) => return Ok(rtt),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!(
            "no ping reply from {addr} ({} attempts of {timeout:?}: {last})",
            attempts.max(1)
        ))
    }

    async fn client(&self, addr: IpAddr) -> Result<&Client, String> {
        let (cell, kind) = match addr {
            IpAddr::V4(_) => (&self.v4, ICMP::V4),
            IpAddr::V6(_) => (&self.v6, ICMP::V6),
        };
        cell.get_or_try_init(|| async move {
            Client::new(&Config::builder().kind(kind).build()).map_err(|e| {
                format!(
                    "cannot open an ICMP socket ({e}); crowbar needs root or CAP_NET_RAW, \
                     or net.ipv4.ping_group_range covering its group"
                )
            })
        })
        .await
    }
}
