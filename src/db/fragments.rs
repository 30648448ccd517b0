//! SQL fragments that several queries share, so that they say one thing one way. A leaf:
//! it imports nothing.

/// An allocation `a` of network `nw` in CIDR notation: the address with its network's
/// prefix length.
pub(super) const ADDRESS_CIDR: &str = "host(a.address) || '/' || CASE
             WHEN a.family = 4 THEN coalesce(masklen(nw.v4prefix), 32)
             WHEN nw.v6prefix IS NOT NULL THEN 64 ELSE 128 END";
