//! `etcd-bootstrap`: a new managed etcd on every control-plane node. Certificates and data volumes
//! first on every node, then the members with `--initial-cluster-state=new`, a wait for health, the
//! users and auth, and the added-member marker on each; each per-node step on all nodes at once.

use std::time::Duration;

use super::{mark, run_spec, write_certs, SetupAuth, WaitHealthy};
use crate::op::common::{fan_out, steps, CreateVolume, RunContainer};
use crate::op::{OpContext, Operator, SeqOperator};
use crate::planner::params::InitialClusterState;

/// How long a new cluster may take to become healthy.
pub const HEALTHY_LIMIT: Duration = Duration::from_secs(120);

/// The operator.
pub fn operator(nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let volume = ctx.cluster.options.etcd.volume();
    let certs = nodes.iter().map(|a| write_certs(ctx, a)).collect();
    let volumes = nodes.iter().map(|a| CreateVolume::boxed(a, volume)).collect();
    let runs = nodes
        .iter()
        .map(|a| {
            let spec = run_spec(ctx, a, Some((nodes, InitialClusterState::New)));
            RunContainer::boxed(a, spec, Some("etcd --initial-cluster-state=new".into()))
        })
        .collect();
    let mut all = steps(vec![certs, volumes, runs]);
    all.push(Box::new(WaitHealthy {
        nodes: nodes.to_vec(),
        limit: HEALTHY_LIMIT,
    }));
    all.push(Box::new(SetupAuth {
        target: nodes.join(","),
        nodes: nodes.to_vec(),
    }));
    all.push(fan_out(nodes.iter().map(|a| mark(a)).collect()));
    SeqOperator::boxed("etcd-bootstrap", nodes.to_vec(), all)
}
