//! Client addresses as rate-limit keys, in a form that cannot be dodged.
//!
//! - [`ClientAddr`] groups IPv6 addresses by a prefix (default /56: one customer commonly
//!   holds a /64 or more and can rotate through it freely), keeps IPv4 per address, and
//!   treats an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it is.
//! - [`TrustedProxies::client_addr`] takes the client address from `X-Forwarded-For` or
//!   `Forwarded` only through proxies you list: it walks the hops from the right (the
//!   nearest) and stops at the first one not in the list. The leftmost value is whatever
//!   the client wrote and is never trusted as such.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The IPv6 prefix length [`ClientAddr::new`] groups by.
pub const DEFAULT_V6_PREFIX: u8 = 56;

/// A client address normalised for use as a key: IPv4 as is, IPv6 masked to a prefix.
///
/// ```
/// use ratewarden::ClientAddr;
/// use std::net::IpAddr;
///
/// let a: IpAddr = "2001:db8:1:10::1".parse()?;
/// let b: IpAddr = "2001:db8:1:ff:1234::9".parse()?; // same /56
/// assert_eq!(ClientAddr::new(a), ClientAddr::new(b));
/// let mapped: IpAddr = "::ffff:192.0.2.7".parse()?;
/// assert_eq!(ClientAddr::new(mapped), ClientAddr::new("192.0.2.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ClientAddr {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 network: the address masked to `prefix` bits.
    V6 {
        /// The network address.
        network: Ipv6Addr,
        /// Its prefix length.
        prefix: u8,
    },
}

impl ClientAddr {
    /// The key for `addr`, grouping IPv6 by [`DEFAULT_V6_PREFIX`].
    pub fn new(addr: IpAddr) -> ClientAddr {
        ClientAddr::with_v6_prefix(addr, DEFAULT_V6_PREFIX)
    }

    /// The key for `addr`, grouping IPv6 by `prefix` bits (clamped to 0..=128).
    pub fn with_v6_prefix(addr: IpAddr, prefix: u8) -> ClientAddr {
        match addr {
            IpAddr::V4(v4) => ClientAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddr::V4(v4),
                None => {
                    let prefix = prefix.min(128);
                    ClientAddr::V6 {
                        network: Ipv6Addr::from(u128::from(v6) & mask128(prefix)),
                        prefix,
                    }
                }
            },
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::V4(v4) => write!(f, "{v4}"),
            ClientAddr::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
        }
    }
}

fn mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

/// An IP network in CIDR form, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network or proxy list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {input:?}: {reason} (expected an address or CIDR like \"10.0.0.0/8\")")]
pub struct NetParseError {
    /// The text given.
    pub input: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl IpNet {
    /// Whether `ip` lies in this network (IPv4-mapped IPv6 matches IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = match self.prefix {
                    0 => 0,
                    p => u32::MAX << (32 - u32::from(p)),
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = NetParseError;

    fn from_str(input: &str) -> Result<IpNet, NetParseError> {
        let err = |reason| NetParseError {
            input: input.to_owned(),
            reason,
        };
        let (addr, prefix) = match input.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (input.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| err("prefix length out of range"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose forwarding headers you trust. Empty by default: trust none.
///
/// ```
/// use ratewarden::TrustedProxies;
/// use std::net::IpAddr;
///
/// let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.10".parse()?;
/// let peer: IpAddr = "10.1.2.3".parse()?;
/// // The client wrote "1.1.1.1" itself; our proxy appended the address it saw.
/// let client = proxies.client_addr(peer, Some("1.1.1.1, 203.0.113.9"), None);
/// assert_eq!(client, "203.0.113.9".parse::<IpAddr>()?);
/// // A peer that is not a trusted proxy is the client, whatever it claims.
/// let direct = proxies.client_addr("198.51.100.4".parse()?, Some("1.1.1.1"), None);
/// assert_eq!(direct, "198.51.100.4".parse::<IpAddr>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trust the given networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> TrustedProxies {
        TrustedProxies {
            nets: nets.into_iter().collect(),
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address for a connection from `peer` that carried the given
    /// `X-Forwarded-For` and `Forwarded` header values (all occurrences joined with `,`).
    /// `Forwarded` wins when both are present. Walking from the nearest hop, the first
    /// address that is not a trusted proxy is the client; a hop that cannot be parsed
    /// (`unknown`, an obfuscated identifier, garbage) ends the walk at the last address
    /// known, so a client cannot hide behind a malformed value.
    pub fn client_addr(
        &self,
        peer: IpAddr,
        x_forwarded_for: Option<&str>,
        forwarded: Option<&str>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        match (forwarded, x_forwarded_for) {
            (Some(f), _) => self.walk(
                peer,
                f.rsplit(',')
                    .map(|element| element.split(';').find_map(forwarded_for).flatten()),
            ),
            (None, Some(x)) => self.walk(peer, x.rsplit(',').map(|hop| parse_node(hop.trim()))),
            (None, None) => peer,
        }
    }

    fn walk(&self, peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
        let mut client = peer;
        for hop in hops {
            match hop {
                Some(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        unmap(client)
    }
}

/// `Some(parsed)` for a `for=` pair of a `Forwarded` element, `None` for other pairs.
fn forwarded_for(pair: &str) -> Option<Option<IpAddr>> {
    let (name, value) = pair.split_once('=')?;
    name.trim()
        .eq_ignore_ascii_case("for")
        .then(|| parse_node(value.trim().trim_matches('"')))
}

/// An address as it appears in a forwarding header: `192.0.2.1`, `192.0.2.1:8080`,
/// `[2001:db8::1]`, `[2001:db8::1]:443` or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| {
        let (host, port) = node.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    })
}

impl FromStr for TrustedProxies {
    type Err = NetParseError;

    /// A comma- or whitespace-separated list of addresses and CIDR networks.
    fn from_str(input: &str) -> Result<TrustedProxies, NetParseError> {
        input
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| TrustedProxies { nets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v6_prefixes_group_and_v4_stays_per_address() {
        let a = ClientAddr::new(ip("2001:db8:aa:bb00::1"));
        assert_eq!(a.to_string(), "2001:db8:aa:bb00::/56");
        assert_ne!(a, ClientAddr::new(ip("2001:db8:aa:cc00::1")));
        assert_ne!(
            ClientAddr::new(ip("192.0.2.1")),
            ClientAddr::new(ip("192.0.2.2"))
        );
        assert_eq!(
            ClientAddr::with_v6_prefix(ip("2001:db8::1"), 200),
            ClientAddr::with_v6_prefix(ip("2001:db8::1"), 128)
        );
        assert_eq!(
            ClientAddr::with_v6_prefix(ip("2001:db8::1"), 0).to_string(),
            "::/0"
        );
    }

    #[test]
    fn forwarded_for_walks_from_the_right_through_trusted_hops_only() {
        let proxies: TrustedProxies = "10.0.0.0/8 2001:db8:ffff::/48".parse().unwrap();
        let peer = ip("10.0.0.1");
        let xff = |h: &str| proxies.client_addr(peer, Some(h), None);
        assert_eq!(xff("6.6.6.6, 203.0.113.5, 10.0.0.2"), ip("203.0.113.5"));
        assert_eq!(xff("10.9.9.9, 10.0.0.2"), ip("10.9.9.9")); // all trusted: leftmost
        assert_eq!(xff("6.6.6.6, garbage, 10.0.0.2"), ip("10.0.0.2"));
        assert_eq!(xff(""), ip("10.0.0.1"));
        assert_eq!(xff("203.0.113.5:4711"), ip("203.0.113.5"));
        assert_eq!(xff("::ffff:203.0.113.5"), ip("203.0.113.5"));
        let fwd = |h: &str| proxies.client_addr(peer, Some("7.7.7.7"), Some(h));
        assert_eq!(
            fwd(r#"for=6.6.6.6, for="[2001:db8::17]:443";proto=https, for=10.0.0.3"#),
            ip("2001:db8::17")
        );
        assert_eq!(fwd("for=unknown, for=10.0.0.3"), ip("10.0.0.3"));
        assert_eq!(fwd("proto=https;by=10.0.0.3"), ip("10.0.0.1"));
        // an untrusted peer is the client
        assert_eq!(
            proxies.client_addr(ip("198.51.100.1"), Some("10.0.0.5"), None),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn network_parsing_errors_are_typed() {
        for bad in ["10.0.0.0/33", "fe80::/129", "nonsense", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        assert!("10.0.0.0/8, bogus".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap() == TrustedProxies::default());
        assert!("0.0.0.0/0"
            .parse::<IpNet>()
            .unwrap()
            .contains(ip("8.8.8.8")));
        assert!(!"10.0.0.0/8".parse::<IpNet>().unwrap().contains(ip("::1")));
    }
}
