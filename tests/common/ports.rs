//! Free loopback ports for the servers integration tests start (shared by the test crates).

/// A free loopback port for a server a test starts. Ports come from below Linux's ephemeral
/// range (32768+), handed out by a per-process counter from a random start, so two servers of
/// one test run never get the same port and a kernel-assigned client port never collides.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000
            + (std::process::id() * 7919
                + std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0))
                % 11_000,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (20_000 + (p - 20_000) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
