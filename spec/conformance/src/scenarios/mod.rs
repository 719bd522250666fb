//! The scenarios: each starts what it needs (a fresh gateway, one or more workers of the
//! language under test), drives it through real HTTP, and checks the outcome exactly.

mod auth;
mod basics;
mod bodies;
mod concurrency;
mod gateways;
mod hints;
mod lifecycle;
mod tls;
mod upgrades;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::check::{fail, Outcome};
use crate::http::{self, Client};
use crate::procs::{Gateway, GatewaySetup, Worker, WorkerCommand, WAIT};

pub type Run = fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome<()>> + Send>>;

/// One row of the matrix.
pub struct Scenario {
    pub name: &'static str,
    pub run: Run,
}

/// What every scenario gets: the language under test and how to start things.
#[derive(Clone)]
pub struct Ctx {
    pub lang: String,
    pub gateway_bin: PathBuf,
    pub worker: WorkerCommand,
}

/// The scenarios, in matrix order.
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    v.extend(basics::scenarios());
    v.extend(bodies::scenarios());
    v.extend(concurrency::scenarios());
    v.extend(lifecycle::scenarios());
    v.extend(gateways::scenarios());
    v.extend(auth::scenarios());
    v.extend(tls::scenarios());
    v.extend(upgrades::scenarios());
    v.extend(hints::scenarios());
    v
}

/// Declares scenarios from `async fn(Ctx) -> Outcome<()>` items.
#[macro_export]
macro_rules! scenarios {
    ($($name:literal => $f:path),* $(,)?) => {
        vec![$($crate::scenarios::Scenario {
            name: $name,
            run: |ctx| Box::pin($f(ctx)),
        }),*]
    };
}

/// A gateway with one connected, registered worker.
pub struct Env {
    pub gw: Gateway,
    pub worker: Worker,
    pub client: Client,
    pub id: String,
    pub connection_id: String,
}

impl Ctx {
    pub fn worker_id(&self) -> String {
        format!("conformance:{}", self.lang)
    }

    /// A gateway on its embedded default (dev mode) on an ephemeral port.
    pub async fn gateway(&self) -> Outcome<Gateway> {
        self.gateway_with(GatewaySetup::default()).await
    }

    pub async fn gateway_with(&self, setup: GatewaySetup<'_>) -> Outcome<Gateway> {
        Gateway::start(&self.gateway_bin, loopback(0), setup).await
    }

    /// A dev-mode gateway on `addr` (where an earlier one listened).
    pub async fn gateway_at(&self, addr: SocketAddr) -> Outcome<Gateway> {
        Gateway::start(&self.gateway_bin, addr, GatewaySetup::default()).await
    }

    /// Starts a worker (not waiting for it).
    pub fn spawn_worker(&self, gw: &Gateway, extra: &[(&str, String)]) -> Outcome<Worker> {
        Worker::spawn(&self.worker, &gw.ws_url(), &self.worker_id(), extra)
    }

    /// Starts a worker and waits until the gateway lists its connection; returns the
    /// connection id.
    pub async fn connect_worker(
        &self,
        gw: &Gateway,
        extra: &[(&str, String)],
    ) -> Outcome<(Worker, String)> {
        let worker = self.spawn_worker(gw, extra)?;
        let connection_id = worker.connected(0).await.map_err(|e| {
            format!(
                "{e}\n(if the worker cannot start, build it with: {})",
                self.worker.build
            )
        })?;
        let client = http::client();
        wait_connection(&client, gw, &self.worker_id(), |c| {
            c["connection_id"] == connection_id.as_str()
        })
        .await?;
        Ok((worker, connection_id))
    }

    /// A fresh gateway and one registered worker.
    pub async fn env_with(&self, extra: &[(&str, String)]) -> Outcome<Env> {
        self.env_on(self.gateway().await?, extra).await
    }

    /// One registered worker on `gw`.
    pub async fn env_on(&self, gw: Gateway, extra: &[(&str, String)]) -> Outcome<Env> {
        let (worker, connection_id) = self.connect_worker(&gw, extra).await?;
        Ok(Env {
            gw,
            worker,
            client: http::client(),
            id: self.worker_id(),
            connection_id,
        })
    }

    pub async fn env(&self) -> Outcome<Env> {
        self.env_with(&[]).await
    }
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        self.gw.url(path)
    }

    pub async fn get(&self, path: &str) -> Outcome<http::Reply> {
        http::get(&self.client, &self.url(path)).await
    }

    /// Checks that the worker still serves, on the connection it started with.
    pub async fn still_serving(&self) -> Outcome<()> {
        let reply = self.get("/greet/still").await?;
        crate::ensure_eq!(reply.status, 200, "GET /greet/still afterwards");
        let conns = connections(&self.client, &self.gw, &self.id).await?;
        let ids: Vec<&str> = conns
            .iter()
            .filter_map(|c| c["connection_id"].as_str())
            .collect();
        crate::ensure_eq!(
            ids,
            vec![self.connection_id.as_str()],
            "the worker's connections (it must not have reconnected)"
        );
        Ok(())
    }
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The gateway's `/_vyx/workers` entries for `worker_id`.
pub async fn connections(client: &Client, gw: &Gateway, worker_id: &str) -> Outcome<Vec<Value>> {
    let reply = http::get(client, &gw.url("/_vyx/workers")).await?;
    crate::ensure_eq!(reply.status, 200, "GET /_vyx/workers");
    let list = reply.json()?;
    let Some(list) = list.as_array() else {
        return fail(format!("/_vyx/workers is not a list: {list}"));
    };
    Ok(list
        .iter()
        .filter(|c| c["id"] == worker_id)
        .cloned()
        .collect())
}

/// Polls `/_vyx/workers` until `done` accepts the connections of `worker_id`.
pub async fn wait_connections(
    client: &Client,
    gw: &Gateway,
    worker_id: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Outcome<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let conns = connections(client, gw, worker_id).await?;
        if done(&conns) {
            return Ok(conns);
        }
        if Instant::now() >= deadline {
            return fail(format!(
                "{what} not seen within {timeout:?}; /_vyx/workers has {}",
                Value::from(conns)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until exactly one connection of `worker_id` is listed and `pred` accepts it.
pub async fn wait_connection(
    client: &Client,
    gw: &Gateway,
    worker_id: &str,
    pred: impl Fn(&Value) -> bool,
) -> Outcome<Value> {
    let conns = wait_connections(
        client,
        gw,
        worker_id,
        "the worker's connection",
        WAIT,
        |c| c.len() == 1 && pred(&c[0]),
    )
    .await?;
    Ok(conns[0].clone())
}
