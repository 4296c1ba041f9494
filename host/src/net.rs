//! Address rules for every outbound request a caller or plugin can influence.
//!
//! Owns: which IP addresses are never reachable (link-local and cloud metadata, unspecified,
//! multicast, broadcast, documentation, reserved), which are internal (loopback, private,
//! shared, unique-local) and which are public. Used by `downstream` (the egress guard) and
//! `dev_as` (client metadata document fetches). Also what one client is, for the budgets
//! counted per client (`auth`, `transport`): [`client_network`]. Must not: resolve names or
//! open sockets.

use std::net::IpAddr;

/// The network a client address counts as, for per-client caps and budgets: an IPv4 address
/// itself (IPv4-mapped IPv6 included), an IPv6 address's /64 — one host usually holds a whole
/// /64, so counting /128s would hand it 2^64 budgets.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

/// Whether an address is never reachable from a plugin: link-local (incl. cloud metadata at
/// 169.254.169.254), the AWS IPv6 metadata address, unspecified, multicast, broadcast.
pub(crate) fn always_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || o[0] >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return always_blocked(IpAddr::V4(v4));
            }
            let s = v6.segments();
            (s[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == "fd00:ec2::254".parse::<std::net::Ipv6Addr>().unwrap()
        }
    }
}

/// Whether an address is internal: loopback, private, shared, unique-local.
pub(crate) fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00
        }
    }
}

/// Whether an address is public unicast: neither always blocked nor internal. The one rule
/// for every outbound request a caller can influence (services, client metadata documents).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    !always_blocked(ip) && !internal(ip)
}

#[cfg(test)]
mod client_tests {
    use super::*;

    /// #28. Before: the per-client connection cap and the introspection budget counted IPv6
    /// /128s, so one host with a /64 had 2^64 of each.
    #[test]
    fn an_ipv6_client_is_its_slash_64_and_an_ipv4_one_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(other));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(client_network(v4), v4);
        assert_eq!(client_network(mapped), v4);
    }
}
