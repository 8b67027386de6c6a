//! The trusted-proxy rule: which peers may describe a request, and which address a request
//! comes from.
//!
//! Forwarding headers — `X-Forwarded-For`, and the `X-Original-*` / `X-Forwarded-Method,
//! -Proto, -Host, -Uri` headers forward auth reads — are believed only from a socket peer in
//! `trusted_proxies`. Anyone else could otherwise pick the address its throttling counter is
//! kept under, or the app (and so the audience of a service JWT) a forward-auth check is about.
//! The default list is loopback (`127.0.0.0/8`, `::1`), because the example configurations run
//! the proxy on the same host; a configured list replaces it, so an operator whose proxy lives
//! elsewhere can stop trusting local processes. An IPv4 peer seen on a dual-stack socket
//! (`::ffff:127.0.0.1`) is compared as the IPv4 address it is.
//!
//! The client address is the socket peer, unless the peer is trusted: then the right-most
//! `X-Forwarded-For` entry that is not itself a trusted proxy. Right-most, because every proxy
//! appends; anything to the left of our own proxies' entries was written by the client and can
//! be forged.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

const X_FORWARDED_FOR: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-forwarded-for");

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
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether the socket peer of a request is a trusted proxy, whose forwarding headers may
    /// be believed. Without a known peer (a router driven without a listener), no.
    pub(crate) fn peer_is_trusted(&self, parts: &Parts) -> bool {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|peer| self.is_trusted(peer.0.ip()))
    }

    /// The client address of a request, if the server provided the peer address.
    pub(crate) fn of(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(
            self.resolve(
                peer,
                parts
                    .headers
                    .get_all(X_FORWARDED_FOR)
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
            return peer.to_canonical();
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

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_is_its_ipv4_address() {
        let c = ClientIp::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(c.is_trusted(ip("::ffff:127.0.0.1")));
        assert!(!c.is_trusted(ip("::ffff:10.0.0.1")));
        assert_eq!(
            c.resolve(ip("::ffff:127.0.0.1"), ["198.51.100.7"].into_iter()),
            ip("198.51.100.7")
        );
    }
}
