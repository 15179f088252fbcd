//! Stopping components (CKE's `op/stop.go`: `docker kill` + `rm`): `stop-kube-proxy` when
//! kube-proxy is disabled, and the control-plane containers on nodes that are no longer control
//! planes (`stop-kube-apiserver`, `stop-kube-controller-manager`, `stop-kube-scheduler`,
//! `stop-etcd`, `stop-etcd-rivers`). Data volumes are kept.

use super::*;
use crate::op::{Operator, SeqOperator};

/// Removes the container `container` on every node in `nodes`, all at once.
pub fn operator(name: &'static str, container: &str, nodes: &[String]) -> Box<dyn Operator> {
    let remove = nodes
        .iter()
        .map(|address| RemoveContainer::boxed(address, container))
        .collect();
    SeqOperator::boxed(name, nodes.to_vec(), steps(vec![remove]))
}

/// Removes `component`'s container on every node in `nodes`.
pub fn component(name: &'static str, component: Component, nodes: &[String]) -> Box<dyn Operator> {
    operator(name, component.container_name(), nodes)
}
