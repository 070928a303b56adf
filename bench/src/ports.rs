//! Free loopback ports for processes that must be told where to listen.
//!
//! Binding port 0 and releasing it is racy twice over: the kernel may hand the same
//! ephemeral port to the next `bind(0)` in this process, and any process's outgoing
//! connection or QUIC client socket may take it before the child binds. Ports are
//! therefore picked *below* the kernel's ephemeral range, which automatic binds never use,
//! and each port is handed out at most once per process.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Where the search starts when the ephemeral range cannot be read (Linux's default low end).
const DEFAULT_EPHEMERAL_LOW: u16 = 32768;
/// How many ports below the ephemeral range are candidates.
const WINDOW: u16 = 12_000;
/// Ports under this are privileged or well known.
const FLOOR: u16 = 10_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback TCP port that is free now, outside the ephemeral range, and not handed out
/// before by this process. Checks UDP too, so a caller may use it for either.
pub fn free_tcp() -> io::Result<SocketAddr> {
    pick()
}

/// A loopback UDP port with the same guarantees as [`free_tcp`].
pub fn free_udp() -> io::Result<SocketAddr> {
    pick()
}

fn pick() -> io::Result<SocketAddr> {
    let (low, high) = window();
    let span = u32::from(high - low);
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    // Start somewhere that differs between processes, so concurrent test binaries rarely
    // probe the same ports.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let start = seed % span;
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let free = TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok();
        if free {
            handed_out.insert(port);
            return Ok(addr);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("no free loopback port between {low} and {high}"),
    ))
}

/// `[low, high)`: the `WINDOW` ports just below the ephemeral range.
fn window() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW);
    let high = ephemeral_low.max(FLOOR + 1_000);
    let low = high.saturating_sub(WINDOW).max(FLOOR);
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let (low, high) = window();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let tcp = free_tcp().unwrap();
            let udp = free_udp().unwrap();
            for addr in [tcp, udp] {
                assert!((low..high).contains(&addr.port()), "{addr}");
                assert!(seen.insert(addr.port()), "{addr} handed out twice");
            }
        }
    }

    #[test]
    fn a_handed_out_port_is_bindable() {
        let addr = free_tcp().unwrap();
        TcpListener::bind(addr).unwrap();
        UdpSocket::bind(addr).unwrap();
    }
}
