//! CSRF protection. The session cookie is SameSite=Strict, and on top of that every
//! state-changing request must carry the session's CSRF token in the `X-CSRF-Token` header
//! (htmx sends it from the page's `hx-headers`; the page script adds it to its own
//! requests). The token is derived from the session's secret cookie, so a page on another
//! origin, which cannot read the cookie, cannot compute it; nothing extra is stored.

use axum::http::HeaderMap;

use crate::db::keys::token_hash;

pub const HEADER: &str = "x-csrf-token";

/// The CSRF token of the session whose cookie token is `session_token`.
pub fn token_for(session_token: &str) -> String {
    token_hash(&format!("csrf:{session_token}"))
}

/// Whether `headers` carry the CSRF token of this session (compared in constant time).
pub fn is_valid(headers: &HeaderMap, session_token: &str) -> bool {
    let Some(given) = headers.get(HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    constant_time_eq(given.as_bytes(), token_for(session_token).as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sessions_own_token_passes() {
        let mut headers = HeaderMap::new();
        assert!(!is_valid(&headers, "s1"));
        headers.insert(HEADER, token_for("s1").parse().unwrap());
        assert!(is_valid(&headers, "s1"));
        assert!(!is_valid(&headers, "s2"));
        headers.insert(HEADER, "short".parse().unwrap());
        assert!(!is_valid(&headers, "s1"));
    }

    #[test]
    fn the_token_is_not_the_session_hash() {
        // the database stores token_hash(session): the CSRF token must not be that
        assert_ne!(token_for("s1"), token_hash("s1"));
    }
}
