//! Which address a request comes from.
//!
//! The socket peer, unless the peer is a configured trusted proxy: then the right-most
//! `X-Forwarded-For` entry that is not itself a trusted proxy. Right-most, because every proxy
//! appends; anything to the left of our own proxies' entries was written by the client and can
//! be forged. With no trusted proxies configured the header is ignored entirely — otherwise any
//! client could pick the address its throttling counter is kept under.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

/// Resolves client addresses given the trusted proxy ranges.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientIp {
    trusted: Vec<IpNet>,
}

impl ClientIp {
    /// A resolver that believes `X-Forwarded-For` only from `trusted` peers.
    pub(crate) fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request, if the server provided the peer address.
    pub(crate) fn of(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(
            self.resolve(
                peer,
                parts
                    .headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            ),
        )
    }

    fn resolve<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops = forwarded.rev().flat_map(|v| v.rsplit(',')).map(str::trim);
        let mut last_trusted = peer;
        for hop in hops.by_ref() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.is_trusted(ip) => last_trusted = ip,
                Ok(ip) => return ip,
                // Garbage in the chain: stop believing it.
                Err(_) => return last_trusted,
            }
        }
        last_trusted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let c = ClientIp::default();
        assert_eq!(
            c.resolve(ip("203.0.113.9"), ["1.2.3.4"].into_iter()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let c = ClientIp::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let peer = ip("10.0.0.2");
        assert_eq!(
            c.resolve(peer, ["6.6.6.6, 198.51.100.7, 10.0.0.5"].into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(
            c.resolve(peer, ["6.6.6.6", "198.51.100.7"].into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(c.resolve(peer, ["10.1.1.1"].into_iter()), ip("10.1.1.1"));
        assert_eq!(
            c.resolve(peer, ["garbage, 10.1.1.1"].into_iter()),
            ip("10.1.1.1")
        );
        assert_eq!(c.resolve(peer, std::iter::empty()), peer);
    }
}
