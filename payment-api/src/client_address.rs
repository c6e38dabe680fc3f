//! Which client a request came from, for the per-address limits (`CLIENT_ADDRESS_FROM`,
//! `TRUSTED_PROXY_HOPS`).
//!
//! Behind proxies, each one appends the address it was connected from to a forwarding
//! header. Only the entries our own proxies appended can be believed: whatever lies to
//! their left came with the request and is anyone's to invent. So the client is the entry
//! `hops` places from the right — the one the outermost trusted proxy wrote — never the
//! leftmost. Without a proxy, the connection's peer is the client.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use shared::config::{ConfigError, Settings};

/// The header the WeChat Cloud Hosting gateway writes the caller's address to.
pub const GATEWAY_HEADER: &str = "x-original-forwarded-for";
/// More proxies than this in front of one service is a misreading of the setting.
const MAX_HOPS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    /// The connection's peer: clients connect to payment-api directly.
    Peer,
    /// The entry `hops` places from the right of `header`; the peer when the header is
    /// absent or that entry is not an address.
    Forwarded { header: HeaderName, hops: usize },
}

impl AddressSource {
    /// `default`: where the address is read when `CLIENT_ADDRESS_FROM` is not set
    /// ([`GATEWAY_HEADER`] behind the Cloud Hosting gateway, `peer` elsewhere: a header
    /// nobody trusted to write is anyone's to forge).
    pub fn from_settings(s: &Settings, default: &str) -> Result<Self, ConfigError> {
        let from = s.or("CLIENT_ADDRESS_FROM", default).to_ascii_lowercase();
        if from == "peer" {
            if s.optional("TRUSTED_PROXY_HOPS").is_some() {
                return Err(ConfigError::Invalid {
                    name: "TRUSTED_PROXY_HOPS",
                    reason:
                        "counts proxies appending to a header: not with CLIENT_ADDRESS_FROM=peer"
                            .into(),
                });
            }
            return Ok(AddressSource::Peer);
        }
        let header = HeaderName::from_bytes(from.as_bytes()).map_err(|_| ConfigError::Invalid {
            name: "CLIENT_ADDRESS_FROM",
            reason: "must be `peer` or a header name such as x-original-forwarded-for".into(),
        })?;
        let hops: usize = s.parsed("TRUSTED_PROXY_HOPS", 1)?;
        if !(1..=MAX_HOPS).contains(&hops) {
            return Err(ConfigError::Invalid {
                name: "TRUSTED_PROXY_HOPS",
                reason: format!("must be 1 to {MAX_HOPS}"),
            });
        }
        Ok(AddressSource::Forwarded { header, hops })
    }

    /// The client's address: from the trusted entry of the header, else the peer.
    pub fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let forwarded = match self {
            AddressSource::Peer => None,
            AddressSource::Forwarded { header, hops } => trusted_entry(headers, header, *hops),
        };
        forwarded.or(peer).map(|address| address.to_canonical())
    }
}

/// The entry `hops` places from the right, over every copy of the header in order (a
/// proxy joins copies before appending). Fewer entries than hops: the leftmost, which a
/// trusted proxy wrote too since the client's own entries only add to the left.
fn trusted_entry(headers: &HeaderMap, header: &HeaderName, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all(header)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let entry = entries.get(entries.len().saturating_sub(hops))?;
    parse_entry(entry)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

/// What one client is counted as: an IPv4 address, or an IPv6 /64 — a subscriber is given
/// a whole /64 and can take any address in it, so counting addresses would count nothing.
pub fn bucket(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(network))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn forwarded(header: &'static str, hops: usize) -> AddressSource {
        AddressSource::Forwarded {
            header: HeaderName::from_static(header),
            hops,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const PEER: &str = "192.168.9.9";

    #[test]
    fn the_entry_the_trusted_proxy_wrote_is_taken_never_the_clients() {
        let gateway = forwarded(GATEWAY_HEADER, 1);
        let client = |pairs| gateway.client(&headers(pairs), Some(ip(PEER)));
        assert_eq!(
            client(&[(GATEWAY_HEADER, "6.6.6.6, 10.0.0.1")]),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            client(&[(GATEWAY_HEADER, "10.0.0.1")]),
            Some(ip("10.0.0.1"))
        );
        // Copies are one list, in order.
        assert_eq!(
            client(&[(GATEWAY_HEADER, "6.6.6.6"), (GATEWAY_HEADER, "10.0.0.2")]),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            client(&[(GATEWAY_HEADER, "10.0.0.3:4711")]),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(
            client(&[(GATEWAY_HEADER, "[2001:db8::1]:443")]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            client(&[(GATEWAY_HEADER, "::ffff:10.0.0.4")]),
            Some(ip("10.0.0.4"))
        );
        // No header, or not an address where the proxy writes: the connection's peer.
        assert_eq!(client(&[]), Some(ip(PEER)));
        assert_eq!(
            client(&[(GATEWAY_HEADER, "10.0.0.1, unknown")]),
            Some(ip(PEER))
        );
        // Another header is not read.
        assert_eq!(client(&[("x-forwarded-for", "10.0.0.5")]), Some(ip(PEER)));
    }

    #[test]
    fn behind_two_proxies_the_second_entry_from_the_right_is_the_client() {
        let two = forwarded("x-forwarded-for", 2);
        let client = |pairs| two.client(&headers(pairs), Some(ip(PEER)));
        assert_eq!(
            client(&[("x-forwarded-for", "6.6.6.6, 10.0.0.1, 172.16.0.1")]),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            client(&[("x-forwarded-for", "10.0.0.1")]),
            Some(ip("10.0.0.1")),
            "fewer entries than proxies: all of them are the proxies'"
        );
    }

    #[test]
    fn without_a_proxy_headers_are_ignored() {
        let peer = AddressSource::Peer;
        let spoofed = headers(&[
            (GATEWAY_HEADER, "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        assert_eq!(peer.client(&spoofed, Some(ip(PEER))), Some(ip(PEER)));
    }

    #[test]
    fn ipv6_is_counted_by_its_64_bit_network() {
        assert_eq!(bucket(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_eq!(
            bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "2001:db8:1:2::/64"
        );
        assert_ne!(bucket(ip("2001:db8:1:3::1")), bucket(ip("2001:db8:1:2::1")));
        assert_eq!(bucket(ip("10.0.0.1")), "10.0.0.1");
        assert_eq!(bucket(ip("::ffff:10.0.0.1")), "10.0.0.1");
    }

    #[test]
    fn the_settings_are_checked() {
        let settings = |pairs: &[(&'static str, &'static str)]| {
            AddressSource::from_settings(
                &Settings::from_pairs(pairs.iter().copied()),
                GATEWAY_HEADER,
            )
        };
        assert_eq!(settings(&[]).unwrap(), forwarded(GATEWAY_HEADER, 1));
        assert_eq!(
            settings(&[
                ("CLIENT_ADDRESS_FROM", "X-Forwarded-For"),
                ("TRUSTED_PROXY_HOPS", "2")
            ])
            .unwrap(),
            forwarded("x-forwarded-for", 2)
        );
        assert_eq!(
            settings(&[("CLIENT_ADDRESS_FROM", "peer")]).unwrap(),
            AddressSource::Peer
        );
        for refused in [
            &[("CLIENT_ADDRESS_FROM", "x forwarded")][..],
            &[("TRUSTED_PROXY_HOPS", "0")],
            &[("TRUSTED_PROXY_HOPS", "11")],
            &[("CLIENT_ADDRESS_FROM", "peer"), ("TRUSTED_PROXY_HOPS", "1")],
        ] {
            assert!(settings(refused).is_err(), "{refused:?}");
        }
    }
}
