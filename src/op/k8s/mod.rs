//! The Kubernetes components (CKE's `op/k8s`): one operator per file, sharing what each component's
//! container and files are. Every step of an operator acts on all its nodes at once
//! ([`fan_out`]: pull everywhere, then write everywhere, then run everywhere), and every node's files
//! are issued and read before the first is written ([`WriteFiles`]), so a failure leaves the node as
//! it was.

pub mod apiserver;
pub mod controller_manager;
pub mod kubelet;
pub mod objects;
pub mod proxy;
pub mod resource;
pub mod scheduler;
pub mod stop;
pub mod update_node;

#[cfg(test)]
mod tests;

use super::common::{steps, CertFiles, FileContent, FileSpec, PullImage, RemoveContainer, RunContainer, WriteFiles};
use super::{CommandError, Commander, Infra, OpContext, Outcome};
use crate::infra::agent::container::{Replace, RunSpec};
use crate::infra::pki::{requests, IssueRequest};
use crate::k8s::params::{self, ClusterInputs, Component};
use crate::k8s::VersionSet;
use crate::model::{ContainerParams, Node, RecordCommand};
use crate::topology::*;

/// The version set of the Kubernetes image, or why there is none (the planner refuses to plan
/// Kubernetes operations then, so an operator only sees this if the image changed in between).
fn version(ctx: OpContext<'_>) -> Result<&'static VersionSet, String> {
    VersionSet::for_image(&ctx.images.kubernetes)
        .map(|r| r.set)
        .map_err(|e| e.to_string())
}

/// The container of `component` on `node` as the declaration wants it: built-in then user
/// arguments, binds and environment, CKE's run options, the params label.
pub fn run_spec(ctx: OpContext<'_>, version: &'static VersionSet, component: Component, node: &Node) -> RunSpec {
    let inputs = ClusterInputs {
        cluster: ctx.cluster,
        version,
        host: ctx.host,
    };
    let builtin = params::builtin(&inputs, component, node);
    let extra = params::extra(ctx.cluster, component);
    let mut command = builtin.extra_args.clone();
    command.extend(extra.extra_args.iter().cloned());
    let mut binds = builtin.extra_binds.clone();
    binds.extend(extra.extra_binds.iter().cloned());
    let mut env = builtin.extra_env.clone();
    env.extend(extra.extra_env.clone());
    RunSpec {
        name: component.container_name().into(),
        image: ctx.images.kubernetes.clone(),
        command,
        binds,
        env,
        params: ContainerParams { builtin, extra },
        options: params::run_options(component, ctx.host),
        // CKE stops kube-apiserver before its restart and kills the others (`WithRestart`).
        replace: match component {
            Component::ApiServer => Replace::Stop,
            _ => Replace::Kill,
        },
        image_present: false,
    }
}

/// `image-pull` of the Kubernetes image.
fn pull(ctx: OpContext<'_>, node: &str) -> Box<dyn Commander> {
    Box::new(PullImage {
        node: node.into(),
        image: ctx.images.kubernetes.clone(),
    })
}

/// `run-container`, replacing a container of the same name (CKE's stop + run). Every Kubernetes
/// operator pulls the image on its nodes in its first step ([`pull`]), so the run does not check it.
fn run(node: &str, spec: RunSpec) -> Box<dyn Commander> {
    let spec = RunSpec {
        image_present: true,
        ..spec
    };
    RunContainer::boxed(node, spec, None)
}

/// A file with literal content.
fn literal(path: &str, mode: u32, content: impl Into<Vec<u8>>) -> FileSpec {
    FileSpec {
        path: path.into(),
        mode,
        content: FileContent::Literal(content.into()),
    }
}

/// A file from a CA of the management etcd.
fn ca(path: &str, name: &str) -> FileSpec {
    FileSpec {
        path: path.into(),
        mode: 0o644,
        content: FileContent::Ca(name.into()),
    }
}

/// A certificate issued for the node, written as `<pki>/<name>.crt` and `.key`.
fn cert(name: &str, request: IssueRequest) -> CertFiles {
    CertFiles {
        request,
        cert_path: k8s_pki_path(&format!("{name}.crt")),
        key_path: k8s_pki_path(&format!("{name}.key")),
    }
}

/// An embedded kubeconfig for a component user through rivers.
fn kubeconfig(path: &str, user: &str, request: IssueRequest) -> FileSpec {
    FileSpec {
        path: path.into(),
        mode: 0o600,
        content: FileContent::Kubeconfig {
            user: user.into(),
            request,
        },
    }
}

/// The service-account signing pair from the management etcd.
fn service_account_files(with_cert: bool) -> Vec<FileSpec> {
    let mut v = vec![FileSpec {
        path: k8s_pki_path("service-account.key"),
        mode: 0o600,
        content: FileContent::Stored(crate::storage::KEY_SERVICE_ACCOUNT_KEY.into()),
    }];
    if with_cert {
        v.push(FileSpec {
            path: k8s_pki_path("service-account.crt"),
            mode: 0o644,
            content: FileContent::Stored(crate::storage::KEY_SERVICE_ACCOUNT_CERT.into()),
        });
    }
    v
}

/// `write-files` of one node's certificates and files for `what`.
fn write(node: &str, what: &str, certs: Vec<CertFiles>, files: Vec<FileSpec>) -> Box<dyn Commander> {
    Box::new(WriteFiles {
        node: node.into(),
        name: "write-files",
        detail: what.into(),
        certs,
        files,
    })
}

/// `make-dirs`: directories on a node (`mkdir -p`, then `chmod` when a mode is given).
pub struct MakeDirs {
    /// Node address.
    pub node: String,
    /// Absolute paths, each with an optional mode.
    pub dirs: Vec<(String, Option<u32>)>,
}

#[async_trait::async_trait]
impl Commander for MakeDirs {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "make-dirs".into(),
            target: self.node.clone(),
            detail: self.dirs.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(" "),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        let mut script = Vec::new();
        for (d, mode) in &self.dirs {
            if !d.starts_with('/') {
                return Err(CommandError::refused(&cmd, format!("{d:?} is not an absolute path")));
            }
            let q = crate::infra::agent::shell_quote(d);
            script.push(format!("mkdir -p {q}"));
            if let Some(m) = mode {
                script.push(format!("chmod {m:o} {q}"));
            }
        }
        infra
            .node(&self.node)
            .check(&script.join(" && "), None, std::time::Duration::from_secs(30))
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        Ok(Outcome::Done)
    }
}

fn make_dirs(node: &str, dirs: &[(&str, Option<u32>)]) -> Box<dyn Commander> {
    Box::new(MakeDirs {
        node: node.into(),
        dirs: dirs.iter().map(|(d, m)| (d.to_string(), *m)).collect(),
    })
}

/// An operator that cannot be built: it fails its one command with the reason, so the record shows
/// it. `name` says what was checked: `check-kubernetes-image` (the image has no usable version) or
/// `check-declaration` (a component configuration or the service subnet cannot be used).
struct Refuse {
    name: &'static str,
    node: String,
    reason: String,
}

#[async_trait::async_trait]
impl Commander for Refuse {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: self.name.into(),
            target: self.node.clone(),
            detail: String::new(),
        }
    }

    async fn run(&self, _infra: &Infra) -> Result<Outcome, CommandError> {
        Err(CommandError::refused(&self.command(), self.reason.clone()))
    }
}

/// The one command of an operator whose Kubernetes image has no version set.
fn refuse_image(nodes: &[String], reason: String) -> Vec<Box<dyn Commander>> {
    refuse_as("check-kubernetes-image", nodes, reason)
}

/// The one command of an operator whose declaration cannot be turned into files or arguments.
fn refuse(nodes: &[String], reason: String) -> Vec<Box<dyn Commander>> {
    refuse_as("check-declaration", nodes, reason)
}

fn refuse_as(name: &'static str, nodes: &[String], reason: String) -> Vec<Box<dyn Commander>> {
    vec![Box::new(Refuse {
        name,
        node: nodes.join(","),
        reason,
    })]
}

/// The declared node of `address` (operators are built from the declaration they were planned
/// from, so every target is in it).
fn node<'a>(ctx: OpContext<'a>, address: &str) -> &'a Node {
    ctx.cluster.node(address).expect("a planned target is a declared node")
}

/// The kubelet's certificate request (CN `system:node:<nodename>`).
fn kubelet_cert(n: &Node) -> CertFiles {
    cert("kubelet", requests::kubelet(&n.address, n.nodename()))
}
