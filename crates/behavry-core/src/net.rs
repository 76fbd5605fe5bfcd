//! Which network addresses the gateway may connect to on a tenant's behalf.
//!
//! A tenant admin registers upstream URLs, and the gateway connects to them
//! from its own network position. Without a check, a tenant could make the
//! gateway call the cloud metadata service, the database, or anything else
//! only the gateway can reach. [`OutboundPolicy`] decides per resolved
//! address: public addresses pass; reserved ones (loopback, private,
//! link-local, carrier-grade NAT, multicast, unspecified, and IPv6 forms
//! that embed such an IPv4 address) pass only when the operator allows
//! their network. Cloud metadata addresses pass only when named one by one,
//! never through a wider range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Cidr {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }

    /// Names exactly one address (`/32`, `/128`).
    fn is_single(&self) -> bool {
        self.prefix == max_prefix(self.network)
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn prefix_match(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let network: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not a network (expected e.g. 10.0.0.0/8 or fd00::/8)")
        })?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why an address is not a public one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    Loopback,
    Private,
    LinkLocal,
    /// A cloud provider's instance metadata service.
    Metadata,
    SharedNat,
    Multicast,
    Unspecified,
    /// Broadcast, documentation, benchmarking and other special ranges.
    Special,
}

impl Reserved {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reserved::Loopback => "a loopback address",
            Reserved::Private => "a private-network address",
            Reserved::LinkLocal => "a link-local address",
            Reserved::Metadata => "a cloud metadata service address",
            Reserved::SharedNat => "a carrier-grade NAT address",
            Reserved::Multicast => "a multicast address",
            Reserved::Unspecified => "the unspecified address",
            Reserved::Special => "a reserved address",
        }
    }
}

/// Instance metadata endpoints of the major clouds (AWS, GCP and Azure
/// share 169.254.169.254; AWS ECS task metadata; Alibaba; AWS IPv6).
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

const V4_RESERVED: &[(Cidr, Reserved)] = &[
    (Cidr::v4(0, 0, 0, 0, 8), Reserved::Unspecified),
    (Cidr::v4(127, 0, 0, 0, 8), Reserved::Loopback),
    (Cidr::v4(10, 0, 0, 0, 8), Reserved::Private),
    (Cidr::v4(172, 16, 0, 0, 12), Reserved::Private),
    (Cidr::v4(192, 168, 0, 0, 16), Reserved::Private),
    (Cidr::v4(169, 254, 0, 0, 16), Reserved::LinkLocal),
    (Cidr::v4(100, 64, 0, 0, 10), Reserved::SharedNat),
    (Cidr::v4(224, 0, 0, 0, 4), Reserved::Multicast),
    (Cidr::v4(240, 0, 0, 0, 4), Reserved::Special),
    (Cidr::v4(192, 0, 0, 0, 24), Reserved::Special),
    (Cidr::v4(192, 0, 2, 0, 24), Reserved::Special),
    (Cidr::v4(198, 18, 0, 0, 15), Reserved::Special),
    (Cidr::v4(198, 51, 100, 0, 24), Reserved::Special),
    (Cidr::v4(203, 0, 113, 0, 24), Reserved::Special),
];

const V6_RESERVED: &[(Cidr, Reserved)] = &[
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Reserved::Loopback),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        Reserved::Unspecified,
    ),
    (
        Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        Reserved::Private,
    ),
    (
        Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        Reserved::LinkLocal,
    ),
    // Deprecated site-local addresses still route inside some networks.
    (
        Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        Reserved::Private,
    ),
    (
        Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        Reserved::Multicast,
    ),
    (
        Cidr::v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32),
        Reserved::Special,
    ),
    (
        Cidr::v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64),
        Reserved::Special,
    ),
];

/// The IPv4 address an IPv6 address stands for, where it embeds one that
/// a connection would reach: IPv4-mapped (`::ffff:a.b.c.d`), the old
/// IPv4-compatible form, NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if s[6] != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// The address a connection to `ip` really reaches, for checking: IPv6
/// forms of IPv4 addresses become the IPv4 address.
pub fn effective(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `None` for a public address; otherwise what kind of reserved address it
/// is.
pub fn classify(ip: IpAddr) -> Option<Reserved> {
    let ip = effective(ip);
    if METADATA.contains(&ip) {
        return Some(Reserved::Metadata);
    }
    let table = match ip {
        IpAddr::V4(_) => V4_RESERVED,
        IpAddr::V6(_) => V6_RESERVED,
    };
    table
        .iter()
        .find(|(net, _)| net.contains(ip))
        .map(|(_, kind)| *kind)
}

/// The networks the operator lets tenants' outbound connections reach
/// beyond the public internet (`BEHAVRY_OUTBOUND_ALLOW`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<Cidr>,
}

impl OutboundPolicy {
    pub fn new(allow: Vec<Cidr>) -> Self {
        OutboundPolicy { allow }
    }

    /// Development's default: loopback and private networks, so a laptop
    /// setup with local servers works; never link-local or metadata.
    pub fn development() -> Self {
        let nets = [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ];
        OutboundPolicy {
            allow: nets.iter().filter_map(|n| n.parse().ok()).collect(),
        }
    }

    /// Parses a comma-separated list; `none` (or nothing) allows no
    /// reserved network.
    pub fn parse(list: &str) -> Result<Self, String> {
        let list = list.trim();
        if list.is_empty() || list.eq_ignore_ascii_case("none") {
            return Ok(OutboundPolicy::default());
        }
        list.split(',')
            .map(|n| n.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map(OutboundPolicy::new)
    }

    pub fn allowed(&self) -> &[Cidr] {
        &self.allow
    }

    /// Whether a connection to `ip` may be made; the refusal says why.
    pub fn check(&self, ip: IpAddr) -> Result<(), OutboundRefusal> {
        let Some(kind) = classify(ip) else {
            return Ok(());
        };
        let target = effective(ip);
        let allowed = self.allow.iter().any(|net| {
            // Metadata services only when named exactly, never through a
            // wider range such as 169.254.0.0/16.
            (kind != Reserved::Metadata || net.is_single())
                && (net.contains(target) || net.contains(ip))
        });
        if allowed {
            Ok(())
        } else {
            Err(OutboundRefusal { ip, kind })
        }
    }
}

/// A connection the outbound policy refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundRefusal {
    pub ip: IpAddr,
    pub kind: Reserved,
}

impl fmt::Display for OutboundRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, which this gateway does not connect to for tenants \
             (the operator can allow its network with BEHAVRY_OUTBOUND_ALLOW)",
            self.ip,
            self.kind.as_str()
        )
    }
}

impl std::error::Error for OutboundRefusal {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reserved_addresses_are_recognised_in_every_spelling() {
        for (addr, kind) in [
            ("127.0.0.1", Reserved::Loopback),
            ("127.8.9.10", Reserved::Loopback),
            ("10.0.0.1", Reserved::Private),
            ("172.31.255.255", Reserved::Private),
            ("192.168.1.1", Reserved::Private),
            ("169.254.169.254", Reserved::Metadata),
            ("169.254.1.1", Reserved::LinkLocal),
            ("100.64.0.1", Reserved::SharedNat),
            ("100.100.100.200", Reserved::Metadata),
            ("0.0.0.0", Reserved::Unspecified),
            ("224.0.0.1", Reserved::Multicast),
            ("255.255.255.255", Reserved::Special),
            ("::1", Reserved::Loopback),
            ("::", Reserved::Unspecified),
            ("fd00::1", Reserved::Private),
            ("fe80::1", Reserved::LinkLocal),
            ("fd00:ec2::254", Reserved::Metadata),
            ("ff02::1", Reserved::Multicast),
            ("::ffff:127.0.0.1", Reserved::Loopback),
            ("::ffff:169.254.169.254", Reserved::Metadata),
            ("::127.0.0.1", Reserved::Loopback),
            ("64:ff9b::10.0.0.1", Reserved::Private),
            ("2002:7f00:1::", Reserved::Loopback),
        ] {
            assert_eq!(classify(ip(addr)), Some(kind), "{addr}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn nothing_reserved_is_allowed_by_default() {
        let none = OutboundPolicy::default();
        assert!(none.check(ip("93.184.215.14")).is_ok());
        for addr in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
        ] {
            let refusal = none.check(ip(addr)).unwrap_err();
            assert!(refusal.to_string().contains("BEHAVRY_OUTBOUND_ALLOW"));
        }
    }

    #[test]
    fn allowed_networks_pass_but_metadata_needs_its_own_entry() {
        let p = OutboundPolicy::parse("10.0.0.0/8, 169.254.0.0/16, ::1").unwrap();
        assert!(p.check(ip("10.1.2.3")).is_ok());
        assert!(p.check(ip("::ffff:10.1.2.3")).is_ok());
        assert!(p.check(ip("::1")).is_ok());
        assert!(p.check(ip("169.254.1.1")).is_ok());
        assert!(p.check(ip("169.254.169.254")).is_err());
        assert!(p.check(ip("127.0.0.1")).is_err());
        let named = OutboundPolicy::parse("169.254.169.254/32").unwrap();
        assert!(named.check(ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn development_allows_local_networks_only() {
        let dev = OutboundPolicy::development();
        assert!(dev.check(ip("127.0.0.1")).is_ok());
        assert!(dev.check(ip("192.168.0.10")).is_ok());
        assert!(dev.check(ip("169.254.169.254")).is_err());
        assert!(dev.check(ip("169.254.3.3")).is_err());
    }

    #[test]
    fn bad_networks_are_named() {
        assert!(OutboundPolicy::parse("10.0.0.0/33").is_err());
        assert!(OutboundPolicy::parse("ten").is_err());
        assert_eq!(
            OutboundPolicy::parse("none").unwrap(),
            OutboundPolicy::default()
        );
        assert_eq!("[::1]".parse::<Cidr>().unwrap().to_string(), "::1/128");
    }
}
