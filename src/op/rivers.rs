//! Starting and restarting rivers (in front of the API servers, every node) and etcd-rivers (in front
//! of the etcd members, control-plane nodes), with the control-plane list as upstreams.

use std::sync::Arc;

use super::{CommandError, FnCommand, Operator, SeqOperator};
use crate::agent::container::RunSpec;
use crate::model::{Cluster, ContainerParams, Node};
use crate::planner::params::*;

/// An operator (re)starting rivers (`etcd == false`) or etcd-rivers on `nodes`, one node at a time.
pub fn operator(name: &str, nodes: &[String], cluster: &Cluster, etcd: bool) -> Box<dyn Operator> {
    let cps: Vec<&Node> = cluster.control_planes().collect();
    let (container, builtin, extra) = if etcd {
        (
            ETCD_RIVERS_CONTAINER,
            rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT),
            cluster.options.etcd_rivers.clone(),
        )
    } else {
        (
            RIVERS_CONTAINER,
            rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT),
            cluster.options.rivers.clone(),
        )
    };
    let params = Arc::new(ContainerParams { builtin, extra });
    let commands = nodes
        .iter()
        .map(|address| {
            let params = params.clone();
            FnCommand::boxed("run-container", address, container, move |infra, cmd| {
                Box::pin(async move {
                    let address = cmd.target.clone();
                    let node = infra.node(&address, cmd)?;
                    let mut command = vec!["/usr/bin/rivers".to_string()];
                    command.extend(params.builtin.extra_args.iter().cloned());
                    command.extend(params.extra.extra_args.iter().cloned());
                    let mut binds = params.builtin.extra_binds.clone();
                    binds.extend(params.extra.extra_binds.iter().cloned());
                    let spec = RunSpec {
                        name: container.into(),
                        image: infra.images.tools.clone(),
                        command,
                        binds,
                        env: params.extra.extra_env.clone(),
                        params: (*params).clone(),
                    };
                    infra
                        .engine
                        .run(&node, &spec)
                        .await
                        .map_err(|e| CommandError::new(cmd, crate::controller::error_chain(&e)))
                })
            })
        })
        .collect();
    SeqOperator::boxed(name, nodes.to_vec(), commands)
}
