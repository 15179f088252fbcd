//! Decoding one document into a JSON value, as Kubernetes' YAML-to-JSON conversion does (CKE decodes
//! with `k8s.io/apimachinery`'s YAML serializer): JSON when the document is a JSON object, otherwise
//! YAML with merge keys applied, tags dropped and scalar keys turned into strings.

use serde_json::Value;

use super::ResourceError;

/// Decodes `doc`; `line_offset` lines are counted before it in messages (its first line in the
/// input is `line_offset + 1`), so that parser errors name the line of the whole input.
pub(super) fn decode(doc: &[u8], line_offset: usize) -> Result<Value, ResourceError> {
    let text = std::str::from_utf8(doc).map_err(|e| ResourceError::NotUtf8 {
        reason: format!("invalid byte at offset {}", e.valid_up_to()),
    })?;
    let padded = format!("{}{text}", "\n".repeat(line_offset));
    if text.trim_start().starts_with('{') {
        return match serde_json::from_str::<Value>(&padded) {
            Ok(v) => Ok(v),
            // A YAML flow mapping (`{a: 1}`) is not JSON but is fine.
            Err(json_err) => decode_yaml(&padded).map_err(|_| ResourceError::Syntax {
                format: "JSON",
                reason: json_err.to_string(),
            }),
        };
    }
    decode_yaml(&padded)
}

fn decode_yaml(text: &str) -> Result<Value, ResourceError> {
    let syntax = |e: serde_yaml::Error| ResourceError::Syntax {
        format: "YAML",
        reason: e.to_string(),
    };
    let mut v: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
    v.apply_merge().map_err(syntax)?;
    to_json(v, "")
}

/// Converts a YAML value; `path` names it in errors (`spec.ports[0]`).
fn to_json(v: serde_yaml::Value, path: &str) -> Result<Value, ResourceError> {
    use serde_yaml::Value as Y;
    let at = |reason: String| ResourceError::Field {
        field: if path.is_empty() {
            "(document)".into()
        } else {
            path.to_string()
        },
        reason,
    };
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    serde_json::Number::from_f64(f).ok_or_else(|| at(format!("{n} cannot be represented in JSON")))?,
                )
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut obj = serde_json::Map::new();
            for (k, item) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Tagged(t) => match t.value {
                        Y::String(s) => s,
                        other => return Err(at(format!("mapping key {other:?} is not a string"))),
                    },
                    other => return Err(at(format!("mapping key {other:?} is not a string or a number"))),
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                obj.insert(key, to_json(item, &child)?);
            }
            Value::Object(obj)
        }
        Y::Tagged(t) => to_json(t.value, path)?,
    })
}
