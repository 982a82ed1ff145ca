//! The client's address: the peer, or — only when the peer is a trusted proxy
//! (`server.trusted_proxies`) — the right-most `X-Forwarded-For` address that is not itself a
//! trusted proxy (clients can forge everything to the left of what a trusted proxy appended).

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use super::headers::X_FORWARDED_FOR;

/// Entries are read from the right; `ip:port` and `[v6]:port` count as their address. An
/// entry that is no address stops the walk and the peer is the answer (fail closed: skipping
/// it would make a forged entry further left the answer). Allocates nothing.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    // Later header lines come after earlier ones: walk the lines backwards, each from its end.
    for v in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(v) = v.to_str() else {
            return peer;
        };
        for entry in v.rsplit(',') {
            match forwarded_address(entry) {
                Some(ip) if trusted(&ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
    }
    peer
}

/// One `X-Forwarded-For` entry as an address: `ip`, `ip:port` (IPv4) or `[v6]` / `[v6]:port`;
/// `None` for anything else.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok.then(|| v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    e.parse::<std::net::SocketAddrV4>()
        .ok()
        .map(|a| IpAddr::V4(*a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn right_most_untrusted_hop_only_from_a_trusted_peer() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("6.6.6.6, 1.2.3.4"),
        );
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.9"));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&h, peer, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "5.5.5.5".parse().unwrap();
        assert_eq!(client_ip(&h, outsider, &trusted), outsider);
        let mut bad = HeaderMap::new();
        bad.append(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4, junk"));
        assert_eq!(client_ip(&bad, peer, &trusted), peer);
        let mut v6 = HeaderMap::new();
        v6.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(
            client_ip(&v6, peer, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
