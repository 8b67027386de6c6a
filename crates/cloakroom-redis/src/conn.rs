//! One connection type for both topologies.
//!
//! Both are multiplexed: one TCP connection per server carries every concurrent request, and
//! clones are cheap handles onto it — so the store needs no pool. The standalone
//! `ConnectionManager` and the Cluster client both reconnect by themselves; the store only
//! bounds how long any one request may wait for that (see [`RedisConfig`]).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::config::{RedisConfig, Topology};

#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A server to run a keyspace scan on: the only one, or the master owning a slot.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ScanTarget {
    Only,
    MasterOfSlot(u16),
}

impl Conn {
    pub(crate) async fn connect(config: &RedisConfig) -> RedisResult<Self> {
        match &config.topology {
            Topology::Standalone(url) => {
                let client = config.client(url)?;
                // Few reconnection retries with short waits: while Redis is down every request
                // waits for the reconnection in flight, and the caller must fail closed fast.
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(std::time::Duration::from_millis(250));
                Ok(Self::Standalone(
                    ConnectionManager::new_with_config(client, manager_config).await?,
                ))
            }
            Topology::Cluster(seeds) => {
                let mut builder = ClusterClientBuilder::new(seeds.iter().map(String::as_str));
                if let Some(certs) = config.certificates() {
                    builder = builder.certs(certs);
                }
                let client = builder
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.response_timeout)
                    // Retries ride out MOVED/ASK and short slot-map changes; a failover takes
                    // longer than these and surfaces as `Unavailable` until a replica is promoted.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(400)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Where to scan so that every key is seen once: the server, or one slot of each master.
    pub(crate) async fn scan_targets(&mut self) -> RedisResult<Vec<ScanTarget>> {
        let Self::Cluster(c) = self else {
            return Ok(vec![ScanTarget::Only]);
        };
        let nodes = c
            .route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let text: String = redis::from_redis_value(nodes)?;
        Ok(master_slots(&text)
            .into_iter()
            .map(ScanTarget::MasterOfSlot)
            .collect())
    }

    /// One `SCAN` step on `target`.
    pub(crate) async fn scan(
        &mut self,
        target: ScanTarget,
        cursor: u64,
        pattern: &str,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let value = match (self, target) {
            (Self::Cluster(c), ScanTarget::MasterOfSlot(slot)) => {
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        slot,
                        SlotAddr::Master,
                    ))),
                )
                .await?
            }
            (conn, _) => cmd.query_async(conn).await?,
        };
        Ok(redis::from_redis_value(value)?)
    }
}

/// The first slot of every master that serves slots, from `CLUSTER NODES` output. Routing by a
/// slot (rather than by address) leaves the address bookkeeping to the Cluster client.
fn master_slots(cluster_nodes: &str) -> Vec<u16> {
    cluster_nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_live_master = flags.split(',').any(|f| f == "master")
                && !flags
                    .split(',')
                    .any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr"));
            if !is_live_master {
                return None;
            }
            // Slot fields: "0-5460", "5461", or migration markers "[…]" which are skipped.
            fields.get(8..)?.iter().find_map(|range| {
                range
                    .split('-')
                    .next()
                    .and_then(|start| start.parse::<u16>().ok())
            })
        })
        .collect()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_slots_skip_replicas_and_failed_nodes() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b1 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c1 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
d1 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e1 127.0.0.1:7004@17004 master - 0 0 5 connected [93->-b1] 12000
f1 127.0.0.1:7005@17005 master - 0 0 6 connected
";
        assert_eq!(master_slots(nodes), vec![0, 5461, 12000]);
    }
}
