//! Starting and restarting rivers (in front of the API servers, every node) and etcd-rivers (in front
//! of the etcd members, control-plane nodes), with the control-plane list as upstreams, on all the
//! operation's nodes at once (one step).

use super::common::{steps, RunContainer};
use super::{OpContext, Operator, SeqOperator};
use crate::infra::agent::container::{Replace, RunSpec};
use crate::model::{ContainerParams, Node};
use crate::planner::params::*;

/// Which of the two load balancers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// rivers: local port 16443 to every apiserver.
    Rivers,
    /// etcd-rivers: local port 12379 to every etcd member.
    EtcdRivers,
}

/// The container of `kind` as the declaration wants it.
pub fn run_spec(ctx: OpContext<'_>, kind: Kind) -> RunSpec {
    let cps: Vec<&Node> = ctx.cluster.control_planes().collect();
    let (container, builtin, extra) = match kind {
        Kind::EtcdRivers => (
            ETCD_RIVERS_CONTAINER,
            rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT),
            ctx.cluster.options.etcd_rivers.clone(),
        ),
        Kind::Rivers => (
            RIVERS_CONTAINER,
            rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT),
            ctx.cluster.options.rivers.clone(),
        ),
    };
    let mut command = vec!["/usr/bin/rivers".to_string()];
    command.extend(builtin.extra_args.iter().cloned());
    command.extend(extra.extra_args.iter().cloned());
    let mut binds = builtin.extra_binds.clone();
    binds.extend(extra.extra_binds.iter().cloned());
    RunSpec {
        name: container.into(),
        image: ctx.images.tools.clone(),
        command,
        binds,
        env: extra.extra_env.clone(),
        params: ContainerParams { builtin, extra },
        options: vec![],
        // Killed, as CKE's restart does: a stopped rivers would drain with its port closed.
        replace: Replace::Kill,
        image_present: false,
    }
}

/// An operator (re)starting `kind` on `nodes`, all at once.
pub fn operator(name: &'static str, nodes: &[String], ctx: OpContext<'_>, kind: Kind) -> Box<dyn Operator> {
    let spec = run_spec(ctx, kind);
    let run = nodes
        .iter()
        .map(|address| {
            // A restart replaces a container of the same image: no image check before it.
            let running = ctx.status.nodes.get(address).map(|n| match kind {
                Kind::Rivers => &n.rivers,
                Kind::EtcdRivers => &n.etcd_rivers,
            });
            let spec = RunSpec {
                image_present: running.is_some_and(|s| s.has_image(&spec.image)),
                ..spec.clone()
            };
            RunContainer::boxed(address, spec, None)
        })
        .collect();
    SeqOperator::boxed(name, nodes.to_vec(), steps(vec![run]))
}
