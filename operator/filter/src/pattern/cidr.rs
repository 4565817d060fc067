//! IPv4 and IPv6 addresses and CIDR blocks for the `cidr` matcher and for exact values
//! that are IP addresses (std only).
//!
//! EventBridge reads a string as an address only when it looks like one: four dotted
//! decimal numbers, or hex digits and colons with at least one colon (so no embedded
//! IPv4 part and no zone). An IPv4-mapped IPv6 address (`::ffff:a00:1`) is the IPv4
//! address it maps.

use std::net::IpAddr;

/// The address `text` spells, if it looks like one and parses.
pub(crate) fn ip_of(text: &str) -> Option<IpAddr> {
    let shaped = looks_like_ipv4(text) || looks_like_ipv6(text);
    if !shaped {
        return None;
    }
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 @ IpAddr::V4(_) => Some(v4),
    }
}

fn looks_like_ipv4(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        parts += 1;
    }
    parts == 4
}

fn looks_like_ipv6(text: &str) -> bool {
    text.contains(':') && text.bytes().all(|b| b == b':' || b.is_ascii_hexdigit())
}

/// A CIDR block; host bits of the written address are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

impl Cidr {
    /// Parses `10.0.0.0/24` or `2001:db8::/32`. Like EventBridge, a block must leave
    /// at least one bit to vary (`/31` and `/127` at most): a single address is written
    /// as an exact value.
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR block (expected ADDRESS/LENGTH)"))?;
        let len: u32 = len
            .parse()
            .map_err(|_| format!("`{len}` is not a prefix length"))?;
        let single = |max: u32| {
            format!(
                "prefix length {len} is over {max}; to match the single address, \
                 write it as an exact value: [\"{addr}\"]"
            )
        };
        match ip_of(addr) {
            Some(IpAddr::V4(v4)) => {
                if len > 31 {
                    return Err(single(31));
                }
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Ok(Cidr::V4 {
                    network: u32::from(v4) & mask,
                    mask,
                })
            }
            Some(IpAddr::V6(v6)) => {
                if len > 127 {
                    return Err(single(127));
                }
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                Ok(Cidr::V6 {
                    network: u128::from(v6) & mask,
                    mask,
                })
            }
            None => Err(format!("`{addr}` is not an IPv4 or IPv6 address")),
        }
    }

    /// Whether `text` is an address of the same family inside the block.
    pub(crate) fn contains(&self, text: &str) -> bool {
        match (self, ip_of(text)) {
            (Cidr::V4 { network, mask }, Some(IpAddr::V4(ip))) => u32::from(ip) & mask == *network,
            (Cidr::V6 { network, mask }, Some(IpAddr::V6(ip))) => u128::from(ip) & mask == *network,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_blocks() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert!(c.contains("10.0.0.1"));
        assert!(c.contains("10.0.0.255"));
        assert!(!c.contains("10.0.1.0"));
        assert!(!c.contains("::1"));
        assert!(!c.contains("not-an-ip"));
        let pair = Cidr::parse("192.168.1.76/31").unwrap();
        assert!(pair.contains("192.168.1.77"));
        assert!(!pair.contains("192.168.1.78"));
        // IPv4-mapped IPv6 addresses are their IPv4 address; embedded dotted forms are
        // not addresses at all.
        assert!(c.contains("::ffff:a00:1"));
        assert!(!c.contains("::ffff:10.0.0.1"));
        assert!(!c.contains("10.0.0.1 "));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8"));
        // Host bits are masked away.
        assert!(Cidr::parse("10.0.0.9/8").unwrap().contains("10.200.1.1"));
    }

    #[test]
    fn ipv6_blocks() {
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8::1"));
        assert!(c.contains("2001:0db8:ffff::"));
        assert!(c.contains("2001:DB8::1"), "hex digits in either case");
        assert!(!c.contains("2001:db9::1"));
        assert!(!c.contains("10.0.0.1"));
        assert!(Cidr::parse("::/0").unwrap().contains("fe80::1"));
    }

    #[test]
    fn invalid_blocks() {
        assert!(
            Cidr::parse("10.0.0.0")
                .unwrap_err()
                .contains("ADDRESS/LENGTH")
        );
        assert!(Cidr::parse("10.0.0/8").unwrap_err().contains("not an IPv4"));
        assert!(Cidr::parse("10.0.0.0/32").unwrap_err().contains("over 31"));
        assert!(Cidr::parse("::/128").unwrap_err().contains("over 127"));
        assert!(Cidr::parse("::ffff:10.0.0.0/104").is_err());
        assert!(Cidr::parse("10.0.0.0/-1").is_err());
        assert!(Cidr::parse("10.0.0.0/x").is_err());
    }
}
