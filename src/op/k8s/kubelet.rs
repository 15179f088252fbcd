//! `kubelet-bootstrap` and `kubelet-restart` (CKE's `op/k8s/kubelet_boot.go`, `kubelet_restart.go`).
//!
//! Boot, each step on all the nodes at once: pull; empty the CNI configuration directory (keeping the directory) when the
//! declaration has a CNI file; make the directories; write the CNI file, `config.yml`, the CA, the
//! kubelet's certificate and kubeconfig; re-apply `boot_taints` through a healthy apiserver on a
//! node that is already registered (so no pod lands before they are back); run; wait until
//! `/healthz` answers. Restart: the same without the CNI file, the
//! CA, the directories and the taints.

use std::time::Duration;

use super::*;
use crate::model::Taint;
use crate::op::{Operator, SeqOperator};

/// The operator for `nodes`.
pub fn operator(nodes: &[String], ctx: OpContext<'_>, boot: bool) -> Box<dyn Operator> {
    let name = if boot { "kubelet-bootstrap" } else { "kubelet-restart" };
    let version = match version(ctx) {
        Ok(v) => v,
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse_image(nodes, e)),
    };
    let o = &ctx.cluster.options.kubelet;
    // The apiserver to re-taint through: every apiserver is healthy when kubelets are planned.
    let apiserver = ctx
        .cluster
        .control_planes()
        .find(|n| {
            ctx.status
                .nodes
                .get(&n.address)
                .is_some_and(|s| s.kube_apiserver.is_healthy)
        })
        .map(|n| n.address.clone());
    // One step per kind of command, each over all the nodes.
    type Step = Vec<Box<dyn Commander>>;
    let (mut pulls, mut empties, mut dirs, mut writes): (Step, Step, Step, Step) = Default::default();
    let (mut retaints, mut runs, mut waits): (Step, Step, Step) = Default::default();
    for address in nodes {
        let n = node(ctx, address);
        // CKE keeps the running configuration's cgroup fields only while the kubelet runs: a
        // kubelet that stopped (a reboot) starts with the declared ones.
        let running = ctx
            .status
            .nodes
            .get(address)
            .filter(|s| s.kubelet.service.running)
            .and_then(|s| s.kubelet.config.as_ref());
        let config = match crate::k8s::config::kubelet(version, o, address, running) {
            Ok(c) => crate::k8s::config::to_yaml(&c),
            Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse(nodes, e.to_string())),
        };
        pulls.push(pull(ctx, address));
        let mut files = vec![
            literal(KUBELET_CONFIG_PATH, 0o644, config),
            literal(
                KUBELET_KUBECONFIG_PATH,
                0o644,
                crate::k8s::kubeconfig::kubelet(&ctx.cluster.name, n.nodename()),
            ),
        ];
        if boot {
            if let Some(cni) = &o.cni_conf_file {
                empties.push(Box::new(EmptyDir {
                    node: address.clone(),
                    path: CNI_CONF_DIR.into(),
                }));
                files.push(literal(
                    &format!("{CNI_CONF_DIR}/{}", cni.name),
                    0o644,
                    cni.content.clone(),
                ));
            }
            dirs.push(make_dirs(
                address,
                &[
                    (CNI_BIN_DIR, None),
                    (CNI_CONF_DIR, None),
                    (CNI_VAR_DIR, None),
                    ("/var/log/pods", None),
                    ("/var/log/containers", None),
                    (VOLUME_PLUGIN_DIR, None),
                    ("/var/lib/kubelet", None),
                    (K8S_PKI_DIR, None),
                ],
            ));
            files.push(ca(&k8s_pki_path("ca.crt"), "kubernetes"));
        }
        writes.push(write(address, "kubelet", vec![kubelet_cert(n)], files));
        let registered = ctx.status.kubernetes.nodes.iter().any(|k| k.name == n.nodename());
        if boot && registered && !o.boot_taints.is_empty() {
            retaints.push(Box::new(Retaint {
                apiserver: apiserver.clone(),
                node: address.clone(),
                name: n.nodename().into(),
                taints: o.boot_taints.clone(),
            }));
        }
        runs.push(run(address, run_spec(ctx, version, Component::Kubelet, n)));
        waits.push(Box::new(WaitKubelet {
            node: address.clone(),
            tries: 10,
            every: Duration::from_secs(5),
        }));
    }
    let steps = steps(vec![pulls, empties, dirs, writes, retaints, runs, waits]);
    SeqOperator::boxed(name, nodes.to_vec(), steps)
}

/// `retaint-before-kubelet-boot`: adds the boot taints to a registered Node before its kubelet
/// starts again.
pub struct Retaint {
    /// The node of a healthy apiserver; `None` when there is none, and the command fails (the
    /// kubelet must not start without its taints back).
    pub apiserver: Option<String>,
    /// The node address.
    pub node: String,
    /// The Node's name.
    pub name: String,
    /// `options.kubelet.boot_taints`.
    pub taints: Vec<Taint>,
}

#[async_trait::async_trait]
impl Commander for Retaint {
    fn command(&self) -> RecordCommand {
        let t: Vec<String> = self
            .taints
            .iter()
            .map(|t| format!("{}={}:{}", t.key, t.value, t.effect))
            .collect();
        RecordCommand {
            name: "retaint-before-kubelet-boot".into(),
            target: self.node.clone(),
            detail: format!("{} {}", self.name, t.join(",")),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let Some(apiserver) = &self.apiserver else {
            return Err(CommandError::soon(
                &self.command(),
                format!(
                    "no healthy kube-apiserver to re-apply the boot taints of Node {} through",
                    self.name
                ),
            ));
        };
        // A Node that is gone registers anew, with its taints (registerWithTaints).
        infra
            .kube
            .add_taints(apiserver, &self.name, &self.taints)
            .await
            .map_err(|e| CommandError::with_retry(&self.command(), crate::error::Retry::Soon, e))?;
        Ok(Outcome::Done)
    }
}

/// `empty-dir`: removes everything in a directory but keeps the directory itself (CKE's
/// `empty-dir`), so what bind-mounts it still sees the same directory. The path must be absolute
/// and not `/`.
pub struct EmptyDir {
    /// The node address.
    pub node: String,
    /// The directory.
    pub path: String,
}

#[async_trait::async_trait]
impl Commander for EmptyDir {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "empty-dir".into(),
            target: self.node.clone(),
            detail: self.path.clone(),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        if !self.path.starts_with('/') || self.path.trim_end_matches('/').is_empty() {
            return Err(CommandError::refused(
                &cmd,
                format!("refusing to empty {:?}: not an absolute path below /", self.path),
            ));
        }
        let q = crate::infra::agent::shell_quote(&self.path);
        infra
            .node(&self.node)
            .check(
                &format!("mkdir -p {q} && find {q} -mindepth 1 -delete"),
                None,
                Duration::from_secs(30),
            )
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        Ok(Outcome::Done)
    }
}

/// `wait-kubelet`: `/healthz` on port 10248 answers `ok`, tried `tries` times `every` apart.
pub struct WaitKubelet {
    /// The node address.
    pub node: String,
    /// How many times to ask.
    pub tries: u32,
    /// Time between tries.
    pub every: Duration,
}

#[async_trait::async_trait]
impl Commander for WaitKubelet {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "wait-kubelet".into(),
            target: self.node.clone(),
            detail: format!("healthz :{KUBELET_HEALTHZ_PORT}"),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let url = format!("http://{}:{KUBELET_HEALTHZ_PORT}/healthz", host_port_part(&self.node));
        for i in 0..self.tries {
            if infra.health.healthz(&url, None).await {
                return Ok(Outcome::Done);
            }
            if i + 1 < self.tries {
                tokio::time::sleep(self.every).await;
            }
        }
        Err(CommandError::soon(
            &self.command(),
            format!("kubelet on {} is not healthy after {} tries", self.node, self.tries),
        ))
    }
}
