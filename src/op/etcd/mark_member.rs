//! `etcd-mark-member`: mark in-sync voting members that lack the added-member marker. Marking
//! follows a bootstrap or a join; a crash before a bootstrap's auth set-up leaves a healthy cluster
//! without users or auth, so the (idempotent) set-up runs first.

use super::{mark, SetupAuth};
use crate::op::common::fan_out;
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let cps: Vec<String> = ctx.cluster.control_planes().map(|n| n.address.clone()).collect();
    let mut steps = vec![Box::new(SetupAuth {
        target: nodes.join(","),
        nodes: cps,
    }) as _];
    steps.push(fan_out(nodes.iter().map(|a| mark(a)).collect()));
    SeqOperator::boxed("etcd-mark-member", nodes.to_vec(), steps)
}
