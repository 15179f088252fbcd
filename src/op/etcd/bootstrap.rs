//! `etcd-bootstrap`: a new managed etcd on every control-plane node. Certificates and data volumes
//! first on every node, then the members with `--initial-cluster-state=new`, a wait for health, the
//! users and auth, and the added-member marker on each.

use std::time::Duration;

use super::{mark, run_spec, write_certs, SetupAuth, WaitHealthy};
use crate::op::common::{CreateVolume, RunContainer};
use crate::op::{OpContext, Operator, SeqOperator};
use crate::planner::params::InitialClusterState;

/// How long a new cluster may take to become healthy.
pub const HEALTHY_LIMIT: Duration = Duration::from_secs(120);

/// The operator.
pub fn operator(nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let volume = ctx.cluster.options.etcd.volume();
    let mut steps = Vec::new();
    for a in nodes {
        steps.push(write_certs(ctx, a));
        steps.push(CreateVolume::boxed(a, volume));
    }
    for a in nodes {
        let spec = run_spec(ctx, a, Some((nodes, InitialClusterState::New)));
        steps.push(RunContainer::boxed(
            a,
            spec,
            Some("etcd --initial-cluster-state=new".into()),
        ));
    }
    steps.push(Box::new(WaitHealthy {
        nodes: nodes.to_vec(),
        limit: HEALTHY_LIMIT,
    }));
    steps.push(Box::new(SetupAuth {
        target: nodes.join(","),
        nodes: nodes.to_vec(),
    }));
    for a in nodes {
        steps.push(mark(a));
    }
    SeqOperator::boxed("etcd-bootstrap", nodes.to_vec(), steps)
}
