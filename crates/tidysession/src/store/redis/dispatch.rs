//! The store's connection, of whichever kind: one server over plain TCP through the store's
//! own [`Connection`], one server otherwise through the `redis` crate's connection manager,
//! or a cluster. Opening it, and reaching one node of a cluster.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

use super::connection::{Connection, RESPONSE_TIMEOUT};
use super::reply::{bytes, BadReply};
use crate::store::StoreError;

/// How long connecting may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection: one server over plain TCP through the store's own [`Connection`], one
/// server otherwise (TLS, a Unix socket, RESP3) through the `redis` crate's reconnecting
/// manager, or a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Single(Connection),
    Managed(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => Box::pin(async move {
                let mut replies = c.send(cmd.get_packed_command(), 0, 1).await?;
                Ok(replies.pop().unwrap_or(Value::Nil))
            }),
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => {
                Box::pin(async move { c.send(cmd.get_packed_pipeline(), offset, count).await })
            }
            Conn::Managed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.db(),
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Conn::Single(_) | Conn::Managed(_) => "single",
            Conn::Cluster(_) => "cluster",
        }
    }

    /// Opens a connection to the one server `url` names; also says where it leads, without
    /// credentials.
    pub(super) async fn open(url: &str) -> Result<(Self, String), StoreError> {
        let client = ::redis::Client::open(url).map_err(StoreError::backend)?;
        let info = client.get_connection_info();
        let target = format!("{}/{}", info.addr(), info.redis_settings().db());
        let conn = if Connection::supports(info) {
            Conn::Single(
                Connection::open(info, CONNECT_TIMEOUT)
                    .await
                    .map_err(StoreError::backend)?,
            )
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                // The crate's default, 500 ms, fails requests on a briefly busy server.
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                // One reconnect attempt per failure: while Redis is down, a request fails
                // within a few hundred milliseconds rather than stalling for seconds.
                .set_number_of_retries(1);
            Conn::Managed(
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(StoreError::backend)?,
            )
        };
        Ok((conn, target))
    }

    /// Opens a connection to the cluster the `redis://` URLs of `nodes` belong to; also says
    /// where it leads, without credentials.
    pub(super) async fn open_cluster(nodes: Vec<&str>) -> Result<(Self, String), StoreError> {
        let mut target = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let client = ::redis::Client::open(*node).map_err(StoreError::backend)?;
            target.push(client.get_connection_info().addr().to_string());
        }
        // Without a response timeout (the crate's default) a hung node stalls requests.
        let client = ClusterClientBuilder::new(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(StoreError::backend)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(StoreError::backend)?;
        Ok((Conn::Cluster(conn), target.join(",")))
    }

    /// A route to each node that holds keys: `None` (where the connection leads) on a single
    /// server, each master on a cluster.
    pub(super) async fn nodes(&self) -> Result<Vec<Option<SingleNodeRoutingInfo>>, StoreError> {
        match self {
            Conn::Single(_) | Conn::Managed(_) => Ok(vec![None]),
            Conn::Cluster(conn) => Ok(masters(conn).await?.into_iter().map(Some).collect()),
        }
    }

    /// Sends `cmd` to the node `route` names (if any, on a cluster).
    pub(super) async fn command_on(
        &self,
        route: Option<&SingleNodeRoutingInfo>,
        cmd: Cmd,
    ) -> Result<Value, StoreError> {
        match (self, route) {
            (Conn::Cluster(c), Some(route)) => {
                let route = RoutingInfo::SingleNode(route.clone());
                c.clone().route_command(cmd, route).await
            }
            _ => cmd.query_async(&mut self.clone()).await,
        }
        .map_err(StoreError::backend)
    }

    /// Sends the `count` commands of `pipe` to the node `route` names (if any, on a cluster).
    pub(super) async fn pipeline_on(
        &self,
        route: Option<&SingleNodeRoutingInfo>,
        pipe: Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, StoreError> {
        match (self, route) {
            (Conn::Cluster(c), Some(route)) => {
                c.clone()
                    .route_pipeline(pipe, 0, count, route.clone())
                    .await
            }
            _ => pipe.query_async(&mut self.clone()).await,
        }
        .map_err(StoreError::backend)
    }
}

/// The cluster's masters, as routes to each.
async fn masters(conn: &ClusterConnection) -> Result<Vec<SingleNodeRoutingInfo>, StoreError> {
    // A command sent to every master without a response policy answers with a map from
    // each node's address to its reply.
    let reply = conn
        .clone()
        .route_command(
            ::redis::cmd("PING"),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        )
        .await
        .map_err(StoreError::backend)?;
    let Value::Map(nodes) = reply else {
        return Err(StoreError::backend(BadReply("PING to every master")));
    };
    nodes
        .into_iter()
        .map(|(addr, _)| {
            let addr = bytes(&addr).and_then(|b| std::str::from_utf8(b).ok());
            let (host, port) = addr
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(h, p)| Some((h, p.parse().ok()?)))
                .ok_or_else(|| StoreError::backend(BadReply("cluster node address")))?;
            Ok(SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            })
        })
        .collect()
}

/// The node URLs of `redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT,...[/][?QUERY]`
/// (given without the scheme): `redis://[USER:PASSWORD@]HOST:PORT[?QUERY]` each.
pub(super) fn cluster_nodes(rest: &str) -> Option<Vec<String>> {
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(|host| format!("redis://{userinfo}{host}{query}"))
        .collect();
    let valid = hosts.split(',').all(|h| !h.is_empty() && !h.contains('/'));
    valid.then_some(nodes)
}

/// A Redis URL that cannot be parsed (not echoed: it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL")]
pub(super) struct InvalidUrl;
