//! Ports a supervisor picks for the processes it starts (the chaos run, the end-to-end
//! tests): [`free_port`].

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// A free address on 127.0.0.1 for a child process to listen on, possibly again after a
/// restart; `None` if none is free.
///
/// The port is taken below the kernel's ephemeral range (`ip_local_port_range`): a port
/// from `bind(0)` is free only until the kernel hands it out again, to another process's
/// `bind(0)` (a role started with `--http 127.0.0.1:0`) or to an outgoing connection,
/// and a child binds its port some seconds after it was picked (and again when it
/// restarts). Below that range the kernel never picks a port by itself, and each port
/// is handed out once per process (a counter from a start that differs between
/// processes), checked free when picked.
pub fn free_port() -> Option<SocketAddr> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = ephemeral_low();
    let (low, high) = (
        ephemeral_low.saturating_sub(12_000).max(10_000),
        ephemeral_low,
    );
    if high <= low + 1000 {
        return None;
    }
    let span = high - low;
    let start = std::process::id() * 211 % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + (start + n) % span;
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
        if TcpListener::bind(addr).is_ok() {
            return Some(addr);
        }
    }
    None
}

/// The first port of the kernel's ephemeral range (Linux's default if unreadable).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let low = ephemeral_low();
        let ports: Vec<u32> = (0..200)
            .map(|_| u32::from(free_port().unwrap().port()))
            .collect();
        assert!(
            ports.iter().all(|&p| p < low),
            "{ports:?} (ephemeral from {low})"
        );
        let distinct: std::collections::HashSet<u32> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
    }
}
