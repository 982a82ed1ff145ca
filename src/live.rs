//! The running configuration (docs/src/operating/reload.md): the [`App`] built from it sits behind a handle that
//! a reload swaps, and is read per request — a connection opened before a reload serves the
//! next request with the new rules, and in-flight requests finish with the rules they started
//! with. `SIGHUP` reloads the file: a file that fails validation is rejected with every
//! problem logged and the running configuration kept; settings that need a restart
//! (listeners, TLS files, `data_dir`, the pool database, the session store, logging) are
//! logged as such and keep their running values while the rest of the file applies.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Cache};

use crate::app::App;
use crate::config::{self, Config, RedisTarget};

pub struct Live {
    current: ArcSwap<App>,
    file: PathBuf,
    reloads_ok: AtomicU64,
    reloads_rejected: AtomicU64,
    reloading: tokio::sync::Mutex<()>,
}

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(#[from] config::ConfigError),
    #[error("the new configuration could not be built: {0}")]
    Build(#[from] crate::app::BuildError),
}

fn redis_urls(t: &Option<RedisTarget>) -> Vec<&str> {
    match t {
        None => vec![],
        Some(RedisTarget::Standalone(u)) => vec![u.expose()],
        Some(RedisTarget::Cluster(us)) => us.iter().map(|u| u.expose()).collect(),
    }
}

/// Puts the running values of restart-only settings into `new`, returning the key of every
/// one that differed.
pub fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:tt)+) => {
            if old.$($field)+ != new.$($field)+ {
                new.$($field)+ = old.$($field)+.clone();
                kept.push($key);
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("server.admin_listen", server.admin_listen);
    keep!("server.workers", server.workers);
    keep!("server.max_header_bytes", server.max_header_bytes);
    keep!("server.header_read_timeout", server.header_read_timeout);
    keep!("server.shutdown_grace", server.shutdown_grace);
    let tls = |c: &Config| {
        c.server
            .tls
            .as_ref()
            .map(|t| (t.cert.clone(), t.key.clone()))
    };
    if tls(old) != tls(new) {
        new.server.tls = old.server.tls.clone();
        kept.push("server.tls_cert / server.tls_key");
    }
    keep!("data_dir", data_dir);
    keep!("session.store", session.store);
    keep!("session.redis_timeout", session.redis_timeout);
    if redis_urls(&old.session.redis) != redis_urls(&new.session.redis) {
        new.session.redis = old.session.redis.clone();
        kept.push("session.redis_url / session.redis_cluster_urls");
    }
    keep!("log.format", log.format);
    keep!("log.level", log.level);
    match (&old.pool, &mut new.pool) {
        (Some(o), Some(n)) if o.database != n.database => {
            n.database = o.database.clone();
            kept.push("pool.database");
        }
        (Some(_), None) | (None, Some(_)) => {
            new.pool = old.pool.clone();
            kept.push("pool (adding or removing the pool)");
        }
        _ => {}
    }
    kept
}

impl Live {
    pub fn new(app: App, file: PathBuf) -> Arc<Live> {
        app.start_health_checks();
        Arc::new(Live {
            current: ArcSwap::from_pointee(app),
            file,
            reloads_ok: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The running service.
    pub fn load(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// A per-connection view that re-reads the running service only after a swap.
    pub fn cache(&self) -> Cache<&ArcSwap<App>, Arc<App>> {
        Cache::new(&self.current)
    }

    /// Reads the file again and swaps the service in, or keeps the running one.
    pub async fn reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.try_reload().await;
        match &result {
            Ok(kept) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                for key in kept {
                    tracing::warn!(
                        key,
                        "configuration reload: this setting needs a restart; the running value is kept"
                    );
                }
                tracing::info!(file = %self.file.display(), "configuration reloaded");
            }
            Err(e) => {
                self.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(file = %self.file.display(), "configuration reload rejected; the running configuration is kept:\n{e}");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let mut cfg = config::load(&self.file)?;
        let old = self.load();
        let kept = keep_restart_only(&old.cfg, &mut cfg);
        let app = old.rebuild(cfg)?;
        if let Some(pool) = &app.pool
            && let Err(e) = pool.ready().await
        {
            tracing::warn!(error = %e, "the reloaded pool is not ready yet; it retries on use");
        }
        app.start_health_checks();
        // The old configuration's health checks stop; targets it listed and the new one does
        // not are deregistered (no new requests; in-flight ones finish within the delay).
        let old = self.current.swap(Arc::new(app));
        let fresh = self.load();
        old.groups.retire(&fresh.groups);
        tokio::spawn(async move {
            fresh.warm_up().await;
        });
        Ok(kept)
    }

    /// Reloads on every SIGHUP, for as long as the process runs.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            let me = self.clone();
            tokio::spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    tracing::warn!("cannot listen for SIGHUP; reload is unavailable");
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = me.reload().await;
                }
            });
        }
    }

    /// The reload counters in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP portcullis_config_reloads_total Configuration reloads (SIGHUP), by result.\n# TYPE portcullis_config_reloads_total counter\nportcullis_config_reloads_total{{result=\"ok\"}} {}\nportcullis_config_reloads_total{{result=\"rejected\"}} {}\n",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_rejected.load(Ordering::Relaxed)
        )
    }
}
