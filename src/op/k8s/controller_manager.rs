//! `kube-controller-manager-bootstrap` (pull, write its kubeconfig and the service-account key, run)
//! and `kube-controller-manager-restart` (pull, run anew; no file is written again, as CKE's).

use super::*;
use crate::op::{Operator, SeqOperator};

/// The operator for `nodes`; `boot` writes the files first.
pub fn operator(nodes: &[String], ctx: OpContext<'_>, boot: bool) -> Box<dyn Operator> {
    let name = if boot {
        "kube-controller-manager-bootstrap"
    } else {
        "kube-controller-manager-restart"
    };
    let version = match version(ctx) {
        Ok(v) => v,
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse_image(nodes, e)),
    };
    let (mut pulls, mut dirs, mut writes, mut runs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for address in nodes {
        pulls.push(pull(ctx, address));
        if boot {
            let mut files = vec![kubeconfig(
                CONTROLLER_MANAGER_KUBECONFIG_PATH,
                crate::k8s::kubeconfig::CONTROLLER_MANAGER_USER,
                requests::kube_controller_manager(),
            )];
            files.extend(service_account_files(false));
            dirs.push(make_dirs(address, &[(K8S_PKI_DIR, None)]));
            writes.push(write(address, "kube-controller-manager", vec![], files));
        }
        let spec = run_spec(ctx, version, Component::ControllerManager, node(ctx, address));
        runs.push(run(address, spec));
    }
    SeqOperator::boxed(name, nodes.to_vec(), steps(vec![pulls, dirs, writes, runs]))
}
