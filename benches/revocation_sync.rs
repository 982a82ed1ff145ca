//! What the shared revocation list costs a replica with 10 and with 1,000,000 live entries,
//! against a real `redis-server` (started here on a free loopback port, stopped at the end):
//! the one full read when a replica starts, the steady poll each second with nothing new and
//! with one new revocation, the once-a-minute upkeep (expired entries leave memory and Redis),
//! the resident memory, and — for comparison — what the previous design did on every change
//! (read the whole hash and parse it).
//!
//! `cargo bench --bench revocation_sync` (release), or `cargo bench --profile dev --bench
//! revocation_sync` for a quicker build. Optional argument: the sizes, e.g. `-- 10 100000`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::{RedisTarget, Secret};
use portcullis::session::redis::Redis;
use portcullis::session::revocation::{Entry, Revocations};

const HASH: &str = "portcullis:revocations";
const EXPIRY: &str = "{portcullis:revocations}:expiry";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_ms() -> f64 {
    // Time on CPU of every thread of this process (schedstat: nanoseconds).
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e6
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

/// Writes `n` live user-wide entries straight into the hash and the expiry set (as a year of
/// revocations would have left them; the change log only holds the last minutes).
async fn fill(url: &str, n: usize) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut i = 0;
    while i < n {
        let mut p = redis::pipe();
        for j in i..(i + 10_000).min(n) {
            let e = Entry::Subject {
                provider: "idp".into(),
                sub: format!("user-{j:08}"),
                at_ms: now * 1000,
                until: now + 86_400 + (j as i64 % 3_600),
            };
            let key = format!("u\u{1f}idp\u{1f}user-{j:08}");
            p.cmd("HSET")
                .arg(HASH)
                .arg(&key)
                .arg(serde_json::to_string(&e).unwrap())
                .ignore();
            p.cmd("ZADD")
                .arg(EXPIRY)
                .arg(now + 86_400)
                .arg(&key)
                .ignore();
        }
        let _: () = p.query_async(&mut c).await.unwrap();
        i += 10_000;
    }
}

async fn measure(port: u16, n: usize) {
    let url = format!("redis://127.0.0.1:{port}");
    fill(&url, n).await;
    let target = RedisTarget::Standalone(Secret::new(url.clone()));
    let home = tokio::runtime::Handle::current();
    let redis = Redis::new(&target, Duration::from_secs(30), home.clone()).unwrap();
    let writer_redis = Redis::new(&target, Duration::from_secs(30), home).unwrap();

    let rss0 = rss_kib();
    let reader = Revocations::new(None, Some(redis.clone()));
    let (t, c) = (Instant::now(), cpu_ms());
    reader.sync().await;
    let full = (t.elapsed(), cpu_ms() - c);
    assert_eq!(reader.len(), n);
    let rss1 = rss_kib();

    // Steady state, nothing new: 50 polls.
    let polls = 50;
    let (t, c) = (Instant::now(), cpu_ms());
    for _ in 0..polls {
        reader.sync().await;
    }
    let idle = (t.elapsed() / polls, (cpu_ms() - c) / polls as f64);

    // One new revocation per poll (written by another instance, as another replica would).
    let writer: Arc<Revocations> = Revocations::new(None, Some(writer_redis));
    let mut busy = Duration::ZERO;
    let mut busy_cpu = 0.0;
    for k in 0..polls {
        writer
            .add(Entry::Session {
                sid: format!("s-{n}-{k}"),
                until: 4_000_000_000,
            })
            .await
            .unwrap();
        let g = reader.generation();
        let (t, c) = (Instant::now(), cpu_ms());
        reader.sync().await;
        busy += t.elapsed();
        busy_cpu += cpu_ms() - c;
        assert_ne!(reader.generation(), g, "the new entry was read");
    }
    let busy = (busy / polls, busy_cpu / polls as f64);

    // The once-a-minute upkeep (prune memory, expire Redis, compaction check).
    let (t, c) = (Instant::now(), cpu_ms());
    reader.upkeep().await;
    let upkeep = (t.elapsed(), cpu_ms() - c);

    // What the previous design did on every change: HGETALL and parse everything.
    let (t, c) = (Instant::now(), cpu_ms());
    let all: std::collections::HashMap<String, String> =
        redis.query(redis::cmd("HGETALL").arg(HASH)).await.unwrap();
    let parsed = all
        .values()
        .filter(|j| serde_json::from_str::<Entry>(j).is_ok())
        .count();
    let old = (t.elapsed(), cpu_ms() - c);
    assert_eq!(parsed, n + polls as usize);
    drop(all);

    println!(
        "entries {n:>9}: start (full read) {:>9.1?} cpu {:>7.1} ms | poll, nothing new {:>8.1?} cpu {:>6.3} ms | \
         poll, 1 new {:>8.1?} cpu {:>6.3} ms | upkeep/min {:>8.1?} cpu {:>6.1} ms | \
         list memory {:>7} KiB | previous design per change {:>9.1?} cpu {:>7.1} ms",
        full.0,
        full.1,
        idle.0,
        idle.1,
        busy.0,
        busy.1,
        upkeep.0,
        upkeep.1,
        rss1.saturating_sub(rss0),
        old.0,
        old.1,
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 1_000_000]
    } else {
        sizes
    };
    let (_server, port) = start_redis();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for n in sizes {
            measure(port, n).await;
        }
    });
}
