//! Environment networks' addresses. The engine's default address pools hold about 30 bridge
//! networks (`172.17.0.0/16` to `172.31.0.0/16`, then `192.168.0.0/16` in /20s), which capped
//! how many environments one machine could have, asleep or awake. Offshoot gives each network a
//! /24 of its own pool instead (`10.213.0.0/16` unless configured: 256 networks), skipping every
//! subnet that a network of the engine or a route of the host already covers.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The pool environment networks take their subnets from unless configured.
pub const DEFAULT_POOL: &str = "10.213.0.0/16";
const DEFAULT_NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 213, 0, 0), 16);

/// The prefix length of one environment network: 254 addresses.
pub const NETWORK_PREFIX: u8 = 24;

/// Where environment networks take their subnets from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkPool {
    pool: Ipv4Net,
}

impl Default for NetworkPool {
    fn default() -> Self {
        NetworkPool { pool: DEFAULT_NET }
    }
}

impl std::str::FromStr for NetworkPool {
    type Err = String;

    /// A private IPv4 range (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`) of at least one /24.
    fn from_str(s: &str) -> Result<Self, String> {
        let net: Ipv4Net = s.trim().parse().map_err(|_| format!("`{s}` is not an IPv4 network such as {DEFAULT_POOL}"))?;
        if net.prefix_len() > NETWORK_PREFIX {
            return Err(format!("`{s}` is smaller than one /{NETWORK_PREFIX} network; give a /{NETWORK_PREFIX} or wider"));
        }
        if !net.network().is_private() {
            return Err(format!("`{s}` is not a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)"));
        }
        Ok(NetworkPool { pool: net.trunc() })
    }
}

impl std::fmt::Display for NetworkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.pool.fmt(f)
    }
}

impl NetworkPool {
    /// How many environment networks the pool holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (NETWORK_PREFIX - self.pool.prefix_len())
    }

    /// The first /24 of the pool that overlaps none of `used`.
    pub fn pick(&self, used: &[Ipv4Net]) -> Option<Ipv4Net> {
        self.free(used).next()
    }

    /// The pool's /24s that overlap none of `used`, in order.
    fn free<'u>(&self, used: &'u [Ipv4Net]) -> impl Iterator<Item = Ipv4Net> + 'u {
        self.pool.subnets(NETWORK_PREFIX).into_iter().flatten().filter(move |n| !used.iter().any(|u| overlap(u, n)))
    }
}

/// How much of a pool is left on this engine and machine ([`crate::DockerRuntime::pool_use`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub pool: NetworkPool,
    /// /24 networks the pool holds.
    pub capacity: u64,
    /// Those neither a network of the engine nor a route of the machine covers.
    pub free: u64,
    /// Routes of the machine (not the engine's own networks) inside the pool: a VPN or another
    /// bridge. Networks skip them, but it means the pool is shared with something else.
    pub host_overlaps: Vec<String>,
}

impl NetworkPool {
    /// What is left of the pool with `engine` networks and `routes` of the machine.
    pub fn usage(&self, engine: &[Ipv4Net], routes: &[Ipv4Net]) -> PoolUse {
        let used: Vec<Ipv4Net> = engine.iter().chain(routes).copied().collect();
        let free = self.free(&used).count() as u64;
        let host_overlaps = routes.iter().filter(|r| overlap(r, &self.pool) && !engine.contains(r)).map(ToString::to_string).collect();
        PoolUse { pool: *self, capacity: self.capacity(), free, host_overlaps }
    }
}

/// Whether two networks share an address (one holds the other).
fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// The destinations of the host's IPv4 routes (from `/proc/net/route`), but the default route:
/// a subnet there is some interface's (a VPN, another bridge) and is not free for a network.
pub fn host_routes() -> Vec<Ipv4Net> {
    std::fs::read_to_string("/proc/net/route").map(|t| parse_routes(&t)).unwrap_or_default()
}

/// Parses the text of `/proc/net/route`: addresses are little-endian hexadecimal.
fn parse_routes(text: &str) -> Vec<Ipv4Net> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.swap_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            let prefix = u8::try_from(u32::from(mask).leading_ones()).ok()?;
            (prefix > 0).then(|| Ipv4Net::new(dest, prefix).ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid")
    }

    #[test]
    fn the_first_free_24_is_picked_around_networks_and_routes() {
        let pool: NetworkPool = "10.213.0.0/16".parse().expect("valid");
        assert_eq!(pool.capacity(), 256);
        assert_eq!(pool.pick(&[]), Some(net("10.213.0.0/24")));
        assert_eq!(pool.pick(&[net("10.213.0.0/24"), net("172.17.0.0/16")]), Some(net("10.213.1.0/24")));
        // A wider route covering the start of the pool, and a narrower one inside a /24.
        assert_eq!(pool.pick(&[net("10.213.0.0/23"), net("10.213.2.128/25")]), Some(net("10.213.3.0/24")));
        // A route covering the whole pool leaves nothing.
        assert_eq!(pool.pick(&[net("10.0.0.0/8")]), None);
        let full: Vec<Ipv4Net> = (0..=255).map(|i| net(&format!("10.213.{i}.0/24"))).collect();
        assert_eq!(pool.pick(&full), None);
        let small: NetworkPool = "192.168.77.0/24".parse().expect("valid");
        assert_eq!((small.capacity(), small.pick(&[])), (1, Some(net("192.168.77.0/24"))));
    }

    #[test]
    fn usage_counts_what_is_free_and_names_the_machines_routes_inside_the_pool() {
        let pool: NetworkPool = "10.213.0.0/16".parse().expect("valid");
        // An engine network (its bridge is also a route) and a VPN route inside the pool.
        let engine = [net("10.213.0.0/24"), net("172.17.0.0/16")];
        let routes = [net("10.213.0.0/24"), net("10.213.8.0/22"), net("192.168.1.0/24")];
        let u = pool.usage(&engine, &routes);
        assert_eq!((u.capacity, u.free), (256, 256 - 1 - 4));
        assert_eq!(u.host_overlaps, ["10.213.8.0/22"]);
    }

    #[test]
    fn a_pool_must_be_private_and_hold_a_24() {
        assert_eq!(NetworkPool::default().to_string(), DEFAULT_POOL);
        assert_eq!("10.9.8.7/16".parse::<NetworkPool>().expect("valid").to_string(), "10.9.0.0/16");
        assert!("10.0.0.0/25".parse::<NetworkPool>().expect_err("invalid").contains("smaller than one /24"));
        assert!("8.8.0.0/16".parse::<NetworkPool>().expect_err("invalid").contains("not a private range"));
        assert!("lots".parse::<NetworkPool>().expect_err("invalid").contains("not an IPv4 network"));
    }

    #[test]
    fn host_routes_are_read_from_proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(text), vec![net("192.168.0.0/24"), net("172.17.0.0/16")]);
    }
}
