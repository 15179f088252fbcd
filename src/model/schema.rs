//! CKE's cluster.yml schema as data ([`CLUSTER`]: the Go types of CKE's `cluster.go`, field by
//! field) and the conversion of a [`Yaml`] tree into the JSON the typed [`Cluster`] reads, with
//! Go's decoding rules: `sigs.k8s.io/yaml` turns a number or boolean given for a string into a
//! string (`zone: 1` → `"1"`), `encoding/json` matches keys case-insensitively, ignores unknown
//! keys, leaves a field alone on `null` (so `cri_endpoint: null` keeps the default) and stores `""`
//! for a `null` map value. Unknown keys become warnings naming the key path and the closest known
//! key; type mismatches become errors naming the field. Checking values is `validate`'s job.
//!
//! [`Cluster`]: super::Cluster

use serde_json::{Map, Number, Value};

use super::validate::FieldError;
use super::yaml::{go_format_float32, Yaml};

/// The Go type of a field, as far as decoding cares.
#[derive(Debug)]
pub enum Shape {
    /// `string` (and string kinds such as `TaintEffect`).
    Str,
    /// `bool`.
    Bool,
    /// `*int` (or `int`).
    Int,
    /// `*metav1.Time`: an RFC 3339 string.
    Time,
    /// A value with its own JSON decoding (`*unstructured.Unstructured`): any JSON, no conversion.
    Any,
    /// `[]T`.
    List(&'static Shape),
    /// `map[string]T`.
    Map(&'static Shape),
    /// A struct (or a pointer to one).
    Struct(&'static [Field]),
}

/// A struct field: its JSON name and shape.
#[derive(Debug)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// Its type.
    pub shape: Shape,
}

const fn f(name: &'static str, shape: Shape) -> Field {
    Field { name, shape }
}

use Shape::*;

const STRINGS: Shape = List(&Str);
const STRING_MAP: Shape = Map(&Str);

/// `corev1.Taint`.
pub const TAINT: &[Field] = &[f("key", Str), f("value", Str), f("effect", Str), f("timeAdded", Time)];
/// `metav1.LabelSelectorRequirement`.
pub const SELECTOR_REQUIREMENT: &[Field] = &[f("key", Str), f("operator", Str), f("values", STRINGS)];
/// `metav1.LabelSelector`.
pub const LABEL_SELECTOR: &[Field] = &[
    f("matchLabels", STRING_MAP),
    f("matchExpressions", List(&Struct(SELECTOR_REQUIREMENT))),
];
/// `Node`.
pub const NODE: &[Field] = &[
    f("address", Str),
    f("hostname", Str),
    f("user", Str),
    f("control_plane", Bool),
    f("annotations", STRING_MAP),
    f("labels", STRING_MAP),
    f("taints", List(&Struct(TAINT))),
];
/// `Reboot`.
pub const REBOOT: &[Field] = &[
    f("reboot_command", STRINGS),
    f("boot_check_command", STRINGS),
    f("max_concurrent_reboots", Int),
    f("eviction_timeout_seconds", Int),
    f("command_timeout_seconds", Int),
    f("command_retries", Int),
    f("command_interval", Int),
    f("evict_retries", Int),
    f("evict_interval", Int),
    f("protected_namespaces", Struct(LABEL_SELECTOR)),
    f("protected_job_pods", Struct(LABEL_SELECTOR)),
];
/// `RepairStep`.
pub const REPAIR_STEP: &[Field] = &[
    f("repair_command", STRINGS),
    f("command_timeout_seconds", Int),
    f("command_retries", Int),
    f("command_interval", Int),
    f("need_drain", Bool),
    f("watch_seconds", Int),
];
/// `RepairOperation`.
pub const REPAIR_OPERATION: &[Field] = &[
    f("operation", Str),
    f("repair_steps", List(&Struct(REPAIR_STEP))),
    f("health_check_command", STRINGS),
    f("command_timeout_seconds", Int),
    f("success_command", STRINGS),
    f("success_command_timeout", Int),
];
/// `RepairProcedure`.
pub const REPAIR_PROCEDURE: &[Field] = &[
    f("machine_types", STRINGS),
    f("repair_operations", List(&Struct(REPAIR_OPERATION))),
];
/// `Repair`.
pub const REPAIR: &[Field] = &[
    f("repair_procedures", List(&Struct(REPAIR_PROCEDURE))),
    f("max_concurrent_repairs", Int),
    f("protected_namespaces", Struct(LABEL_SELECTOR)),
    f("protected_job_pods", Struct(LABEL_SELECTOR)),
    f("evict_retries", Int),
    f("evict_interval", Int),
    f("eviction_timeout_seconds", Int),
];
/// `Sabakan`.
pub const SABAKAN: &[Field] = &[f("spare_node_taint_key", Str)];
/// `TrustedRESTMapping`.
pub const TRUSTED_REST_MAPPING: &[Field] = &[
    f("group", Str),
    f("version", Str),
    f("kind", Str),
    f("resource", Str),
    f("namespaced", Bool),
];
/// `Mount`.
pub const MOUNT: &[Field] = &[
    f("source", Str),
    f("destination", Str),
    f("read_only", Bool),
    f("propagation", Str),
    f("selinux_label", Str),
];
const BINDS: Shape = List(&Struct(MOUNT));
/// `ServiceParams`.
pub const SERVICE: &[Field] = &[
    f("extra_args", STRINGS),
    f("extra_binds", BINDS),
    f("extra_env", STRING_MAP),
];
/// `EtcdParams`.
pub const ETCD: &[Field] = &[
    f("extra_args", STRINGS),
    f("extra_binds", BINDS),
    f("extra_env", STRING_MAP),
    f("volume_name", Str),
];
/// `APIServerParams`.
pub const API_SERVER: &[Field] = &[
    f("extra_args", STRINGS),
    f("extra_binds", BINDS),
    f("extra_env", STRING_MAP),
    f("audit_log_enabled", Bool),
    f("audit_log_policy", Str),
    f("audit_log_path", Str),
];
/// `SchedulerParams`.
pub const SCHEDULER: &[Field] = &[
    f("extra_args", STRINGS),
    f("extra_binds", BINDS),
    f("extra_env", STRING_MAP),
    f("config", Any),
];
/// `ProxyParams`.
pub const PROXY: &[Field] = &[
    f("extra_args", STRINGS),
    f("extra_binds", BINDS),
    f("extra_env", STRING_MAP),
    f("disable", Bool),
    f("config", Any),
];
/// `CNIConfFile`.
pub const CNI_CONF_FILE: &[Field] = &[f("name", Str), f("content", Str)];
/// `KubeletParams`.
pub const KUBELET: &[Field] = &[
    f("extra_args", STRINGS),
    f("extra_binds", BINDS),
    f("extra_env", STRING_MAP),
    f("boot_taints", List(&Struct(TAINT))),
    f("cni_conf_file", Struct(CNI_CONF_FILE)),
    f("config", Any),
    f("cri_endpoint", Str),
    f("in_place_update", Bool),
];
/// `Options`.
pub const OPTIONS: &[Field] = &[
    f("etcd", Struct(ETCD)),
    f("rivers", Struct(SERVICE)),
    f("etcd-rivers", Struct(SERVICE)),
    f("kube-api", Struct(API_SERVER)),
    f("kube-controller-manager", Struct(SERVICE)),
    f("kube-scheduler", Struct(SCHEDULER)),
    f("kube-proxy", Struct(PROXY)),
    f("kubelet", Struct(KUBELET)),
];
/// `Cluster`.
pub const CLUSTER: &[Field] = &[
    f("name", Str),
    f("nodes", List(&Struct(NODE))),
    f("taint_control_plane", Bool),
    f("control_plane_tolerations", STRINGS),
    f("service_subnet", Str),
    f("dns_servers", STRINGS),
    f("dns_service", Str),
    f("reboot", Struct(REBOOT)),
    f("repair", Struct(REPAIR)),
    f("sabakan", Struct(SABAKAN)),
    f("options", Struct(OPTIONS)),
    f("trusted_rest_mappings", List(&Struct(TRUSTED_REST_MAPPING))),
];

/// The outcome of [`convert`]: the JSON for the typed declaration, and what was found on the way.
#[derive(Debug, Default)]
pub struct Converted {
    /// JSON in the typed declaration's layout (canonical key names, unknown keys left out).
    pub value: Value,
    /// Problems CKE refuses too (type mismatches).
    pub errors: Vec<FieldError>,
    /// What CKE accepts silently (unknown keys, keys matched case-insensitively, keys given twice).
    pub warnings: Vec<FieldError>,
}

/// Converts `doc` (the whole declaration) after [`CLUSTER`].
pub fn convert(doc: &Yaml) -> Converted {
    let mut c = Converted::default();
    c.value = match doc {
        Yaml::Null => Value::Object(Map::new()),
        other => conv_struct(other, CLUSTER, "", &mut c).unwrap_or(Value::Object(Map::new())),
    };
    c
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Go's `encoding/json` key folding: ASCII case, plus the two non-ASCII letters that fold into
/// ASCII ones (KELVIN SIGN → k, LATIN SMALL LETTER LONG S → s).
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The known key most like `key`, if any is close enough to suggest.
pub fn suggest<'a>(key: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&key, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A map key as `sigs.k8s.io/yaml` writes it into JSON (`1` → "1", `true` → "true").
fn key_string(k: &Yaml) -> Option<String> {
    match k {
        Yaml::Str(s) => Some(s.clone()),
        Yaml::Int(i) => Some(i.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Float(x) => Some(match go_format_float32(*x).as_str() {
            "+Inf" => ".inf".into(),
            "-Inf" => "-.inf".into(),
            "NaN" => ".nan".into(),
            s => s.to_string(),
        }),
        _ => None,
    }
}

/// The entries of a mapping with string keys; a key given twice keeps its last value (yaml.v2).
fn entries<'a>(y: &'a Yaml, path: &str, c: &mut Converted) -> Option<Vec<(String, &'a Yaml)>> {
    let Yaml::Map(m) = y else {
        c.errors
            .push(FieldError::new(path, format!("must be a mapping, not {}", kind(y))));
        return None;
    };
    let mut out: Vec<(String, &Yaml)> = Vec::new();
    for (k, v) in m {
        let Some(ks) = key_string(k) else {
            c.errors
                .push(FieldError::new(path, format!("unsupported map key {}", kind(k))));
            continue;
        };
        if let Some(i) = out.iter().position(|(e, _)| *e == ks) {
            out.remove(i);
        }
        out.push((ks, v));
    }
    Some(out)
}

fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Int(_) | Yaml::Uint(_) => "an integer",
        Yaml::Float(_) => "a number",
        Yaml::Str(_) => "a string",
        Yaml::Seq(_) => "a list",
        Yaml::Map(_) => "a mapping",
    }
}

fn conv_struct(y: &Yaml, fields: &'static [Field], path: &str, c: &mut Converted) -> Option<Value> {
    let entries = entries(y, path, c)?;
    // Go decodes the keys in sorted order (json.Marshal sorts them); a field matched by several
    // keys (`name`, `Name`) gets each in turn.
    let mut sorted = entries;
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = Map::new();
    for (key, v) in sorted {
        let field = fields
            .iter()
            .find(|f| f.name == key)
            .or_else(|| fields.iter().find(|f| fold(f.name) == fold(&key)));
        let Some(field) = field else {
            let reason = match suggest(&key, fields.iter().map(|f| f.name)) {
                Some(s) => format!("unknown field, did you mean {s}? (ignored, as CKE ignores it)"),
                None => "unknown field (ignored, as CKE ignores it)".to_string(),
            };
            c.warnings.push(FieldError::new(join(path, &key), reason));
            continue;
        };
        let p = join(path, field.name);
        if field.name != key {
            c.warnings.push(FieldError::new(
                join(path, &key),
                format!(
                    "read as {} (CKE matches keys case-insensitively); write {}",
                    field.name, field.name
                ),
            ));
        }
        if *v == Yaml::Null {
            // Go leaves a value field alone on null and clears a pointer, slice or map: either way
            // the typed declaration reads the field as absent (its default).
            if !matches!(field.shape, Str | Bool | Struct(_)) {
                out.remove(field.name);
            }
            continue;
        }
        let Some(val) = conv(v, &field.shape, &p, c) else {
            continue;
        };
        if matches!(field.shape, Time) {
            // Checked as CKE decodes it, not kept: cke-rs sets taints without their time.
            c.warnings.push(FieldError::new(p, "is read but not applied by cke-rs"));
            continue;
        }
        match (out.get_mut(field.name), val) {
            (Some(Value::Object(old)), Value::Object(new)) if matches!(field.shape, Struct(_) | Map(_)) => {
                for (k, v) in new {
                    old.insert(k, v);
                }
            }
            (_, val) => {
                out.insert(field.name.to_string(), val);
            }
        }
    }
    Some(Value::Object(out))
}

fn conv(y: &Yaml, shape: &'static Shape, path: &str, c: &mut Converted) -> Option<Value> {
    let mismatch = |c: &mut Converted, what: &str| {
        c.errors
            .push(FieldError::new(path, format!("must be {what}, not {}", kind(y))));
        None
    };
    match shape {
        Str => match y {
            Yaml::Str(s) => Some(Value::String(s.clone())),
            Yaml::Null => Some(Value::String(String::new())),
            Yaml::Int(i) => Some(Value::String(i.to_string())),
            Yaml::Uint(u) => Some(Value::String(u.to_string())),
            Yaml::Float(x) => Some(Value::String(go_format_float32(*x))),
            Yaml::Bool(b) => Some(Value::String(b.to_string())),
            _ => mismatch(c, "a string"),
        },
        Bool => match y {
            Yaml::Bool(b) => Some(Value::Bool(*b)),
            Yaml::Null => Some(Value::Bool(false)),
            _ => mismatch(c, "a boolean (true or false)"),
        },
        Int => match y {
            Yaml::Int(i) => Some(Value::from(*i)),
            Yaml::Null => Some(Value::Null),
            Yaml::Uint(_) => {
                c.errors.push(FieldError::new(path, "is out of range"));
                None
            }
            // Go writes an integral float without a fraction, which then reads as an integer.
            Yaml::Float(x) => match float_json(*x) {
                Some(v) if v.is_i64() => Some(v),
                _ => mismatch(c, "an integer"),
            },
            _ => mismatch(c, "an integer"),
        },
        Time => match y {
            Yaml::Str(s) => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(_) => Some(Value::String(s.clone())),
                Err(e) => {
                    c.errors
                        .push(FieldError::new(path, format!("{s:?} is not an RFC 3339 time: {e}")));
                    None
                }
            },
            Yaml::Null => Some(Value::Null),
            _ => mismatch(c, "an RFC 3339 time string"),
        },
        Any => any_json(y, path, c),
        List(elem) => match y {
            Yaml::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    if *item == Yaml::Null {
                        if matches!(elem, Struct(fields) if std::ptr::eq(*fields, NODE)) {
                            // CKE's `[]*Node` gets a nil node, which its validation dereferences.
                            c.errors.push(FieldError::new(p, "must be a node, not null"));
                            continue;
                        }
                        out.push(zero(elem));
                        continue;
                    }
                    if let Some(v) = conv(item, elem, &p, c) {
                        out.push(v);
                    }
                }
                Some(Value::Array(out))
            }
            _ => mismatch(c, "a list"),
        },
        Map(elem) => {
            let entries = entries(y, path, c)?;
            let mut out = Map::new();
            for (k, v) in entries {
                let p = format!("{path}[{k:?}]");
                let val = if *v == Yaml::Null {
                    zero(elem)
                } else {
                    conv(v, elem, &p, c)?
                };
                out.insert(k, val);
            }
            Some(Value::Object(out))
        }
        Struct(fields) => conv_struct(y, fields, path, c),
    }
}

/// The zero value Go stores for a `null` list element or map value.
fn zero(shape: &Shape) -> Value {
    match shape {
        Str => Value::String(String::new()),
        Bool => Value::Bool(false),
        Struct(_) => Value::Object(Map::new()),
        _ => Value::Null,
    }
}

/// A float as Go's `json.Marshal` writes it: integral values below 1e21 without a fraction.
fn float_json(x: f64) -> Option<Value> {
    if !x.is_finite() {
        return None;
    }
    if x.fract() == 0.0 && x.abs() < 1e21 {
        if x >= i64::MIN as f64 && x < i64::MAX as f64 {
            return Some(Value::from(x as i64));
        }
        if x >= 0.0 && x < u64::MAX as f64 {
            return Some(Value::from(x as u64));
        }
    }
    Number::from_f64(x).map(Value::Number)
}

/// The errors converting `y` to JSON as [`any_json`] does (keys that are no strings, `.inf`).
pub fn any_errors(y: &Yaml, path: &str) -> Vec<FieldError> {
    let mut c = Converted::default();
    any_json(y, path, &mut c);
    c.errors
}

/// Any YAML as JSON, as `sigs.k8s.io/yaml` converts it where no Go type guides it.
fn any_json(y: &Yaml, path: &str, c: &mut Converted) -> Option<Value> {
    Some(match y {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Int(i) => Value::from(*i),
        Yaml::Uint(u) => Value::from(*u),
        Yaml::Float(x) => match float_json(*x) {
            Some(v) => v,
            None => {
                c.errors
                    .push(FieldError::new(path, format!("{x} cannot be written as JSON")));
                return None;
            }
        },
        Yaml::Str(s) => Value::String(s.clone()),
        Yaml::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| any_json(v, &format!("{path}[{i}]"), c))
                .collect(),
        ),
        Yaml::Map(_) => {
            let mut out = Map::new();
            for (k, v) in entries(y, path, c)? {
                let p = join(path, &k);
                if let Some(v) = any_json(v, &p, c) {
                    out.insert(k, v);
                }
            }
            Value::Object(out)
        }
    })
}
