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
    crate::model::limits::check_nesting(text)?;
    // Line numbers in parser messages are moved by the offset (the document is not padded with
    // blank lines: for an input of many documents that cost time and memory quadratic in its size).
    if text.trim_start().starts_with('{') {
        return match serde_json::from_str::<Value>(text) {
            Ok(v) => Ok(v),
            // A YAML flow mapping (`{a: 1}`) is not JSON but is fine.
            Err(json_err) => decode_yaml(text, line_offset).map_err(|_| ResourceError::Syntax {
                format: "JSON",
                reason: shift_lines(&json_err.to_string(), line_offset),
            }),
        };
    }
    decode_yaml(text, line_offset)
}

/// `message` with every `line N` moved down by `offset` lines.
fn shift_lines(message: &str, offset: usize) -> String {
    static LINE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\bline (\d+)").unwrap());
    let message = crate::model::limits::nesting_error(message).unwrap_or_else(|| message.to_string());
    LINE.replace_all(&message, |c: &regex::Captures<'_>| {
        let n: usize = c[1].parse().unwrap_or(0);
        format!("line {}", n + offset)
    })
    .into_owned()
}

fn decode_yaml(text: &str, line_offset: usize) -> Result<Value, ResourceError> {
    let syntax = |e: serde_yaml::Error| ResourceError::Syntax {
        format: "YAML",
        reason: shift_lines(&e.to_string(), line_offset),
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
