//! IPv4 and IPv6 CIDR blocks for the `cidr` matcher (std only).

use std::net::IpAddr;

/// A CIDR block; host bits of the written address are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

impl Cidr {
    /// Parses `10.0.0.0/24` or `2001:db8::/32`.
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR block (expected ADDRESS/LENGTH)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let len: u32 = len
            .parse()
            .map_err(|_| format!("`{len}` is not a prefix length"))?;
        match addr {
            IpAddr::V4(v4) => {
                if len > 32 {
                    return Err(format!("prefix length {len} is over 32 for IPv4"));
                }
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Ok(Cidr::V4 {
                    network: u32::from(v4) & mask,
                    mask,
                })
            }
            IpAddr::V6(v6) => {
                if len > 128 {
                    return Err(format!("prefix length {len} is over 128 for IPv6"));
                }
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                Ok(Cidr::V6 {
                    network: u128::from(v6) & mask,
                    mask,
                })
            }
        }
    }

    /// Whether `text` is an address of the same family inside the block.
    pub(crate) fn contains(&self, text: &str) -> bool {
        match (self, text.parse::<IpAddr>()) {
            (Cidr::V4 { network, mask }, Ok(IpAddr::V4(ip))) => u32::from(ip) & mask == *network,
            (Cidr::V6 { network, mask }, Ok(IpAddr::V6(ip))) => u128::from(ip) & mask == *network,
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
        let host = Cidr::parse("192.168.1.77/32").unwrap();
        assert!(host.contains("192.168.1.77"));
        assert!(!host.contains("192.168.1.78"));
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
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("over 32"));
        assert!(Cidr::parse("::/129").unwrap_err().contains("over 128"));
        assert!(Cidr::parse("10.0.0.0/x").is_err());
    }
}
