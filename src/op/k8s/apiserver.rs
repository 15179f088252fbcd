//! `kube-apiserver-restart` (also its boot, as CKE's): on its nodes, pull the image, make the
//! directories, issue and write each node's certificates, CAs, the service-account pair, the
//! encryption config and the audit policy, then run it anew (each step on all the nodes at once; the
//! planner restarts running apiservers one at a time).

use super::*;
use crate::op::{Operator, SeqOperator};

/// The operator for `nodes`.
pub fn operator(nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let name = "kube-apiserver-restart";
    let version = match version(ctx) {
        Ok(v) => v,
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse_image(nodes, e)),
    };
    let o = &ctx.cluster.options;
    let domain = params::cluster_domain(&o.kubelet);
    let service_ip = match params::kubernetes_service_ip(&ctx.cluster.service_subnet) {
        Ok(ip) => ip.to_string(),
        Err(e) => return SeqOperator::boxed(name, nodes.to_vec(), refuse(nodes, e.to_string())),
    };
    let (mut pulls, mut dirs, mut writes, mut runs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for address in nodes {
        let n = node(ctx, address);
        pulls.push(pull(ctx, address));
        dirs.push(make_dirs(
            address,
            &[(K8S_PKI_DIR, None), (APISERVER_CONFIG_DIR, Some(0o700))],
        ));
        let certs = vec![
            cert("apiserver", requests::kube_apiserver(address, &service_ip, &domain)),
            cert("apiserver-etcd-client", requests::kube_apiserver_etcd_client()),
            cert("aggregation", requests::aggregation_client()),
        ];
        let mut files = vec![
            ca(&k8s_pki_path("ca.crt"), "kubernetes"),
            ca(&k8s_pki_path("etcd-ca.crt"), "server"),
            ca(&k8s_pki_path("aggregation-ca.crt"), "kubernetes-aggregation"),
            FileSpec {
                path: ENCRYPTION_CONFIG_PATH.into(),
                mode: 0o600,
                content: FileContent::EncryptionConfig,
            },
        ];
        files.extend(service_account_files(true));
        if o.kube_api.audit_log_enabled {
            let path = crate::k8s::encryption::audit_policy_path(&o.kube_api.audit_log_policy);
            files.push(literal(&path, 0o600, o.kube_api.audit_log_policy.clone()));
        }
        writes.push(write(address, "kube-apiserver", certs, files));
        runs.push(run(address, run_spec(ctx, version, Component::ApiServer, n)));
    }
    SeqOperator::boxed(name, nodes.to_vec(), steps(vec![pulls, dirs, writes, runs]))
}
