//! Validation of the cluster declaration, as CKE's `Cluster.Validate(isTmpl)` (cluster.go) decides,
//! plus warnings where CKE stays silent. Errors are exactly CKE's refusals; everything cke-rs checks
//! beyond them is a warning (`--strict` makes warnings errors). Every problem names its field path
//! (`nodes[3].address`) and the reason; all problems are reported at once, not just the first.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

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

    /// True when some error is at exactly this path.
    pub fn has_path(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
}

/// A login name: never an option (`-o...`) for ssh, never `user@host` confusion.
pub static USER_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$").unwrap());
static DNS1123_LABEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap());
static NAME_PART: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap());
static VOLUME_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$").unwrap());
static CNI_FILE_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9A-Za-z_.-]+$").unwrap());
static ENV_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());

/// Reasons a string is not a DNS-1123 subdomain (lowercase, dot-separated labels, ≤ 253 chars).
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    // apimachinery's IsDNS1123Subdomain: the length and the pattern, no limit per label.
    if s.split('.').all(|l| DNS1123_LABEL.is_match(l)) {
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

/// What a declaration is checked as: CKE's `Validate(isTmpl)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A declaration to run: every node has its address.
    Declaration,
    /// A sabakan template: node addresses are empty (sabakan assigns machines to them).
    Template,
}

/// The verdict on a declaration: CKE's refusals, and what cke-rs warns about beyond them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// What CKE refuses.
    pub errors: Vec<FieldError>,
    /// What CKE accepts but cke-rs finds suspicious, or reads differently.
    pub warnings: Vec<FieldError>,
}

impl Verdict {
    fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError::new(path, reason));
    }
    fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(FieldError::new(path, reason));
    }
    fn check(&mut self, path: impl Into<String>, reason: Option<String>) {
        if let Some(r) = reason {
            self.err(path, r);
        }
    }
}

/// Go's `net.ParseIP`: dotted-quad IPv4 without leading zeros, or IPv6 without a zone.
pub fn go_parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Go's `net.ParseCIDR`: an address as [`go_parse_ip`], `/`, and decimal prefix bits (leading zeros
/// allowed) no larger than the address's width. Host bits may be set (`10.0.0.1/24`).
pub fn go_parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    let ip = go_parse_ip(addr)?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = bits.trim_start_matches('0').parse().unwrap_or(0);
    let n = if bits.trim_start_matches('0').len() > 3 {
        u32::MAX
    } else {
        n
    };
    let width = if ip.is_ipv4() { 32 } else { 128 };
    (n <= width).then_some((ip, n as u8))
}

/// Lowercases as Go's `strings.ToLower` does for the keys apimachinery checks (one character stays
/// one character: U+0130 becomes `i`).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{0130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

impl Cluster {
    /// CKE's verdict on this declaration (errors), plus cke-rs's warnings. See [`Cluster::verdict`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        ValidationError::from_errors(self.verdict(Mode::Declaration).errors)
    }

    /// Judges the declaration as CKE's `Cluster.Validate(mode == Template)` does; what CKE refuses
    /// is an error, what cke-rs checks beyond it is a warning.
    pub fn verdict(&self, mode: Mode) -> Verdict {
        let mut v = Verdict::default();
        if self.name.is_empty() {
            v.err("name", "is required");
        } else if self.name.trim().is_empty() {
            v.warn("name", "is blank");
        }
        if self.service_subnet.is_empty() {
            v.err("service_subnet", "is required");
        } else if go_parse_cidr(&self.service_subnet).is_none() {
            v.err(
                "service_subnet",
                format!(
                    "{:?} is not a CIDR (e.g. 10.96.0.0/16; no leading zeros)",
                    self.service_subnet
                ),
            );
        }
        validate_nodes(&self.nodes, mode, &mut v);
        for (i, t) in self.control_plane_tolerations.iter().enumerate() {
            v.check(format!("control_plane_tolerations[{i}]"), qualified_name(t));
        }
        for (i, a) in self.dns_servers.iter().enumerate() {
            if go_parse_ip(a).is_none() {
                v.err(format!("dns_servers[{i}]"), format!("{a:?} is not an IP address"));
            }
        }
        if !self.dns_service.is_empty() {
            match self.dns_service.split('/').collect::<Vec<_>>()[..] {
                [ns, name] => {
                    // CKE only counts the slashes.
                    for (what, part) in [("namespace", ns), ("name", name)] {
                        if let Some(r) = dns1123_subdomain(part) {
                            v.warn("dns_service", format!("{what}: {r}"));
                        }
                    }
                }
                _ => v.err(
                    "dns_service",
                    format!("{:?} is not of the form namespace/name", self.dns_service),
                ),
            }
        }
        if let Some(r) = &self.reboot {
            validate_reboot(r, &mut v);
        }
        if let Some(r) = &self.repair {
            validate_repair(r, &mut v);
        }
        if let Some(s) = &self.sabakan {
            if !s.spare_node_taint_key.is_empty() {
                if let Some(r) = qualified_name(&s.spare_node_taint_key) {
                    v.warn(
                        "sabakan.spare_node_taint_key",
                        format!("{r} (not usable as a taint key)"),
                    );
                }
            }
        }
        validate_options(&self.options, &mut v);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, m) in self.trusted_rest_mappings.iter().enumerate() {
            let p = format!("trusted_rest_mappings[{i}]");
            for (f, val) in [("version", &m.version), ("kind", &m.kind), ("resource", &m.resource)] {
                if val.is_empty() {
                    v.err(format!("{p}.{f}"), "is required");
                }
            }
            let key = format!("{}/{}/{}", m.group, m.version, m.kind);
            if let Some(j) = seen.insert(key.clone(), i) {
                v.err(
                    p,
                    format!("duplicate mapping for {key} (also trusted_rest_mappings[{j}])"),
                );
            }
        }
        v
    }
}

fn validate_nodes(nodes: &[Node], mode: Mode, v: &mut Verdict) {
    if mode == Mode::Declaration {
        if nodes.is_empty() {
            v.warn("nodes", "no nodes are declared");
        } else if !nodes.iter().any(|n| n.control_plane) {
            v.warn(
                "nodes",
                "no node has control_plane: true; cluster set refuses it (control-plane-count is at least 1)",
            );
        }
    }
    let mut addresses: HashMap<&str, usize> = HashMap::new();
    let mut ips: HashMap<IpAddr, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let p = format!("nodes[{i}]");
        match mode {
            Mode::Template => {
                if !n.address.is_empty() {
                    v.err(
                        format!("{p}.address"),
                        format!("{:?}: a template's nodes have no address", n.address),
                    );
                }
            }
            Mode::Declaration => match go_parse_ip(&n.address) {
                None if n.address.is_empty() => v.err(format!("{p}.address"), "is required"),
                None => v.err(format!("{p}.address"), format!("{:?} is not an IP address", n.address)),
                Some(ip) => {
                    // CKE compares the address strings; the same address spelt twice is a warning.
                    if let Some(j) = addresses.insert(&n.address, i) {
                        v.err(
                            format!("{p}.address"),
                            format!("{} is also the address of nodes[{j}]", n.address),
                        );
                    } else if let Some(j) = ips.insert(ip, i) {
                        v.warn(
                            format!("{p}.address"),
                            format!("{} is the address of nodes[{j}], written differently", n.address),
                        );
                    }
                }
            },
        }
        if !n.hostname.is_empty() {
            if let Some(r) = dns1123_subdomain(&n.hostname) {
                v.warn(
                    format!("{p}.hostname"),
                    format!("{r}; Kubernetes refuses it as a node name"),
                );
            }
        }
        if !n.nodename().is_empty() {
            if let Some(j) = names.insert(n.nodename(), i) {
                v.warn(
                    format!("{p}.hostname"),
                    format!(
                        "{:?} is also the node name of nodes[{j}]; both kubelets would register as one Node",
                        n.nodename()
                    ),
                );
            }
        }
        if n.user.is_empty() {
            v.err(format!("{p}.user"), "is required");
        } else if !USER_NAME.is_match(&n.user) {
            v.warn(
                format!("{p}.user"),
                format!("{:?} is not a user name (letters, digits, '_', '.', '-'; not starting with '-'); ckecli ssh refuses it", n.user),
            );
        }
        validate_labels(&n.labels, &format!("{p}.labels"), v);
        validate_annotations(&n.annotations, &format!("{p}.annotations"), v);
        for (j, t) in n.taints.iter().enumerate() {
            validate_taint(t, &format!("{p}.taints[{j}]"), v);
        }
    }
}

/// apimachinery's `ValidateLabels`: qualified-name keys, label values.
fn validate_labels(map: &BTreeMap<String, String>, path: &str, v: &mut Verdict) {
    for (k, val) in map {
        let kp = format!("{path}[{k:?}]");
        v.check(kp.clone(), qualified_name(k));
        v.check(kp, label_value(val));
    }
}

/// apimachinery's `ValidateAnnotations`: lowercased keys are qualified names; at most 256 KiB in all.
fn validate_annotations(map: &BTreeMap<String, String>, path: &str, v: &mut Verdict) {
    let mut size = 0;
    for (k, val) in map {
        v.check(format!("{path}[{k:?}]"), qualified_name(&go_to_lower(k)));
        size += k.len() + val.len();
    }
    if size > 256 * 1024 {
        v.err(path, "total size must be no more than 256 KiB");
    }
}

/// CKE's `validateTaint`.
fn validate_taint(t: &Taint, p: &str, v: &mut Verdict) {
    if t.key.is_empty() {
        v.err(format!("{p}.key"), "is required");
    } else {
        v.check(format!("{p}.key"), qualified_name(&t.key));
    }
    v.check(format!("{p}.value"), label_value(&t.value));
    if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
        v.err(
            format!("{p}.effect"),
            format!("{:?} is not one of NoSchedule, PreferNoSchedule, NoExecute", t.effect),
        );
    }
}

fn non_negative(val: Option<i64>, path: String, v: &mut Verdict) {
    if matches!(val, Some(x) if x < 0) {
        v.err(path, "must not be negative");
    }
}

fn positive(val: Option<i64>, path: String, v: &mut Verdict) {
    if matches!(val, Some(x) if x <= 0) {
        v.err(path, "must be positive");
    }
}

fn warn_negative(val: Option<i64>, path: String, v: &mut Verdict) {
    if matches!(val, Some(x) if x < 0) {
        v.warn(path, "is negative");
    }
}

/// apimachinery's `LabelSelectorAsSelector` (and `labels.NewRequirement`).
fn validate_selector(s: &Option<LabelSelector>, p: &str, v: &mut Verdict) {
    let Some(s) = s else { return };
    validate_labels(&s.match_labels, &format!("{p}.matchLabels"), v);
    for (i, r) in s.match_expressions.iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        let op_ok = match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                v.err(
                    format!("{rp}.values"),
                    format!("must not be empty for operator {}", r.operator),
                );
                true
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                v.err(
                    format!("{rp}.values"),
                    format!("must be empty for operator {}", r.operator),
                );
                true
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => true,
            other => {
                v.err(
                    format!("{rp}.operator"),
                    format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                );
                false
            }
        };
        if op_ok {
            v.check(format!("{rp}.key"), qualified_name(&r.key));
            for (j, val) in r.values.iter().enumerate() {
                v.check(format!("{rp}.values[{j}]"), label_value(val));
            }
        }
    }
}

/// CKE's `validateReboot`. CKE always writes the section and requires neither command: an empty
/// `reboot_command` means rebooting is not configured.
fn validate_reboot(r: &Reboot, v: &mut Verdict) {
    positive(r.eviction_timeout_seconds, "reboot.eviction_timeout_seconds".into(), v);
    non_negative(r.command_timeout_seconds, "reboot.command_timeout_seconds".into(), v);
    non_negative(r.command_retries, "reboot.command_retries".into(), v);
    non_negative(r.command_interval, "reboot.command_interval".into(), v);
    non_negative(r.evict_retries, "reboot.evict_retries".into(), v);
    non_negative(r.evict_interval, "reboot.evict_interval".into(), v);
    positive(r.max_concurrent_reboots, "reboot.max_concurrent_reboots".into(), v);
    validate_selector(&r.protected_namespaces, "reboot.protected_namespaces", v);
    validate_selector(&r.protected_job_pods, "reboot.protected_job_pods", v);
}

/// CKE's `validateRepair` (errors); CKE checks nothing inside the procedures, cke-rs warns. CKE
/// always writes the section; no procedures means repairing is not configured.
fn validate_repair(r: &Repair, v: &mut Verdict) {
    positive(r.max_concurrent_repairs, "repair.max_concurrent_repairs".into(), v);
    non_negative(r.evict_retries, "repair.evict_retries".into(), v);
    non_negative(r.evict_interval, "repair.evict_interval".into(), v);
    positive(r.eviction_timeout_seconds, "repair.eviction_timeout_seconds".into(), v);
    validate_selector(&r.protected_namespaces, "repair.protected_namespaces", v);
    validate_selector(&r.protected_job_pods, "repair.protected_job_pods", v);
    let mut types: HashMap<&str, usize> = HashMap::new();
    for (i, proc_) in r.repair_procedures.iter().enumerate() {
        let p = format!("repair.repair_procedures[{i}]");
        if proc_.machine_types.is_empty() {
            v.warn(
                format!("{p}.machine_types"),
                "is empty: the procedure applies to no machine",
            );
        }
        for (j, t) in proc_.machine_types.iter().enumerate() {
            if let Some(k) = types.insert(t, i) {
                v.warn(
                    format!("{p}.machine_types[{j}]"),
                    format!("{t:?} is also listed in repair.repair_procedures[{k}] (the first one is used)"),
                );
            }
        }
        if proc_.repair_operations.is_empty() {
            v.warn(
                format!("{p}.repair_operations"),
                "is empty: the procedure repairs nothing",
            );
        }
        let mut ops: HashMap<&str, usize> = HashMap::new();
        for (j, op) in proc_.repair_operations.iter().enumerate() {
            let op_p = format!("{p}.repair_operations[{j}]");
            if op.operation.is_empty() {
                v.warn(format!("{op_p}.operation"), "is empty");
            } else if let Some(k) = ops.insert(&op.operation, j) {
                v.warn(
                    format!("{op_p}.operation"),
                    format!(
                        "{:?} is also the name of repair_operations[{k}] (the first one is used)",
                        op.operation
                    ),
                );
            }
            if op.repair_steps.is_empty() {
                v.warn(format!("{op_p}.repair_steps"), "is empty");
            }
            if op.health_check_command.is_empty() {
                v.warn(format!("{op_p}.health_check_command"), "is empty");
            }
            warn_negative(op.command_timeout_seconds, format!("{op_p}.command_timeout_seconds"), v);
            warn_negative(op.success_command_timeout, format!("{op_p}.success_command_timeout"), v);
            for (k, s) in op.repair_steps.iter().enumerate() {
                let sp = format!("{op_p}.repair_steps[{k}]");
                if s.repair_command.is_empty() {
                    v.warn(format!("{sp}.repair_command"), "is empty");
                }
                warn_negative(s.command_timeout_seconds, format!("{sp}.command_timeout_seconds"), v);
                warn_negative(s.command_retries, format!("{sp}.command_retries"), v);
                warn_negative(s.command_interval, format!("{sp}.command_interval"), v);
                warn_negative(s.watch_seconds, format!("{sp}.watch_seconds"), v);
            }
        }
    }
}

/// `extra_args`, `extra_binds`, `extra_env` of one component. CKE requires absolute bind paths for
/// every component but `rivers` and `etcd-rivers` (`binds_checked`); the rest are warnings.
fn validate_service(sp: &ServiceParams, p: &str, binds_checked: bool, v: &mut Verdict) {
    for (i, a) in sp.extra_args.iter().enumerate() {
        if a.is_empty() {
            v.warn(format!("{p}.extra_args[{i}]"), "is empty");
        }
    }
    for (i, m) in sp.extra_binds.iter().enumerate() {
        let mp = format!("{p}.extra_binds[{i}]");
        for (f, val) in [("source", &m.source), ("destination", &m.destination)] {
            if !val.starts_with('/') {
                let reason = format!("{val:?} is not an absolute path");
                if binds_checked {
                    v.err(format!("{mp}.{f}"), reason);
                } else {
                    v.warn(format!("{mp}.{f}"), reason);
                }
            } else if val.contains([',', ':']) {
                v.warn(
                    format!("{mp}.{f}"),
                    format!("{val:?} contains ',' or ':', which a container bind cannot express"),
                );
            }
        }
        if !matches!(
            m.propagation.as_str(),
            "" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
        ) {
            v.warn(
                format!("{mp}.propagation"),
                format!(
                    "{:?} is not one of private, rprivate, shared, rshared, slave, rslave",
                    m.propagation
                ),
            );
        }
        if !matches!(m.selinux_label.as_str(), "" | "z" | "Z") {
            v.warn(
                format!("{mp}.selinux_label"),
                format!("{:?} is not z or Z", m.selinux_label),
            );
        }
    }
    for k in sp.extra_env.keys() {
        if !ENV_NAME.is_match(k) {
            v.warn(
                format!("{p}.extra_env[{k:?}]"),
                "is not a valid environment variable name",
            );
        }
    }
}

/// A component configuration (`options.<component>.config`) as CKE's `MergeConfig` checks it: a
/// mapping with exactly this `kind` (CKE's Unstructured decoding requires one) and `apiVersion`.
/// `also` are apiVersions cke-rs accepts beyond CKE's, for older Kubernetes versions (a warning).
fn validate_config_object(
    config: &Option<Value>,
    p: &str,
    kind: &str,
    api_version: &str,
    also: &[&str],
    v: &mut Verdict,
) -> Option<serde_json::Map<String, Value>> {
    let obj = config.as_ref()?.as_object();
    let Some(obj) = obj else {
        v.err(p, "must be a mapping");
        return None;
    };
    let mut ok = true;
    match obj.get("kind") {
        Some(Value::String(k)) if k == kind => {}
        Some(Value::String(k)) if !k.is_empty() => {
            v.err(format!("{p}.kind"), format!("is {k:?}; it must be {kind}"));
            ok = false;
        }
        _ => {
            v.err(format!("{p}.kind"), format!("is required ({kind})"));
            ok = false;
        }
    }
    match obj.get("apiVersion") {
        Some(Value::String(a)) if a == api_version => {}
        Some(Value::String(a)) if also.contains(&a.as_str()) => v.warn(
            format!("{p}.apiVersion"),
            format!("{a} is read only for Kubernetes 1.20; CKE accepts only {api_version}"),
        ),
        Some(Value::String(a)) if !a.is_empty() => {
            v.err(format!("{p}.apiVersion"), format!("is {a:?}; it must be {api_version}"));
            ok = false;
        }
        _ => {
            v.err(format!("{p}.apiVersion"), format!("is required ({api_version})"));
            ok = false;
        }
    }
    ok.then(|| obj.clone())
}

fn validate_options(o: &Options, v: &mut Verdict) {
    validate_service(&o.etcd.service_params(), "options.etcd", true, v);
    if o.etcd.volume_name.is_empty() {
        v.warn(
            "options.etcd.volume_name",
            "is empty: CKE would use an empty volume name, cke-rs uses etcd-cke",
        );
    } else if !VOLUME_NAME.is_match(&o.etcd.volume_name) {
        v.warn(
            "options.etcd.volume_name",
            format!("{:?} is not a valid volume name", o.etcd.volume_name),
        );
    }
    validate_service(&o.etcd_rivers, "options.etcd-rivers", false, v);
    validate_service(&o.rivers, "options.rivers", false, v);
    validate_service(&o.kube_api.service_params(), "options.kube-api", true, v);
    if o.kube_api.audit_log_enabled && o.kube_api.audit_log_policy.is_empty() {
        v.err(
            "options.kube-api.audit_log_policy",
            "is required when audit_log_enabled is true",
        );
    }
    if !o.kube_api.audit_log_policy.is_empty() {
        // CKE: sigs.k8s.io/yaml into a map[string]any.
        match super::yaml::read(&o.kube_api.audit_log_policy) {
            Ok((super::yaml::Yaml::Null, _)) => v.warn("options.kube-api.audit_log_policy", "is an empty document"),
            Ok((y @ super::yaml::Yaml::Map(_), _)) => {
                for e in super::schema::any_errors(&y, "options.kube-api.audit_log_policy") {
                    v.errors.push(e);
                }
            }
            Ok(_) => v.err("options.kube-api.audit_log_policy", "must be a YAML mapping"),
            Err(err) => v.err("options.kube-api.audit_log_policy", format!("is not valid YAML: {err}")),
        }
    }
    if !o.kube_api.audit_log_path.is_empty() && !o.kube_api.audit_log_path.starts_with('/') {
        v.warn("options.kube-api.audit_log_path", "is not an absolute path");
    }
    validate_service(&o.kube_controller_manager, "options.kube-controller-manager", true, v);
    validate_service(&o.kube_scheduler.service_params(), "options.kube-scheduler", true, v);
    validate_config_object(
        &o.kube_scheduler.config,
        "options.kube-scheduler.config",
        super::kube_version::SCHEDULER_KIND,
        "kubescheduler.config.k8s.io/v1",
        &["kubescheduler.config.k8s.io/v1beta1"],
        v,
    );
    validate_service(&o.kube_proxy.service_params(), "options.kube-proxy", true, v);
    let proxy = validate_config_object(
        &o.kube_proxy.config,
        "options.kube-proxy.config",
        super::kube_version::PROXY_KIND,
        "kubeproxy.config.k8s.io/v1alpha1",
        &[],
        v,
    );
    if let Some(mode) = proxy.as_ref().and_then(|c| super::cni::go_field(c, "mode")) {
        // CKE's ValidateProxyMode.
        match mode {
            Value::String(m) if m.is_empty() || m == "iptables" || m == "ipvs" => {}
            Value::String(m) if m == "userspace" => v.warn(
                "options.kube-proxy.config.mode",
                "userspace was removed in Kubernetes 1.26 (only Kubernetes 1.20 runs it)",
            ),
            Value::Null => {}
            Value::String(m) => v.err(
                "options.kube-proxy.config.mode",
                format!("{m:?} is not one of userspace, iptables, ipvs"),
            ),
            other => v.err("options.kube-proxy.config.mode", format!("{other} is not a string")),
        }
    }
    let k = &o.kubelet;
    validate_service(&k.service_params(), "options.kubelet", true, v);
    let kubelet = validate_config_object(
        &k.config,
        "options.kubelet.config",
        super::kube_version::KUBELET_KIND,
        "kubelet.config.k8s.io/v1beta1",
        &[],
        v,
    );
    if let Some(domain) = kubelet.as_ref().and_then(|c| super::cni::go_field(c, "clusterDomain")) {
        match domain {
            Value::String(d) if d.is_empty() => {}
            Value::String(d) => v.check("options.kubelet.config.clusterDomain", dns1123_subdomain(d)),
            Value::Null => {}
            _ => v.err("options.kubelet.config.clusterDomain", "must be a string"),
        }
    }
    if k.cri_endpoint.is_empty() {
        v.err(
            "options.kubelet.cri_endpoint",
            "must not be empty (leave the key out for the default)",
        );
    }
    if let Some(cni) = &k.cni_conf_file {
        validate_cni(cni, v);
    }
    for (i, t) in k.boot_taints.iter().enumerate() {
        validate_taint(t, &format!("options.kubelet.boot_taints[{i}]"), v);
    }
}

/// CKE's CNI checks: the name's characters, then libcni's rules for the content, chosen by the
/// name's extension (see `cni`).
fn validate_cni(cni: &CniConfFile, v: &mut Verdict) {
    let p = "options.kubelet.cni_conf_file";
    if cni.name.is_empty() {
        if !cni.content.is_empty() {
            v.err(format!("{p}.name"), "is required when content is set");
        }
        return;
    }
    if !CNI_FILE_NAME.is_match(&cni.name) {
        v.err(format!("{p}.name"), format!("{:?} is invalid as a file name", cni.name));
        return;
    }
    if cni.name == "." || cni.name == ".." {
        v.warn(format!("{p}.name"), format!("{:?} names a directory", cni.name));
    } else if ![".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| cni.name.ends_with(ext))
    {
        v.warn(
            format!("{p}.name"),
            format!(
                "{:?}: container runtimes read only .conf, .conflist and .json files",
                cni.name
            ),
        );
    }
    // Go's filepath.Ext: from the last dot (".conflist" alone is a .conflist).
    let checked = if cni.name.rsplit_once('.').map(|(_, e)| e) == Some("conflist") {
        super::cni::check_conflist(&cni.content)
    } else {
        super::cni::check_conf(&cni.content)
    };
    if let Err(reason) = checked {
        v.err(format!("{p}.content"), reason);
    }
}
