//! Validation of the cluster declaration. Every error names the field path (`nodes[3].address`)
//! and the reason; all problems are reported at once, not just the first.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use once_cell::sync::Lazy;
use regex::Regex;

use super::cluster::*;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `nodes[3].address`; empty when the whole document is at fault.
    pub path: String,
    /// Why it is invalid.
    pub reason: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// A declaration (or constraint) that cannot be accepted, with every invalid field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The invalid fields, in document order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [one] => write!(f, "invalid: {one}"),
            many => {
                write!(f, "invalid: {} problems", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl ValidationError {
    /// One error at `path`.
    pub fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            errors: vec![FieldError::new(path, reason)],
        }
    }

    /// `Ok` when `errors` is empty.
    pub fn from_errors(errors: Vec<FieldError>) -> Result<(), ValidationError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { errors })
        }
    }

    /// A parse error; serde_yaml's message already names the field path and the line.
    pub fn from_yaml(e: serde_yaml::Error) -> Self {
        static PATH: Lazy<Regex> = Lazy::new(|| Regex::new(r"^([A-Za-z0-9_.\[\]-]+): (.*)$").unwrap());
        static FIELD: Lazy<Regex> = Lazy::new(|| Regex::new(r"^(missing|unknown|duplicate) field `([^`]+)`").unwrap());
        let msg = e.to_string();
        let (path, rest) = match PATH.captures(&msg) {
            Some(c) => (c[1].to_string(), c[2].to_string()),
            None => (String::new(), msg.clone()),
        };
        // Name the field itself for missing, unknown and duplicate fields: `nodes[0].user`.
        let path = match FIELD.captures(&rest) {
            Some(c) if path.is_empty() => c[2].to_string(),
            Some(c) => format!("{path}.{}", &c[2]),
            None => path,
        };
        let rest = match FIELD.captures(&rest) {
            Some(c) if &c[1] == "missing" => rest.replacen(&c[0], "is required", 1),
            _ => rest,
        };
        ValidationError::single(path, rest)
    }

    /// True when some error is at exactly this path.
    pub fn has_path(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
}

/// A login name: never an option (`-o...`) for ssh, never `user@host` confusion.
pub static USER_NAME: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$").unwrap());
static DNS1123_LABEL: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap());
static NAME_PART: Lazy<Regex> = Lazy::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap());
static VOLUME_NAME: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$").unwrap());
static CNI_FILE_NAME: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[0-9A-Za-z_.-]+$").unwrap());
static ENV_NAME: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());

/// Reasons a string is not a DNS-1123 subdomain (lowercase, dot-separated labels, ≤ 253 chars).
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if s.split('.').all(|l| l.len() <= 63 && DNS1123_LABEL.is_match(l)) {
        None
    } else {
        Some(format!(
            "{s:?} is not a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', starting and ending with an alphanumeric)"
        ))
    }
}

/// Reasons a string is not a Kubernetes qualified name (`[prefix/]name`), as label and taint keys are.
pub fn qualified_name(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Some(format!("{s:?}: prefix part must not be empty"));
        }
        if let Some(r) = dns1123_subdomain(p) {
            return Some(format!("{s:?}: prefix part: {r}"));
        }
    }
    if name.is_empty() {
        return Some(format!("{s:?}: name part must not be empty"));
    }
    if name.len() > 63 {
        return Some(format!("{s:?}: name part must be no more than 63 characters"));
    }
    if !NAME_PART.is_match(name) {
        return Some(format!(
            "{s:?}: name part must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    None
}

/// Reasons a string is not a valid label value (empty, or a name part of ≤ 63 chars).
pub fn label_value(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s.len() > 63 {
        return Some(format!("{s:?} must be no more than 63 characters"));
    }
    if !NAME_PART.is_match(s) {
        return Some(format!(
            "{s:?} must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    None
}

struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(path, reason));
    }
    fn check(&mut self, path: impl Into<String>, reason: Option<String>) {
        if let Some(r) = reason {
            self.push(path, r);
        }
    }
}

impl Cluster {
    /// Checks everything CKE checks, and more; returns every problem with its field path.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut e = Errs(Vec::new());
        if self.name.trim().is_empty() {
            e.push("name", "is required");
        }
        if self.service_subnet.is_empty() {
            e.push("service_subnet", "is required");
        } else if self.service_subnet.parse::<ipnet::IpNet>().is_err() {
            e.push(
                "service_subnet",
                format!("{:?} is not a CIDR (e.g. 10.96.0.0/16)", self.service_subnet),
            );
        }
        validate_nodes(&self.nodes, &mut e);
        for (i, a) in self.dns_servers.iter().enumerate() {
            if a.parse::<IpAddr>().is_err() {
                e.push(format!("dns_servers[{i}]"), format!("{a:?} is not an IP address"));
            }
        }
        if !self.dns_service.is_empty() {
            match self.dns_service.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    e.check("dns_service", dns1123_subdomain(ns).map(|r| format!("namespace: {r}")));
                    e.check("dns_service", dns1123_subdomain(name).map(|r| format!("name: {r}")));
                }
                _ => e.push(
                    "dns_service",
                    format!("{:?} is not of the form namespace/name", self.dns_service),
                ),
            }
        }
        for (i, t) in self.control_plane_tolerations.iter().enumerate() {
            e.check(format!("control_plane_tolerations[{i}]"), qualified_name(t));
        }
        if let Some(r) = &self.reboot {
            validate_reboot(r, &mut e);
        }
        if let Some(r) = &self.repair {
            validate_repair(r, &mut e);
        }
        if let Some(s) = &self.sabakan {
            // Empty means spare machines are not tainted.
            if !s.spare_node_taint_key.is_empty() {
                e.check("sabakan.spare_node_taint_key", qualified_name(&s.spare_node_taint_key));
            }
        }
        for (i, m) in self.trusted_rest_mappings.iter().enumerate() {
            let p = format!("trusted_rest_mappings[{i}]");
            for (f, v) in [("version", &m.version), ("kind", &m.kind), ("resource", &m.resource)] {
                if v.is_empty() {
                    e.push(format!("{p}.{f}"), "is required");
                }
            }
        }
        validate_options(&self.options, &mut e);
        ValidationError::from_errors(e.0)
    }
}

fn validate_nodes(nodes: &[Node], e: &mut Errs) {
    if nodes.is_empty() {
        e.push("nodes", "at least one node is required");
        return;
    }
    if !nodes.iter().any(|n| n.control_plane) {
        e.push("nodes", "at least one node must have control_plane: true");
    }
    let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let p = format!("nodes[{i}]");
        if n.address.is_empty() {
            e.push(format!("{p}.address"), "is required");
        } else {
            match n.address.parse::<IpAddr>() {
                Err(_) => e.push(format!("{p}.address"), format!("{:?} is not an IP address", n.address)),
                Ok(ip) => {
                    if let Some(j) = addresses.insert(ip, i) {
                        e.push(
                            format!("{p}.address"),
                            format!("{} is also the address of nodes[{j}]", n.address),
                        );
                    }
                }
            }
        }
        if !n.hostname.is_empty() {
            e.check(format!("{p}.hostname"), dns1123_subdomain(&n.hostname));
        }
        if !n.address.is_empty() {
            if let Some(j) = names.insert(n.nodename(), i) {
                if !n.hostname.is_empty() {
                    e.push(
                        format!("{p}.hostname"),
                        format!("{:?} is also the name of nodes[{j}]", n.nodename()),
                    );
                }
            }
        }
        if n.user.is_empty() {
            e.push(format!("{p}.user"), "is required");
        } else if !USER_NAME.is_match(&n.user) {
            e.push(
                format!("{p}.user"),
                format!(
                    "{:?} is not a user name (letters, digits, '_', '.', '-'; not starting with '-')",
                    n.user
                ),
            );
        }
        validate_keys(&n.labels, &format!("{p}.labels"), true, e);
        validate_keys(&n.annotations, &format!("{p}.annotations"), false, e);
        let mut annotation_size = 0;
        for (k, v) in &n.annotations {
            annotation_size += k.len() + v.len();
        }
        if annotation_size > 256 * 1024 {
            e.push(format!("{p}.annotations"), "total size must be no more than 256 KiB");
        }
        for (j, t) in n.taints.iter().enumerate() {
            validate_taint(t, &format!("{p}.taints[{j}]"), e);
        }
    }
}

fn validate_keys(map: &BTreeMap<String, String>, path: &str, values_are_labels: bool, e: &mut Errs) {
    for (k, v) in map {
        let kp = format!("{path}[{k:?}]");
        let key = if values_are_labels { k.clone() } else { k.to_lowercase() };
        if let Some(r) = qualified_name(&key) {
            e.push(kp, r);
            continue;
        }
        if values_are_labels {
            e.check(kp, label_value(v));
        }
    }
}

fn validate_taint(t: &Taint, p: &str, e: &mut Errs) {
    if t.key.is_empty() {
        e.push(format!("{p}.key"), "is required");
    } else {
        e.check(format!("{p}.key"), qualified_name(&t.key));
    }
    e.check(format!("{p}.value"), label_value(&t.value));
    if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
        e.push(
            format!("{p}.effect"),
            format!("{:?} is not one of NoSchedule, PreferNoSchedule, NoExecute", t.effect),
        );
    }
}

fn non_negative(v: Option<i64>, path: String, e: &mut Errs) {
    if matches!(v, Some(x) if x < 0) {
        e.push(path, "must not be negative");
    }
}

fn positive(v: Option<i64>, path: String, e: &mut Errs) {
    if matches!(v, Some(x) if x <= 0) {
        e.push(path, "must be positive");
    }
}

fn validate_selector(s: &Option<LabelSelector>, p: &str, e: &mut Errs) {
    let Some(s) = s else { return };
    validate_keys(&s.match_labels, &format!("{p}.matchLabels"), true, e);
    for (i, r) in s.match_expressions.iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        e.check(format!("{rp}.key"), qualified_name(&r.key));
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => e.push(
                format!("{rp}.values"),
                format!("must not be empty for operator {}", r.operator),
            ),
            "Exists" | "DoesNotExist" if !r.values.is_empty() => e.push(
                format!("{rp}.values"),
                format!("must be empty for operator {}", r.operator),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => e.push(
                format!("{rp}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
    }
}

fn validate_reboot(r: &Reboot, e: &mut Errs) {
    // CKE always writes the section and requires neither command: an empty `reboot_command`
    // means rebooting is not configured.
    positive(r.eviction_timeout_seconds, "reboot.eviction_timeout_seconds".into(), e);
    non_negative(r.command_timeout_seconds, "reboot.command_timeout_seconds".into(), e);
    non_negative(r.command_retries, "reboot.command_retries".into(), e);
    non_negative(r.command_interval, "reboot.command_interval".into(), e);
    non_negative(r.evict_retries, "reboot.evict_retries".into(), e);
    non_negative(r.evict_interval, "reboot.evict_interval".into(), e);
    positive(r.max_concurrent_reboots, "reboot.max_concurrent_reboots".into(), e);
    validate_selector(&r.protected_namespaces, "reboot.protected_namespaces", e);
    validate_selector(&r.protected_job_pods, "reboot.protected_job_pods", e);
}

fn validate_repair(r: &Repair, e: &mut Errs) {
    // CKE always writes the section; no procedures means repairing is not configured.
    positive(r.max_concurrent_repairs, "repair.max_concurrent_repairs".into(), e);
    positive(r.eviction_timeout_seconds, "repair.eviction_timeout_seconds".into(), e);
    non_negative(r.evict_retries, "repair.evict_retries".into(), e);
    non_negative(r.evict_interval, "repair.evict_interval".into(), e);
    validate_selector(&r.protected_namespaces, "repair.protected_namespaces", e);
    validate_selector(&r.protected_job_pods, "repair.protected_job_pods", e);
    let mut types: HashMap<&str, usize> = HashMap::new();
    for (i, proc_) in r.repair_procedures.iter().enumerate() {
        let p = format!("repair.repair_procedures[{i}]");
        if proc_.machine_types.is_empty() {
            e.push(format!("{p}.machine_types"), "is required");
        }
        for (j, t) in proc_.machine_types.iter().enumerate() {
            if t.is_empty() {
                e.push(format!("{p}.machine_types[{j}]"), "must not be empty");
            } else if let Some(k) = types.insert(t, i) {
                e.push(
                    format!("{p}.machine_types[{j}]"),
                    format!("{t:?} is also listed in repair.repair_procedures[{k}]"),
                );
            }
        }
        if proc_.repair_operations.is_empty() {
            e.push(format!("{p}.repair_operations"), "is required");
        }
        let mut ops: HashMap<&str, usize> = HashMap::new();
        for (j, op) in proc_.repair_operations.iter().enumerate() {
            let op_p = format!("{p}.repair_operations[{j}]");
            if op.operation.is_empty() {
                e.push(format!("{op_p}.operation"), "is required");
            } else if let Some(k) = ops.insert(&op.operation, j) {
                e.push(
                    format!("{op_p}.operation"),
                    format!("{:?} is also the name of repair_operations[{k}]", op.operation),
                );
            }
            if op.repair_steps.is_empty() {
                e.push(format!("{op_p}.repair_steps"), "is required");
            }
            if op.health_check_command.is_empty() {
                e.push(format!("{op_p}.health_check_command"), "is required");
            }
            non_negative(op.command_timeout_seconds, format!("{op_p}.command_timeout_seconds"), e);
            non_negative(op.success_command_timeout, format!("{op_p}.success_command_timeout"), e);
            for (k, s) in op.repair_steps.iter().enumerate() {
                let sp = format!("{op_p}.repair_steps[{k}]");
                if s.repair_command.is_empty() {
                    e.push(format!("{sp}.repair_command"), "is required");
                }
                non_negative(s.command_timeout_seconds, format!("{sp}.command_timeout_seconds"), e);
                non_negative(s.command_retries, format!("{sp}.command_retries"), e);
                non_negative(s.command_interval, format!("{sp}.command_interval"), e);
                non_negative(s.watch_seconds, format!("{sp}.watch_seconds"), e);
            }
        }
    }
}

fn validate_service(sp: &ServiceParams, p: &str, e: &mut Errs) {
    for (i, a) in sp.extra_args.iter().enumerate() {
        if a.is_empty() {
            e.push(format!("{p}.extra_args[{i}]"), "must not be empty");
        }
    }
    for (i, m) in sp.extra_binds.iter().enumerate() {
        let mp = format!("{p}.extra_binds[{i}]");
        for (f, v) in [("source", &m.source), ("destination", &m.destination)] {
            if !v.starts_with('/') {
                e.push(format!("{mp}.{f}"), format!("{v:?} is not an absolute path"));
            } else if v.contains([',', ':']) {
                e.push(format!("{mp}.{f}"), format!("{v:?} must not contain ',' or ':'"));
            }
        }
        if !matches!(
            m.propagation.as_str(),
            "" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
        ) {
            e.push(
                format!("{mp}.propagation"),
                format!(
                    "{:?} is not one of private, rprivate, shared, rshared, slave, rslave",
                    m.propagation
                ),
            );
        }
        if !matches!(m.selinux_label.as_str(), "" | "z" | "Z") {
            e.push(
                format!("{mp}.selinux_label"),
                format!("{:?} is not z or Z", m.selinux_label),
            );
        }
    }
    for k in sp.extra_env.keys() {
        if !ENV_NAME.is_match(k) {
            e.push(
                format!("{p}.extra_env[{k:?}]"),
                "is not a valid environment variable name",
            );
        }
    }
}

/// A component configuration (`options.<component>.config`): a mapping whose `kind` is `kind` and
/// whose `apiVersion` is one some supported Kubernetes version uses (CKE's MergeConfig; which one
/// the running version needs is checked when the file is generated, see `k8s::config`).
fn validate_config_object(v: &Option<serde_json::Value>, p: &str, kind: &str, e: &mut Errs) {
    let Some(v) = v else { return };
    let Some(obj) = v.as_object() else {
        e.push(p, "must be a mapping");
        return;
    };
    match obj.get("kind") {
        Some(serde_json::Value::String(k)) if k == kind => {}
        Some(k) => e.push(format!("{p}.kind"), format!("is {k}; it must be {kind}")),
        None => e.push(format!("{p}.kind"), format!("is required ({kind})")),
    }
    let known = super::kube_version::config_api_versions(kind);
    match obj.get("apiVersion") {
        Some(serde_json::Value::String(a)) if known.contains(&a.as_str()) => {}
        Some(a) => e.push(
            format!("{p}.apiVersion"),
            format!("is {a}; supported: {}", known.join(", ")),
        ),
        None => e.push(
            format!("{p}.apiVersion"),
            format!("is required (one of {})", known.join(", ")),
        ),
    }
}

fn validate_options(o: &Options, e: &mut Errs) {
    validate_service(&o.etcd.service_params(), "options.etcd", e);
    if !o.etcd.volume_name.is_empty() && !VOLUME_NAME.is_match(&o.etcd.volume_name) {
        e.push(
            "options.etcd.volume_name",
            format!("{:?} is not a valid volume name", o.etcd.volume_name),
        );
    }
    validate_service(&o.etcd_rivers, "options.etcd-rivers", e);
    validate_service(&o.rivers, "options.rivers", e);
    validate_service(&o.kube_api.service_params(), "options.kube-api", e);
    if o.kube_api.audit_log_enabled && o.kube_api.audit_log_policy.is_empty() {
        e.push(
            "options.kube-api.audit_log_policy",
            "is required when audit_log_enabled is true",
        );
    }
    if !o.kube_api.audit_log_policy.is_empty() {
        match serde_yaml::from_str::<serde_yaml::Value>(&o.kube_api.audit_log_policy) {
            Ok(serde_yaml::Value::Mapping(_)) => {}
            Ok(_) => e.push("options.kube-api.audit_log_policy", "must be a YAML mapping"),
            Err(err) => e.push("options.kube-api.audit_log_policy", format!("is not valid YAML: {err}")),
        }
    }
    if !o.kube_api.audit_log_path.is_empty() && !o.kube_api.audit_log_path.starts_with('/') {
        e.push("options.kube-api.audit_log_path", "must be an absolute path");
    }
    validate_service(&o.kube_controller_manager, "options.kube-controller-manager", e);
    validate_service(&o.kube_scheduler.service_params(), "options.kube-scheduler", e);
    validate_config_object(
        &o.kube_scheduler.config,
        "options.kube-scheduler.config",
        super::kube_version::SCHEDULER_KIND,
        e,
    );
    validate_service(&o.kube_proxy.service_params(), "options.kube-proxy", e);
    validate_config_object(
        &o.kube_proxy.config,
        "options.kube-proxy.config",
        super::kube_version::PROXY_KIND,
        e,
    );
    if let Some(mode) = o.kube_proxy.config.as_ref().and_then(|c| c.get("mode")) {
        if !matches!(mode.as_str(), Some("" | "iptables" | "ipvs" | "nftables")) {
            e.push(
                "options.kube-proxy.config.mode",
                format!("{mode} is not one of iptables, ipvs, nftables"),
            );
        }
    }
    let k = &o.kubelet;
    validate_service(&k.service_params(), "options.kubelet", e);
    validate_config_object(
        &k.config,
        "options.kubelet.config",
        super::kube_version::KUBELET_KIND,
        e,
    );
    if let Some(domain) = k.config.as_ref().and_then(|c| c.get("clusterDomain")) {
        match domain.as_str() {
            Some(d) => e.check("options.kubelet.config.clusterDomain", dns1123_subdomain(d)),
            None => e.push("options.kubelet.config.clusterDomain", "must be a string"),
        }
    }
    if let Some(cni) = &k.cni_conf_file {
        // As in CKE, the name is required only with content; CKE writes an empty section.
        let p = "options.kubelet.cni_conf_file";
        if cni.name.is_empty() {
            if !cni.content.is_empty() {
                e.push(format!("{p}.name"), "is required when content is set");
            }
        } else if !CNI_FILE_NAME.is_match(&cni.name) {
            e.push(format!("{p}.name"), format!("{:?} is not a valid file name", cni.name));
        } else if !(cni.name.ends_with(".conf") || cni.name.ends_with(".conflist")) {
            e.push(
                format!("{p}.name"),
                format!("{:?} must end with .conf or .conflist", cni.name),
            );
        }
        match serde_json::from_str::<serde_json::Value>(&cni.content) {
            _ if cni.content.is_empty() => {}
            Ok(v) if v.is_object() => {
                if v.get("cniVersion").is_none() {
                    e.push(format!("{p}.content"), "has no cniVersion");
                }
                if cni.name.ends_with(".conflist") && !v.get("plugins").is_some_and(|x| x.is_array()) {
                    e.push(format!("{p}.content"), "a .conflist needs a plugins list");
                }
            }
            Ok(_) => e.push(format!("{p}.content"), "must be a JSON object"),
            Err(err) => e.push(format!("{p}.content"), format!("is not valid JSON: {err}")),
        }
    }
    for (i, t) in k.boot_taints.iter().enumerate() {
        validate_taint(t, &format!("options.kubelet.boot_taints[{i}]"), e);
    }
}
