//! `kube-scheduler-bootstrap` and `kube-scheduler-restart`: pull, write its kubeconfig and
//! `config.yml`, run (anew).

use super::*;
use crate::op::{Operator, SeqOperator};

/// The operator for `nodes`.
pub fn operator(nodes: &[String], ctx: OpContext<'_>, boot: bool) -> Box<dyn Operator> {
    let name = if boot {
        "kube-scheduler-bootstrap"
    } else {
        "kube-scheduler-restart"
    };
    let version = match version(ctx) {
        Ok(v) => v,
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse_image(nodes, e)),
    };
    let config = match crate::k8s::config::scheduler(version, &ctx.cluster.options.kube_scheduler) {
        Ok(c) => crate::k8s::config::to_yaml(&c),
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse(nodes, e.to_string())),
    };
    let (mut pulls, mut writes, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for address in nodes {
        pulls.push(pull(ctx, address));
        let files = vec![
            kubeconfig(
                SCHEDULER_KUBECONFIG_PATH,
                crate::k8s::kubeconfig::SCHEDULER_USER,
                requests::kube_scheduler(),
            ),
            literal(SCHEDULER_CONFIG_PATH, 0o644, config.clone()),
        ];
        writes.push(write(address, "kube-scheduler", vec![], files));
        let spec = run_spec(ctx, version, Component::Scheduler, node(ctx, address));
        runs.push(run(address, spec));
    }
    SeqOperator::boxed(name, nodes.to_vec(), steps(vec![pulls, writes, runs]))
}
