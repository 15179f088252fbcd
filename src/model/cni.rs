//! The CNI configuration file rules CKE applies to `options.kubelet.cni_conf_file.content`: those of
//! libcni v1.3.0 (CKE's go.mod), `NetworkPluginConfFromBytes` for a `.conf` (any name not ending
//! in `.conflist`) and `ConfListFromBytes` for a `.conflist`. Go's `encoding/json` decodes the plugin
//! configuration into `types.PluginConf`: keys match case-insensitively, unknown keys are ignored,
//! `null` leaves a field alone, and a value of the wrong JSON type is an error. Pure: no file is read.

use serde_json::Value;

/// The checks of `libcni.NetworkPluginConfFromBytes`: a JSON object (or `null`) whose typed fields
/// have their Go types and whose `type` is a non-empty string.
pub fn check_conf(content: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(content).map_err(|e| format!("error parsing configuration: {e}"))?;
    check_plugin(&v).map_err(|e| format!("error parsing configuration: {e}"))
}

/// The checks of `libcni.ConfListFromBytes` (`NetworkConfFromBytes`): a JSON object with a string
/// `name`; `cniVersion` a string; `cniVersions` a list of versions; `disableCheck`, `disableGC`,
/// `loadOnlyInlinedPlugins` booleans (or "true"/"false" in any case); `plugins`, when present, a
/// non-empty list of plugin configurations (required when `loadOnlyInlinedPlugins` is true).
pub fn check_conflist(content: &str) -> Result<(), String> {
    let list = |m: String| format!("error parsing configuration list: {m}");
    let v: Value = serde_json::from_str(content).map_err(|e| list(e.to_string()))?;
    let obj = match &v {
        Value::Object(o) => o.clone(),
        // `null` decodes into a nil map, which has no name.
        Value::Null => Default::default(),
        other => return Err(list(format!("cannot unmarshal {} into a map", json_kind(other)))),
    };
    match obj.get("name") {
        None => return Err(list("no name".into())),
        Some(Value::String(_)) => {}
        Some(other) => return Err(list(format!("invalid name type {}", go_type(other)))),
    }
    let mut cni_version = String::new();
    match obj.get("cniVersion") {
        None => {}
        Some(Value::String(s)) => cni_version = s.clone(),
        Some(other) => return Err(list(format!("invalid cniVersion type {}", go_type(other)))),
    }
    if let Some(raw) = obj.get("cniVersions") {
        let Value::Array(items) = raw else {
            return Err(list("invalid type for cniVersions: []interface {}".into()));
        };
        for (i, item) in items.iter().enumerate() {
            let Value::String(s) = item else {
                return Err(list(format!(
                    "invalid type for cniVersions index {i}: {}",
                    go_type(item)
                )));
            };
            parse_version(s).map_err(|e| list(format!("invalid cniVersions entry {s} at index {i}: {e}")))?;
        }
        if !cni_version.is_empty() {
            parse_version(&cni_version).map_err(|e| list(format!("invalid cniVersion {cni_version}: {e}")))?;
        }
    }
    let read_bool = |key: &str| -> Result<bool, String> {
        match obj.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.to_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(list(format!("invalid value {other:?} for {key}"))),
            },
            Some(other) => Err(list(format!("invalid type {} for {key}", go_type(other)))),
        }
    };
    read_bool("disableCheck")?;
    read_bool("disableGC")?;
    let inlined_only = read_bool("loadOnlyInlinedPlugins")?;
    let plugins = match obj.get("plugins") {
        None if inlined_only => return Err(list("`loadOnlyInlinedPlugins` is true, and no 'plugins' key".into())),
        None => return Ok(()),
        Some(Value::Array(p)) => p,
        Some(other) => return Err(list(format!("invalid 'plugins' type {}", go_type(other)))),
    };
    if plugins.is_empty() {
        return Err(list("no plugins in list".into()));
    }
    for (i, p) in plugins.iter().enumerate() {
        check_plugin(p).map_err(|e| format!("failed to parse plugin config {i}: error parsing configuration: {e}"))?;
    }
    Ok(())
}

/// `types.PluginConf` as Go decodes it, then the non-empty `type`.
fn check_plugin(v: &Value) -> Result<(), String> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Null => return Err("missing 'type'".into()),
        other => return Err(format!("cannot unmarshal {} into types.PluginConf", json_kind(other))),
    };
    let want_str = |key: &str| -> Result<Option<String>, String> {
        match go_field(obj, key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "cannot unmarshal {} into field {key} of type string",
                json_kind(other)
            )),
        }
    };
    want_str("cniVersion")?;
    want_str("name")?;
    let ty = want_str("type")?;
    match go_field(obj, "capabilities") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, b) in m {
                if !matches!(b, Value::Bool(_) | Value::Null) {
                    return Err(format!(
                        "cannot unmarshal {} into capabilities[{k:?}] of type bool",
                        json_kind(b)
                    ));
                }
            }
        }
        Some(other) => return Err(format!("cannot unmarshal {} into field capabilities", json_kind(other))),
    }
    match go_field(obj, "ipam") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ipam)) => match go_field(ipam, "type") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "cannot unmarshal {} into field ipam.type of type string",
                    json_kind(other)
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "cannot unmarshal {} into field ipam of type types.IPAM",
                json_kind(other)
            ))
        }
    }
    match go_field(obj, "dns") {
        None | Some(Value::Null) => {}
        Some(Value::Object(dns)) => {
            match go_field(dns, "domain") {
                None | Some(Value::Null | Value::String(_)) => {}
                Some(other) => {
                    return Err(format!(
                        "cannot unmarshal {} into field dns.domain of type string",
                        json_kind(other)
                    ))
                }
            }
            for key in ["nameservers", "search", "options"] {
                match go_field(dns, key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(items)) if items.iter().all(|i| matches!(i, Value::String(_) | Value::Null)) => {}
                    Some(other) => {
                        return Err(format!(
                            "cannot unmarshal {} into field dns.{key} of type []string",
                            json_kind(other)
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "cannot unmarshal {} into field dns of type types.DNS",
                json_kind(other)
            ))
        }
    }
    match go_field(obj, "prevResult") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(other) => {
            return Err(format!(
                "cannot unmarshal {} into field prevResult of type map",
                json_kind(other)
            ))
        }
    }
    match go_field(obj, "cni.dev/valid-attachments") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Null => {}
                    Value::Object(a) => {
                        for key in ["containerID", "ifname"] {
                            if !matches!(go_field(a, key), None | Some(Value::Null | Value::String(_))) {
                                return Err(format!("cannot unmarshal into field {key} of type string"));
                            }
                        }
                    }
                    other => return Err(format!("cannot unmarshal {} into types.GCAttachment", json_kind(other))),
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "cannot unmarshal {} into field cni.dev/valid-attachments",
                json_kind(other)
            ))
        }
    }
    match ty {
        Some(t) if !t.is_empty() => Ok(()),
        _ => Err("missing 'type'".into()),
    }
}

/// The value Go's `encoding/json` stores in the struct field named `name`: every key equal to it
/// ignoring case is assigned in turn, so the last one wins. Go takes them in text order; here they
/// are taken in byte order (the same unless one key is given twice in different cases).
pub fn go_field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    let want = name.to_lowercase();
    let mut keys: Vec<&String> = obj
        .keys()
        .filter(|k| k.as_str() == name || k.chars().map(fold_char).collect::<String>() == want)
        .collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys.last().and_then(|k| obj.get(k.as_str()))
}

fn fold_char(c: char) -> char {
    match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    }
}

/// libcni's `version.ParseVersion`: up to three dot-separated `strconv.Atoi` numbers; "" is 0.1.0.
fn parse_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() >= 4 {
        return Err(format!("invalid version {v:?}: too many parts"));
    }
    for (what, p) in ["major", "minor", "micro"].iter().zip(&parts) {
        p.parse::<i64>()
            .map_err(|_| format!("failed to convert {what} version part {p:?}"))?;
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The Go type name `%T` prints for a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verdicts of libcni v1.3.0 `NetworkPluginConfFromBytes` (libcni/conf.go, pkg/types/types.go).
    #[test]
    fn conf_verdicts() {
        for (content, ok) in [
            (r#"{"cniVersion": "0.3.1", "type": "loopback"}"#, true),
            (r#"{"type": "bridge"}"#, true),
            (r#"{"Type": "bridge"}"#, true),             // keys match case-insensitively
            (r#"{"type": "bridge", "Type": ""}"#, true), // "type" sorts after "Type": it wins
            (r#"{"type": "", "Type": "x"}"#, false),
            (r#"{"cniVersion": "0.3.1"}"#, false),
            (r#"{"type": 1}"#, false),
            (r#"{"type": "b", "ipam": {"type": 3}}"#, false),
            (
                r#"{"type": "b", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/16"}]]}}"#,
                true,
            ),
            (r#"{"type": "b", "dns": {"nameservers": "8.8.8.8"}}"#, false),
            (r#"{"type": "b", "capabilities": {"portMappings": "yes"}}"#, false),
            (r#"{"type": "b", "prevResult": []}"#, false),
            (r#"{"type": "b", "unknown": [1, 2]}"#, true),
            ("null", false),
            ("[]", false),
            ("", false),
            ("<aaa>", false),
            (r#"{"type": "b"} x"#, false),
        ] {
            assert_eq!(check_conf(content).is_ok(), ok, "{content}: {:?}", check_conf(content));
        }
    }

    /// Verdicts of libcni v1.3.0 `ConfListFromBytes` (`NetworkConfFromBytes`, libcni/conf.go).
    #[test]
    fn conflist_verdicts() {
        for (content, ok) in [
            (
                r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}"#,
                true,
            ),
            (r#"{"name": "n"}"#, true), // no plugins: loaded from files at run time
            (r#"{"name": ""}"#, true),
            (r#"{"Name": "n"}"#, false), // a map lookup: case matters
            (r#"{"plugins": [{"type": "bridge"}]}"#, false),
            (r#"{"name": 1}"#, false),
            (r#"{"name": "n", "cniVersion": 1}"#, false),
            (r#"{"name": "n", "plugins": []}"#, false),
            (r#"{"name": "n", "plugins": null}"#, false),
            (r#"{"name": "n", "plugins": [{"cniVersion": "1.0.0"}]}"#, false),
            (r#"{"name": "n", "plugins": [null]}"#, false),
            (r#"{"name": "n", "loadOnlyInlinedPlugins": true}"#, false),
            (r#"{"name": "n", "disableCheck": "TRUE"}"#, true),
            (r#"{"name": "n", "disableGC": "maybe"}"#, false),
            (r#"{"name": "n", "disableCheck": 1}"#, false),
            (r#"{"name": "n", "cniVersions": ["1.0.0", "0.4.0"]}"#, true),
            (r#"{"name": "n", "cniVersions": ["1.x"]}"#, false),
            (r#"{"name": "n", "cniVersions": ["1.0.0.0"]}"#, false),
            (r#"{"name": "n", "cniVersions": "1.0.0"}"#, false),
            (r#"{"name": "n", "cniVersion": "bad", "cniVersions": ["1.0.0"]}"#, false),
            (r#"{"name": "n", "cniVersion": "bad"}"#, true), // parsed only beside cniVersions
            ("null", false),
            ("", false),
        ] {
            assert_eq!(
                check_conflist(content).is_ok(),
                ok,
                "{content}: {:?}",
                check_conflist(content)
            );
        }
    }
}
