//! Whether the pool's database answers (docs/src/deploying/scale-out.md: PostgreSQL down → pool pages 503 with a plain
//! "try again" page, no hang, recovery without a restart). Every pool request first checks
//! with one `SELECT 1` bounded by [`PING_TIMEOUT`]; a failure is remembered for [`RETRY_AFTER`],
//! during which pool requests get their 503 at once instead of each waiting on a dead server.
//! The store reconnects by itself (sqlx opens new connections when old ones broke), so the
//! pool serves again as soon as the database returns, without a restart.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Pool, Ready};

/// Longest wait for the database's answer before a request is refused.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a failure is trusted before the database is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct DbHealth {
    /// When the database last failed to answer, while it is down.
    down_since: Mutex<Option<Instant>>,
}

impl DbHealth {
    /// False while a recent failure says the database is down.
    fn worth_trying(&self) -> bool {
        match *self.down_since.lock() {
            Some(at) => at.elapsed() >= RETRY_AFTER,
            None => true,
        }
    }

    fn record(&self, ok: bool) {
        let mut d = self.down_since.lock();
        match (ok, d.is_some()) {
            (true, true) => {
                tracing::info!(
                    "pool.event" = "database_up",
                    "the pool database answers again"
                );
                *d = None;
            }
            (false, was_down) => {
                if !was_down {
                    tracing::error!(
                        "pool.event" = "database_down",
                        "the pool database does not answer; pool pages answer 503"
                    );
                }
                *d = Some(Instant::now());
            }
            (true, false) => {}
        }
    }
}

impl Pool {
    /// The pool's database state when it answers now; `None` (→ 503) when it does not.
    pub(crate) async fn live(&self, rid: &str) -> Option<&Ready> {
        if !self.health.worth_trying() {
            return None;
        }
        // `serve` opens the database before it listens, so this is normally done already;
        // a failed open is not kept and is simply tried again.
        let ready = match self.ready().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, request_id = rid, "user pool unavailable");
                self.health.record(false);
                return None;
            }
        };
        let ok = tokio::time::timeout(PING_TIMEOUT, ready.store.ping())
            .await
            .unwrap_or(false);
        self.health.record(ok);
        ok.then_some(ready)
    }
}
