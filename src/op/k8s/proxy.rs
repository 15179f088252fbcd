//! `kube-proxy-bootstrap` and `kube-proxy-restart`: pull, write its kubeconfig and `config.yml`
//! (per node: `hostnameOverride`), run (anew).

use super::*;
use crate::op::{Operator, SeqOperator};

/// The operator for `nodes`.
pub fn operator(nodes: &[String], ctx: OpContext<'_>, boot: bool) -> Box<dyn Operator> {
    let name = if boot {
        "kube-proxy-bootstrap"
    } else {
        "kube-proxy-restart"
    };
    let version = match version(ctx) {
        Ok(v) => v,
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse_image(nodes, e)),
    };
    let (mut pulls, mut writes, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for address in nodes {
        let n = node(ctx, address);
        let config = match crate::k8s::config::proxy(version, &ctx.cluster.options.kube_proxy, n) {
            Ok(c) => crate::k8s::config::to_yaml(&c),
            Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse(nodes, e.to_string())),
        };
        pulls.push(pull(ctx, address));
        let files = vec![
            kubeconfig(
                PROXY_KUBECONFIG_PATH,
                crate::k8s::kubeconfig::PROXY_USER,
                requests::kube_proxy(),
            ),
            literal(PROXY_CONFIG_PATH, 0o644, config),
        ];
        writes.push(write(address, "kube-proxy", vec![], files));
        runs.push(run(address, run_spec(ctx, version, Component::Proxy, n)));
    }
    SeqOperator::boxed(name, nodes.to_vec(), steps(vec![pulls, writes, runs]))
}
