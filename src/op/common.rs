//! Reusable commanders, in the manner of CKE's `op/common`: run, remove and pull containers,
//! create and remove volumes, remove a directory, write files (literal content, CA certificates
//! from the management etcd, certificates issued for the node). Each acts on one node and is safe
//! to run again.

use async_trait::async_trait;

use super::{CommandError, Commander, Infra, Outcome, Refusal};
use crate::error::Retry;
use crate::infra::agent::container::RunSpec;
use crate::infra::pki::IssueRequest;
use crate::model::RecordCommand;

/// The owner of the files that hold keys (mode 0600): root.
pub const SECRET_FILE_OWNER: &str = "root:root";

fn record(name: &str, target: &str, detail: impl Into<String>) -> RecordCommand {
    RecordCommand {
        name: name.into(),
        target: target.into(),
        detail: detail.into(),
    }
}

/// Starts a container (replacing one of the same name); a missing image is pulled first.
pub struct RunContainer {
    /// Node address.
    pub node: String,
    /// What to run.
    pub spec: RunSpec,
    /// Shown in the record (e.g. `etcd --initial-cluster-state=new`).
    pub detail: String,
}

impl RunContainer {
    /// A boxed commander; the detail defaults to the container name.
    pub fn boxed(node: &str, spec: RunSpec, detail: Option<String>) -> Box<dyn Commander> {
        let detail = detail.unwrap_or_else(|| spec.name.clone());
        Box::new(RunContainer {
            node: node.into(),
            spec,
            detail,
        })
    }
}

#[async_trait]
impl Commander for RunContainer {
    fn command(&self) -> RecordCommand {
        record("run-container", &self.node, self.detail.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let node = infra.node(&self.node);
        infra
            .engine
            .run(node.as_ref(), &self.spec)
            .await
            .map_err(|e| CommandError::new(&self.command(), e))?;
        Ok(Outcome::Done)
    }
}

/// Stops and removes a container (no error when absent).
pub struct RemoveContainer {
    /// Node address.
    pub node: String,
    /// Container name.
    pub name: String,
}

impl RemoveContainer {
    /// A boxed commander.
    pub fn boxed(node: &str, name: &str) -> Box<dyn Commander> {
        Box::new(RemoveContainer {
            node: node.into(),
            name: name.into(),
        })
    }
}

#[async_trait]
impl Commander for RemoveContainer {
    fn command(&self) -> RecordCommand {
        record("remove-container", &self.node, self.name.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let node = infra.node(&self.node);
        infra
            .engine
            .remove(node.as_ref(), &self.name)
            .await
            .map_err(|e| CommandError::new(&self.command(), e))?;
        Ok(Outcome::Done)
    }
}

/// Pulls an image unless the node has it.
pub struct PullImage {
    /// Node address.
    pub node: String,
    /// Image.
    pub image: String,
}

#[async_trait]
impl Commander for PullImage {
    fn command(&self) -> RecordCommand {
        record("image-pull", &self.node, self.image.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let node = infra.node(&self.node);
        infra
            .engine
            .pull_if_missing(node.as_ref(), &self.image)
            .await
            .map_err(|e| CommandError::new(&self.command(), e))?;
        Ok(Outcome::Done)
    }
}

/// Creates a named volume (idempotent).
pub struct CreateVolume {
    /// Node address.
    pub node: String,
    /// Volume name.
    pub volume: String,
    /// The record's name (`create-volume`; `mark-member` for the added-member marker).
    pub name: &'static str,
}

impl CreateVolume {
    /// A boxed `create-volume`.
    pub fn boxed(node: &str, volume: &str) -> Box<dyn Commander> {
        Self::named("create-volume", node, volume)
    }

    /// A boxed volume creation recorded as `name`.
    pub fn named(name: &'static str, node: &str, volume: &str) -> Box<dyn Commander> {
        Box::new(CreateVolume {
            node: node.into(),
            volume: volume.into(),
            name,
        })
    }
}

#[async_trait]
impl Commander for CreateVolume {
    fn command(&self) -> RecordCommand {
        record(self.name, &self.node, self.volume.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let node = infra.node(&self.node);
        infra
            .engine
            .volume_create(node.as_ref(), &self.volume)
            .await
            .map_err(|e| CommandError::new(&self.command(), e))?;
        Ok(Outcome::Done)
    }
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// These bytes.
    Literal(Vec<u8>),
    /// The PEM certificate of a CA kept in the management etcd (`ca/<name>`).
    Ca(String),
    /// The value of a key of the management etcd (e.g. `service-account/key`); refused when absent.
    Stored(String),
    /// kube-apiserver's `EncryptionConfiguration`, from the keys in Vault (`cke/secrets/k8s`).
    EncryptionConfig,
    /// A kubeconfig for `user` through rivers (`https://localhost:16443`) with the `kubernetes` CA
    /// and a client certificate issued from `request`, all embedded.
    Kubeconfig {
        /// The user's name in the kubeconfig.
        user: String,
        /// The client certificate to issue.
        request: IssueRequest,
    },
}

/// A file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Absolute path on the node.
    pub path: String,
    /// Mode bits.
    pub mode: u32,
    /// Content.
    pub content: FileContent,
}

/// A certificate to issue for the node and write as a pair of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// What to issue.
    pub request: IssueRequest,
    /// Where the certificate goes (mode 0644).
    pub cert_path: String,
    /// Where the private key goes (mode 0600).
    pub key_path: String,
}

/// Writes files on a node: every certificate is issued and every CA read before the first file is
/// written, so a failure leaves the node's files as they were; and what the management etcd holds
/// is read before Vault is asked, so a refusal for a missing CA or key issues no certificate.
pub struct WriteFiles {
    /// Node address.
    pub node: String,
    /// The record's name (`write-certificates`, `write-files`).
    pub name: &'static str,
    /// Shown in the record.
    pub detail: String,
    /// Certificates to issue.
    pub certs: Vec<CertFiles>,
    /// Other files.
    pub files: Vec<FileSpec>,
}

#[async_trait]
impl Commander for WriteFiles {
    fn command(&self) -> RecordCommand {
        record(self.name, &self.node, self.detail.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        // What the management etcd holds first, so that a refusal (a missing CA, service-account
        // pair) costs no certificate; then what Vault gives. Files are written in the order given,
        // the certificates first.
        let ca = |name: String| {
            let cmd = &cmd;
            async move {
                infra
                    .storage
                    .get_ca(&name)
                    .await
                    .map_err(|e| CommandError::new(cmd, e))?
                    .ok_or_else(|| {
                        CommandError::refused(
                            cmd,
                            format!("CA {name} is not in the management etcd (ckecli vault init)"),
                        )
                    })
            }
        };
        let mut bytes: Vec<Option<Vec<u8>>> = vec![None; self.files.len()];
        let mut kubernetes_ca = None;
        for (slot, f) in bytes.iter_mut().zip(&self.files) {
            match &f.content {
                FileContent::Literal(b) => *slot = Some(b.clone()),
                FileContent::Ca(name) => *slot = Some(ca(name.clone()).await?.into_bytes()),
                FileContent::Stored(key) => {
                    let value = infra
                        .storage
                        .get_raw(key)
                        .await
                        .map_err(|e| CommandError::new(&cmd, e))?
                        .ok_or_else(|| CommandError::refused(&cmd, missing_stored(key)))?
                        .value;
                    *slot = Some(value);
                }
                FileContent::Kubeconfig { .. } if kubernetes_ca.is_none() => {
                    kubernetes_ca = Some(ca("kubernetes".into()).await?);
                }
                FileContent::Kubeconfig { .. } | FileContent::EncryptionConfig => {}
            }
        }
        for (slot, f) in bytes.iter_mut().zip(&self.files) {
            if let FileContent::EncryptionConfig = &f.content {
                let keys = infra
                    .issuer
                    .k8s_encryption_keys()
                    .await
                    .map_err(|e| CommandError::new(&cmd, e))?;
                if keys.is_empty() {
                    return Err(CommandError::refused(
                        &cmd,
                        "no Secret encryption key in Vault cke/secrets/k8s (ckecli vault enckey)",
                    ));
                }
                let text = crate::k8s::encryption::encryption_config(&keys)
                    .map_err(|e| CommandError::refused(&cmd, e.to_string()))?;
                *slot = Some(text.into_bytes());
            }
        }
        let mut contents: Vec<(String, Vec<u8>, u32)> = Vec::new();
        for c in &self.certs {
            let cert = infra
                .issuer
                .issue(&c.request)
                .await
                .map_err(|e| CommandError::new(&cmd, e))?;
            contents.push((c.cert_path.clone(), cert.certificate.into_bytes(), 0o644));
            contents.push((c.key_path.clone(), cert.private_key.into_bytes(), 0o600));
        }
        for (slot, f) in bytes.into_iter().zip(&self.files) {
            let bytes = match (slot, &f.content) {
                (Some(b), _) => b,
                (None, FileContent::Kubeconfig { user, request }) => {
                    let ca = kubernetes_ca.as_deref().expect("read with the other CAs");
                    let cert = infra
                        .issuer
                        .issue(request)
                        .await
                        .map_err(|e| CommandError::new(&cmd, e))?;
                    crate::k8s::kubeconfig::component(
                        &infra.cluster.name,
                        user,
                        ca,
                        &cert.certificate,
                        &cert.private_key,
                    )
                    .into_bytes()
                }
                (None, _) => unreachable!("every other content was resolved above"),
            };
            contents.push((f.path.clone(), bytes, f.mode));
        }
        let node = infra.node(&self.node);
        for (path, bytes, mode) in contents {
            // Files only their owner may read hold keys: owned by root, whatever the SSH user.
            let owner = (mode & 0o077 == 0).then_some(SECRET_FILE_OWNER);
            node.write_file(&path, &bytes, mode, owner)
                .await
                .map_err(|e| CommandError::new(&cmd, e))?;
        }
        Ok(Outcome::Done)
    }
}

/// Why a file from the management etcd cannot be written: `key` is absent.
fn missing_stored(key: &str) -> String {
    if key.starts_with("service-account/") {
        format!(
            "{key} is not in the management etcd (the leader issues the service-account pair from \
             Vault at the start of a pass; is Vault set up? ckecli vault init)"
        )
    } else {
        format!("{key} is not in the management etcd")
    }
}

/// Removes a directory and everything in it (`rm -rf`); the path must be absolute and not `/`.
pub struct RemoveDir {
    /// Node address.
    pub node: String,
    /// The directory.
    pub path: String,
}

#[async_trait]
impl Commander for RemoveDir {
    fn command(&self) -> RecordCommand {
        record("remove-dir", &self.node, self.path.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        remove_dir(infra, &self.command(), &self.node, &self.path).await?;
        Ok(Outcome::Done)
    }
}

/// `rm -rf path` on a node, as part of a command (`cmd` is recorded).
pub async fn remove_dir(infra: &Infra, cmd: &RecordCommand, node: &str, path: &str) -> Result<(), CommandError> {
    if !path.starts_with('/') || path.trim_end_matches('/').is_empty() {
        return Err(CommandError::with_retry(
            cmd,
            Retry::AfterChange,
            Refusal(format!("refusing to remove {path:?}: not an absolute path below /")),
        ));
    }
    infra
        .node(node)
        .check(
            &format!("rm -rf {}", crate::infra::agent::shell_quote(path)),
            None,
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|e| CommandError::new(cmd, e))?;
    Ok(())
}
