//! The one endpoint filter of `tcp-track flows`, `run` and `read`:
//! `--addr CIDR` (either endpoint), `--port P` (either endpoint),
//! `--client` and `--server` (a network, `:PORT`, or `ADDR:PORT`). Rules of
//! one kind are alternatives (any may match); rules of different kinds must
//! all match; no rule at all matches everything.
//!
//! `flows` applies it to each listed connection; `run` and `read` to each
//! event on its way to the writer (after the reporter, which follows every
//! flow: see `Daemon`). Events about a server rather than one connection
//! (`syn_flood`, `syn_flood_ended`: no client) and about a client address
//! rather than one connection (`time_wait_pressure`: no client port) are
//! judged on the endpoints they have: `--addr` and `--port` on those, a
//! `--client` rule never matches an event without a client, and a
//! `--client` rule with a port never matches a client without one.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

/// An IPv4 or IPv6 network: `198.18.0.0/15`, `2001:db8::/32`, or one
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(u32::from(net).into(), u32::from(ip).into(), 32, self.len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), 128, self.len),
            _ => false,
        }
    }
}

/// Whether the first `len` of `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: u128, b: u128, bits: u8, len: u8) -> bool {
    len == 0 || (a ^ b) >> (bits - len) == 0
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: not an address or network (198.18.0.0/15, 2001:db8::/32, 198.18.0.1)");
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.parse::<u8>().ok().filter(|&l| l <= max).ok_or_else(|| format!("{s:?}: a prefix length is 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, len })
    }
}

/// One side of a connection to match: an address or network, a port, or
/// both (`198.18.0.0/24`, `:443`, `198.18.0.2:443`, `[2001:db8::2]:443`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointFilter {
    net: Option<Cidr>,
    port: Option<u16>,
}

impl EndpointFilter {
    pub fn matches(&self, ep: SocketAddr) -> bool {
        self.net.is_none_or(|n| n.contains(ep.ip())) && self.port.is_none_or(|p| p == ep.port())
    }

    /// An endpoint known by its address only (a client in
    /// `time_wait_pressure`): a rule with a port cannot match it.
    fn matches_host(&self, ip: IpAddr) -> bool {
        self.port.is_none() && self.net.is_none_or(|n| n.contains(ip))
    }
}

impl FromStr for EndpointFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(port) = s.strip_prefix(':') {
            let port = port.parse().map_err(|_| format!("{s:?}: a port is 0 to 65535"))?;
            return Ok(EndpointFilter { net: None, port: Some(port) });
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            let len = if sa.is_ipv4() { 32 } else { 128 };
            return Ok(EndpointFilter { net: Some(Cidr { addr: sa.ip(), len }), port: Some(sa.port()) });
        }
        s.parse::<Cidr>()
            .map(|net| EndpointFilter { net: Some(net), port: None })
            .map_err(|_| format!("{s:?}: not an endpoint (198.18.0.0/24, :443, 198.18.0.2:443, [2001:db8::2]:443)"))
    }
}

/// Which connections (and events) to show, by their endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Either endpoint in one of these networks.
    pub addrs: Vec<Cidr>,
    /// Either endpoint on one of these ports.
    pub ports: Vec<u16>,
    pub clients: Vec<EndpointFilter>,
    pub servers: Vec<EndpointFilter>,
}

impl Filter {
    /// No rule: everything matches.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty() && self.ports.is_empty() && self.clients.is_empty() && self.servers.is_empty()
    }

    /// A connection from `client` to `server`.
    pub fn matches(&self, client: SocketAddr, server: SocketAddr) -> bool {
        self.matches_parts(Some(client.ip()), Some(client.port()), server)
    }

    /// An event about `server` and a client known by its address and port,
    /// its address only (`time_wait_pressure`), or not at all
    /// (`syn_flood`); see the module's comment.
    pub fn matches_parts(&self, client_ip: Option<IpAddr>, client_port: Option<u16>, server: SocketAddr) -> bool {
        // Ports first: the cheapest test, and the commonest filter.
        any(&self.ports, |p| *p == server.port() || Some(*p) == client_port)
            && any(&self.addrs, |n| n.contains(server.ip()) || client_ip.is_some_and(|ip| n.contains(ip)))
            && any(&self.servers, |e| e.matches(server))
            && any(&self.clients, |e| match (client_ip, client_port) {
                (Some(ip), Some(port)) => e.matches(SocketAddr::new(ip, port)),
                (Some(ip), None) => e.matches_host(ip),
                _ => false,
            })
    }
}

/// No rule of a kind, or one that matches.
pub fn any<T>(rules: &[T], matches: impl Fn(&T) -> bool) -> bool {
    rules.is_empty() || rules.iter().any(matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let n: Cidr = "198.18.0.0/15".parse().unwrap();
        assert!(n.contains("198.19.255.255".parse().unwrap()));
        assert!(!n.contains("198.20.0.0".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()), "another family never matches");
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let one: Cidr = "198.18.0.1".parse().unwrap();
        assert!(one.contains("198.18.0.1".parse().unwrap()) && !one.contains("198.18.0.2".parse().unwrap()));
        assert!("198.18.0.0/33".parse::<Cidr>().unwrap_err().contains("0 to 32"));
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn endpoint_filters_take_a_network_a_port_or_both() {
        let f: EndpointFilter = ":443".parse().unwrap();
        assert!(f.matches(ep("198.18.0.2:443")) && !f.matches(ep("198.18.0.2:80")));
        let f: EndpointFilter = "[2001:db8::2]:443".parse().unwrap();
        assert!(f.matches(ep("[2001:db8::2]:443")) && !f.matches(ep("[2001:db8::3]:443")));
        let f: EndpointFilter = "198.18.0.0/24".parse().unwrap();
        assert!(f.matches(ep("198.18.0.9:1")) && !f.matches(ep("198.18.1.9:1")));
        assert!(":99999".parse::<EndpointFilter>().is_err());
        assert!("".parse::<EndpointFilter>().is_err());
    }

    #[test]
    fn rules_of_one_kind_are_alternatives_of_different_kinds_all_apply() {
        let (c, s) = (ep("198.18.0.1:40000"), ep("198.18.0.2:443"));
        assert!(Filter::default().is_empty() && Filter::default().matches(c, s));
        let mut f = Filter { ports: vec![80, 443], ..Filter::default() };
        assert!(f.matches(c, s));
        f.ports = vec![40000];
        assert!(f.matches(c, s), "--port is either endpoint");
        f.servers = vec![":80".parse().unwrap()];
        assert!(!f.matches(c, s), "the server is on 443");
        f.servers.push(":443".parse().unwrap());
        assert!(f.matches(c, s));
        f.clients = vec!["198.18.0.0/31".parse().unwrap()];
        assert!(f.matches(c, s));
        f.clients = vec!["198.18.0.2".parse().unwrap()];
        assert!(!f.matches(c, s), "--client is the client only");
        f.clients.clear();
        f.addrs = vec!["2001:db8::/32".parse().unwrap()];
        assert!(!f.matches(c, s));
        f.addrs.push("198.18.0.1".parse().unwrap());
        assert!(f.matches(c, s), "--addr is either endpoint");
    }

    /// `syn_flood` has no client, `time_wait_pressure` a client address
    /// without a port: judged on what they name.
    #[test]
    fn events_about_a_server_or_a_client_address_follow_the_same_rules() {
        let (ip, server) = ("198.18.0.1".parse().ok(), ep("198.18.0.2:80"));
        let flood = (None, None);
        let pressure = (ip, None);
        let conn = (ip, Some(40000));
        let rule = |args: &[(&str, &str)]| {
            let mut f = Filter::default();
            for (k, v) in args {
                match *k {
                    "addr" => f.addrs.push(v.parse().unwrap()),
                    "port" => f.ports.push(v.parse().unwrap()),
                    "client" => f.clients.push(v.parse().unwrap()),
                    _ => f.servers.push(v.parse().unwrap()),
                }
            }
            f
        };
        let shown = |f: &Filter| [flood, pressure, conn].map(|(ip, port)| f.matches_parts(ip, port, server));
        assert_eq!(shown(&rule(&[])), [true, true, true]);
        assert_eq!(shown(&rule(&[("port", "80")])), [true, true, true]);
        assert_eq!(shown(&rule(&[("port", "40000")])), [false, false, true], "only the connection has the client's port");
        assert_eq!(shown(&rule(&[("server", "198.18.0.2:80")])), [true, true, true]);
        assert_eq!(shown(&rule(&[("server", ":443")])), [false, false, false]);
        assert_eq!(shown(&rule(&[("addr", "198.18.0.1")])), [false, true, true], "a flood names no client");
        assert_eq!(shown(&rule(&[("client", "198.18.0.0/24")])), [false, true, true]);
        assert_eq!(shown(&rule(&[("client", "198.18.0.1:40000")])), [false, false, true], "pressure names no client port");
    }
}
