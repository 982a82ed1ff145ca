//! The Redis connection shared by the session store, the revocation list and the refresh
//! lock: one server (`redis://`, `rediss://`, ACL user/password, database number) or a Redis
//! Cluster (seed nodes). Connected lazily and re-connected by itself, so Portcullis starts and
//! keeps serving (failing closed where Redis is needed) while Redis is down, and resumes by
//! itself when it returns. Every call has a timeout; an error is [`Unavailable`], which the
//! request path turns into a 503.
//!
//! Connections are made on the main runtime (the one that outlives every worker), so their
//! driver tasks never depend on a request worker's runtime.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;

use crate::config::RedisTarget;

/// Redis could not be reached within the timeout, or answered with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct Unavailable(pub String);

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

enum Client {
    Single(Box<redis::Client>),
    Cluster(Box<redis::cluster::ClusterClient>),
}

pub struct Redis {
    client: Client,
    conn: Mutex<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
    timeout: Duration,
    /// The runtime that owns connection driver tasks.
    home: tokio::runtime::Handle,
}

impl Redis {
    /// Builds the client (no network yet). `home`: the runtime connections are made on.
    pub fn new(
        target: &RedisTarget,
        timeout: Duration,
        home: tokio::runtime::Handle,
    ) -> Result<Arc<Redis>, Unavailable> {
        let err = |e: redis::RedisError| Unavailable(e.to_string());
        let client = match target {
            RedisTarget::Standalone(url) => {
                Client::Single(Box::new(redis::Client::open(url.expose()).map_err(err)?))
            }
            RedisTarget::Cluster(nodes) => Client::Cluster(Box::new(
                redis::cluster::ClusterClientBuilder::new(
                    nodes.iter().map(|n| n.expose().to_string()),
                )
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(err)?,
            )),
        };
        Ok(Arc::new(Redis {
            client,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            timeout,
            home,
        }))
    }

    async fn conn(&self) -> Result<Conn, Unavailable> {
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let _g = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().clone() {
            return Ok(c);
        }
        let made = match &self.client {
            Client::Single(c) => {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                let c = (**c).clone();
                let fut = async move { ConnectionManager::new_with_config(c, cfg).await };
                self.spawn_home(fut).await.map(Conn::Single)
            }
            Client::Cluster(c) => {
                let c = (**c).clone();
                let fut = async move { c.get_async_connection().await };
                self.spawn_home(fut).await.map(Conn::Cluster)
            }
        }?;
        *self.conn.lock() = Some(made.clone());
        Ok(made)
    }

    async fn spawn_home<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
    ) -> Result<T, Unavailable> {
        let task = self.home.spawn(fut);
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => Err(Unavailable("connect timed out".into())),
            Ok(Err(e)) => Err(Unavailable(format!("connect task: {e}"))),
            Ok(Ok(Err(e))) => Err(Unavailable(e.to_string())),
            Ok(Ok(Ok(c))) => Ok(c),
        }
    }

    /// Runs one command with the timeout. A failed connection is dropped so the next call
    /// connects again (the connection manager also reconnects on its own).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Unavailable> {
        let conn = self.conn().await?;
        let run = async {
            match conn {
                Conn::Single(mut c) => cmd.query_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async::<T>(&mut c).await,
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    *self.conn.lock() = None;
                }
                Err(Unavailable(e.to_string()))
            }
            Err(_) => Err(Unavailable("timed out".into())),
        }
    }

    /// Readiness: one PING.
    pub async fn ping(&self) -> bool {
        self.query::<String>(&redis::cmd("PING")).await.is_ok()
    }
}
