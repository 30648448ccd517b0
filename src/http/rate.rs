//! Per-source rate limits of the boot-time routes, `/boot/{mac}` and `/discover`: they take
//! no token (machines call them while booting), so each source address may call each only
//! so often (`--boot-rate`, `--discover-rate`); past that, 429 with `Retry-After`.
//!
//! The source is the TCP peer the server saw (axum's `ConnectInfo`), never a header such as
//! `X-Forwarded-For` that the caller writes itself. IPv6 sources count per /64, the block
//! one machine can pick addresses from at will. The per-source state is bounded: at most
//! `--rate-limit-sources` sources are followed at once; when that many are, sources idle
//! long enough to be back at a full quota are forgotten, and if none are, every new
//! request is refused until some are.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use super::error::ApiError;

/// One route's limit: so many requests per minute per source, in bursts of as many.
pub struct SourceLimit {
    route: &'static str,
    per_minute: NonZeroU32,
    max_sources: usize,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl SourceLimit {
    pub fn new(route: &'static str, per_minute: NonZeroU32, max_sources: usize) -> Arc<Self> {
        Arc::new(SourceLimit {
            route,
            per_minute,
            max_sources: max_sources.max(1),
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one request of `source`'s quota, or says how long until there is one.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() >= self.max_sources {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            if self.limiter.len() >= self.max_sources {
                // as long as one request takes to come back into a quota
                return Err(Duration::from_secs(60) / self.per_minute.get());
            }
        }
        self.limiter
            .check_key(&source_key(source))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// How many sources are followed now.
    pub fn sources(&self) -> usize {
        self.limiter.len()
    }
}

/// What a source counts as: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6 /64.
fn source_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware: refuses a request whose source used up its quota. A router served without
/// connection info (in-process tests) has one unknown source for everyone.
pub async fn limit(
    State(limit): State<Arc<SourceLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    match limit.check(source) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            tracing::warn!(%source, route = limit.route, "rate limited");
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{source} called {} more than {} times a minute; try again in {seconds} s",
                    limit.route, limit.per_minute
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_addresses_and_ipv6_blocks() {
        assert_eq!(source_key(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(source_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(source_key(ip("fd00:1:2:3:4:5:6:7")), ip("fd00:1:2:3::"));
    }

    #[test]
    fn each_source_has_its_quota() {
        let limit = SourceLimit::new("/discover", NonZeroU32::new(3).unwrap(), 100);
        for _ in 0..3 {
            limit.check(ip("198.51.100.7")).unwrap();
        }
        let wait = limit.check(ip("198.51.100.7")).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // another address, another quota; one /64, one quota
        limit.check(ip("198.51.100.8")).unwrap();
        for i in 0..3 {
            limit.check(ip(&format!("fd00::{i}"))).unwrap();
        }
        limit.check(ip("fd00::99")).unwrap_err();
    }

    #[test]
    fn the_sources_followed_are_bounded() {
        let limit = SourceLimit::new("/boot/{mac}", NonZeroU32::new(2).unwrap(), 10);
        for i in 0..10 {
            limit.check(ip(&format!("198.51.100.{i}"))).unwrap();
        }
        // none of the ten is back at a full quota: an eleventh is refused, not followed
        let wait = limit.check(ip("198.51.100.200")).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        assert_eq!(limit.sources(), 10);
    }
}
