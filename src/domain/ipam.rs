//! Address arithmetic of networks (SEMANTICS.md §11): IPv6 prefixes (given, or an RFC 4193
//! unique-local prefix derived per installation and network), node interface IDs from their
//! FQDN, and address ranges.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use md5::{Digest, Md5};

/// The largest 40-bit value: RFC 4193 global IDs are 40 bits.
pub const GLOBAL_ID_MAX: u64 = (1 << 40) - 1;

/// What a network's `v6prefix` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Prefix {
    /// An RFC 4193 prefix: `fd` + the installation's global ID + a subnet ID from the
    /// network's id.
    Auto,
    /// A /64 given by the admin.
    Given(Ipv6Net),
}

impl V6Prefix {
    /// `auto`, or an IPv6 prefix of length 64 (host bits are refused, not silently cut).
    pub fn parse(text: &str) -> Result<V6Prefix, String> {
        if text == "auto" {
            return Ok(V6Prefix::Auto);
        }
        let net: Ipv6Net = text.parse().map_err(|_| {
            format!("`{text}` is neither `auto` nor an IPv6 prefix like fd00:1::/64")
        })?;
        if net.prefix_len() != 64 {
            return Err(format!(
                "`{text}` is a /{}; v6prefix must be a /64",
                net.prefix_len()
            ));
        }
        if net.network() != net.addr() {
            return Err(format!(
                "`{text}` has host bits set; the prefix is {}",
                net.trunc()
            ));
        }
        Ok(V6Prefix::Given(net))
    }

    /// The effective /64 of a network: given, or derived from the installation's global ID
    /// and the network's id.
    pub fn effective(self, global_id: u64, network_id: i64) -> Ipv6Net {
        match self {
            V6Prefix::Given(net) => net,
            V6Prefix::Auto => ula_prefix(global_id, subnet_id(network_id)),
        }
    }
}

impl std::fmt::Display for V6Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V6Prefix::Auto => f.write_str("auto"),
            V6Prefix::Given(net) => write!(f, "{net}"),
        }
    }
}

/// The 16-bit subnet ID of a network: the low 16 bits of its id.
pub fn subnet_id(network_id: i64) -> u16 {
    (network_id as u64 & 0xffff) as u16
}

/// `fd` + 40-bit global ID + 16-bit subnet ID, as a /64 (RFC 4193 §3.1).
pub fn ula_prefix(global_id: u64, subnet: u16) -> Ipv6Net {
    let global_id = global_id & GLOBAL_ID_MAX;
    let high: u128 = (0xfd_u128 << 56) | ((global_id as u128) << 16) | subnet as u128;
    Ipv6Net::new(Ipv6Addr::from(high << 64), 64).expect("64 is a valid prefix length")
}

/// The interface ID of a node: the last 64 bits of the MD5 of its FQDN.
pub fn interface_id(fqdn: &str) -> u64 {
    let digest = Md5::digest(fqdn.as_bytes());
    let mut last = [0u8; 8];
    last.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(last)
}

/// A node's address in a /64: the prefix followed by the node's interface ID.
pub fn node_v6_address(prefix: Ipv6Net, fqdn: &str) -> Ipv6Addr {
    let network = u128::from(prefix.network());
    Ipv6Addr::from(network | interface_id(fqdn) as u128)
}

/// A range's bounds, checked: both of one family, first not after last.
pub fn check_range(first: IpAddr, last: IpAddr) -> Result<(), String> {
    match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => Ok(()),
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => Ok(()),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            Err(format!("the range starts at {first}, after its end {last}"))
        }
        _ => Err(format!("{first} and {last} are not of one address family")),
    }
}

/// The prefix length an address gets in CIDR notation on a network: the one given by a
/// range's `prefix`, or the host length when unknown.
pub fn cidr(address: IpAddr, prefix_len: Option<u8>) -> String {
    let host = if address.is_ipv4() { 32 } else { 128 };
    format!("{address}/{}", prefix_len.unwrap_or(host))
}

/// Where a network's hosts are: its IPv4 subnet, its IPv6 /64, its ranges; its router is
/// none of them.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpan {
    pub v4prefix: Option<Ipv4Net>,
    pub v6prefix: Option<Ipv6Net>,
    pub ranges: Vec<(IpAddr, IpAddr)>,
    pub router: Option<IpAddr>,
}

impl NetworkSpan {
    /// Whether `address` is a host of this network: inside one of its ranges, or a host
    /// address of its subnet or /64 (not the subnet's own address nor its broadcast), and
    /// not its router.
    pub fn holds(&self, address: IpAddr) -> bool {
        if self.router == Some(address) {
            return false;
        }
        let in_range = self.ranges.iter().any(|&(first, last)| {
            first.is_ipv4() == address.is_ipv4() && first <= address && address <= last
        });
        let in_prefix = match address {
            IpAddr::V4(a) => self.v4prefix.is_some_and(|net| {
                net.contains(&a)
                    && (net.prefix_len() >= 31 || (a != net.network() && a != net.broadcast()))
            }),
            IpAddr::V6(a) => self
                .v6prefix
                .is_some_and(|net| net.contains(&a) && a != net.network()),
        };
        in_range || in_prefix
    }
}

/// Whether `address` can be one machine's own: not unspecified, loopback, link-local,
/// multicast or broadcast, whatever networks an admin defined.
pub fn is_host_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_unicast_link_local()
                || a.to_ipv4_mapped().is_some())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_hold_their_hosts_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let span = NetworkSpan {
            v4prefix: Some("198.51.100.0/24".parse().unwrap()),
            v6prefix: Some("fd00:1:2:3::/64".parse().unwrap()),
            ranges: vec![(ip("203.0.113.10"), ip("203.0.113.20"))],
            router: Some(ip("198.51.100.1")),
        };
        for inside in [
            "198.51.100.2",
            "198.51.100.254",
            "fd00:1:2:3::5",
            "203.0.113.10",
        ] {
            assert!(span.holds(ip(inside)), "{inside}");
        }
        for outside in [
            "198.51.100.1",
            "198.51.100.0",
            "198.51.100.255",
            "198.51.101.1",
            "fd00:1:2:4::5",
            "fd00:1:2:3::",
            "203.0.113.21",
            "203.0.113.9",
            "127.0.0.1",
        ] {
            assert!(!span.holds(ip(outside)), "{outside}");
        }
        assert!(!NetworkSpan::default().holds(ip("198.51.100.1")));
        for not_a_host in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_host_address(ip(not_a_host)), "{not_a_host}");
        }
        assert!(is_host_address(ip("198.51.100.7")));
        assert!(is_host_address(ip("fd00::7")));
    }

    #[test]
    fn interface_ids_are_the_md5_tail_of_the_fqdn() {
        // md5("node1.example.com") = ba42a7de06c9ecc9 726446a8b44801fa
        assert_eq!(interface_id("node1.example.com"), 0x7264_46a8_b448_01fa);
        // md5("admin.crowbar.internal") = de3265aae2d84b13 c4ef190640503849
        assert_eq!(
            interface_id("admin.crowbar.internal"),
            0xc4ef_1906_4050_3849
        );
    }

    #[test]
    fn auto_prefixes_are_fd_global_id_subnet() {
        assert_eq!(
            ula_prefix(0x12_3456_789a, 7).to_string(),
            "fd12:3456:789a:7::/64"
        );
        // the subnet ID is the network id's low 16 bits
        assert_eq!(subnet_id(7), 7);
        assert_eq!(subnet_id(0x1_0003), 3);
        assert_eq!(
            V6Prefix::Auto
                .effective(0xab_cdef_0123, 0x1_0003)
                .to_string(),
            "fdab:cdef:123:3::/64"
        );
        // a global ID wider than 40 bits is cut to 40
        assert_eq!(
            ula_prefix(0xff12_3456_789a, 1).to_string(),
            "fd12:3456:789a:1::/64"
        );
    }

    #[test]
    fn node_addresses_are_prefix_plus_interface_id() {
        let prefix = ula_prefix(0x12_3456_789a, 7);
        assert_eq!(
            node_v6_address(prefix, "node1.example.com").to_string(),
            "fd12:3456:789a:7:7264:46a8:b448:1fa"
        );
        let given = V6Prefix::parse("2001:db8:1:2::/64").unwrap();
        assert_eq!(
            node_v6_address(given.effective(0, 1), "node1.example.com").to_string(),
            "2001:db8:1:2:7264:46a8:b448:1fa"
        );
    }

    #[test]
    fn v6prefixes_parse_strictly() {
        assert_eq!(V6Prefix::parse("auto"), Ok(V6Prefix::Auto));
        assert!(
            V6Prefix::parse("2001:db8::/48")
                .unwrap_err()
                .contains("/64")
        );
        assert!(
            V6Prefix::parse("2001:db8::1/64")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(V6Prefix::parse("10.0.0.0/8").is_err());
        assert!(V6Prefix::parse("Auto").is_err());
        assert_eq!(
            V6Prefix::parse("fd00:1::/64").unwrap().to_string(),
            "fd00:1::/64"
        );
    }

    #[test]
    fn ranges_are_one_family_in_order() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(check_range(a("198.51.100.10"), a("198.51.100.20")).is_ok());
        assert!(check_range(a("198.51.100.10"), a("198.51.100.10")).is_ok());
        assert!(check_range(a("198.51.100.20"), a("198.51.100.10")).is_err());
        assert!(check_range(a("198.51.100.1"), a("fd00::1")).is_err());
        assert!(check_range(a("fd00::1"), a("fd00::ff")).is_ok());
    }
}
