//! Multi-document input of `ckecli resource set|delete`: YAML documents separated by `---` lines
//! (as Kubernetes' `YAMLReader`, which CKE uses), and JSON objects, one after another.
//!
//! Documents are numbered from 1 as a YAML parser counts them: every `---` line starts a document;
//! text before the first `---` is one only if it holds more than comments. A document holding only
//! comments (a null document) is counted and skipped. A part that starts with `{` is read as a
//! stream of JSON objects, each a document of its own (a YAML flow mapping such as `{a: 1}` is one
//! YAML document). Each document is kept byte for byte as it appears in the input.

use super::{resource_info, yaml, ResourceError, ResourceInfo};

/// One document of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its 1-based number in the input (see the module documentation).
    pub number: usize,
    /// The 1-based input line it starts on.
    pub line: usize,
    /// The document as written in the input (for YAML, its lines without the `---` separators).
    pub text: Vec<u8>,
}

/// A document that is a valid resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDocument {
    /// Its 1-based number in the input.
    pub number: usize,
    /// Its resource key (`Kind/name` or `Kind/namespace/name`).
    pub key: String,
    /// What identifies the object.
    pub info: ResourceInfo,
    /// The document as written in the input: what is stored at `resource/<key>`.
    pub definition: Vec<u8>,
}

/// Splits an input into its documents, skipping null ones. Errors: the input is not UTF-8, a `---`
/// line carries more than a comment, or a stream of JSON objects breaks after its first object
/// (the error names the document number).
pub fn split_documents(input: &[u8]) -> Result<Vec<Document>, ResourceError> {
    crate::model::limits::check_size(input.len())?;
    let text = std::str::from_utf8(input).map_err(|e| ResourceError::NotUtf8 {
        reason: format!("invalid byte at offset {}", e.valid_up_to()),
    })?;
    crate::model::limits::check_nesting(text)?;
    let mut docs = Vec::new();
    let mut number = 0;
    for part in parts(text)? {
        if is_blank(part.text) {
            // A bare part of comments is no document; after `---` it is a null one.
            if part.explicit {
                number += 1;
            }
            continue;
        }
        match json_start(part.text) {
            Some(offset) => split_json(&part, offset, &mut number, &mut docs)?,
            None => {
                number += 1;
                docs.push(Document {
                    number,
                    line: part.line,
                    text: part.text.as_bytes().to_vec(),
                });
            }
        }
    }
    Ok(docs)
}

/// Splits an input and parses every document as a resource ([`super::parse_resource`]'s rules).
/// Every invalid document is reported, each as [`ResourceError::InDocument`] with its number
/// (several together as [`ResourceError::Documents`]); parser messages name lines of the input.
pub fn parse_documents(input: &[u8]) -> Result<Vec<ParsedDocument>, ResourceError> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for doc in split_documents(input)? {
        let result = yaml::decode(&doc.text, doc.line - 1).and_then(|v| resource_info(&v));
        match result {
            Ok(info) => parsed.push(ParsedDocument {
                number: doc.number,
                key: info.key(),
                info,
                definition: doc.text,
            }),
            Err(error) => errors.push(in_document(doc.number, error)),
        }
    }
    match errors.len() {
        0 => Ok(parsed),
        1 => Err(errors.remove(0)),
        _ => Err(ResourceError::Documents { errors }),
    }
}

fn in_document(number: usize, error: ResourceError) -> ResourceError {
    ResourceError::InDocument {
        number,
        error: Box::new(error),
    }
}

/// A part of the input between `---` lines.
struct Part<'a> {
    /// Its first line (1-based).
    line: usize,
    text: &'a str,
    /// It follows a `---` line.
    explicit: bool,
}

/// Cuts the input at its `---` lines (`---` followed by nothing but spaces or a comment).
fn parts(text: &str) -> Result<Vec<Part<'_>>, ResourceError> {
    let mut parts = Vec::new();
    let (mut start, mut start_line, mut explicit) = (0, 1, false);
    let mut pos = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let end = pos + line.len();
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Err(ResourceError::Separator {
                    line: i + 1,
                    text: line.trim_end().to_string(),
                });
            }
            parts.push(Part {
                line: start_line,
                text: &text[start..pos],
                explicit,
            });
            (start, start_line, explicit) = (end, i + 2, true);
        }
        pos = end;
    }
    parts.push(Part {
        line: start_line,
        text: &text[start..],
        explicit,
    });
    Ok(parts)
}

/// Only whitespace and comment lines.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

/// The offset of the `{` that opens the part, after blank and comment lines, if it opens with one.
fn json_start(text: &str) -> Option<usize> {
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with('{') {
            return Some(pos + line.len() - trimmed.len());
        }
        if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            return None;
        }
        pos += line.len();
    }
    None
}

/// Splits a part opening with `{` into its JSON objects. When even the first value is not JSON,
/// the whole part is one document (a YAML flow mapping, or an error the parser will name).
fn split_json(
    part: &Part<'_>,
    offset: usize,
    number: &mut usize,
    docs: &mut Vec<Document>,
) -> Result<(), ResourceError> {
    let json = &part.text[offset..];
    let line_of = |pos: usize| part.line + part.text[..offset + pos].matches('\n').count();
    let mut stream = serde_json::Deserializer::from_str(json).into_iter::<serde::de::IgnoredAny>();
    let mut found = Vec::new();
    let mut end = 0;
    loop {
        let start = end + json[end..].len() - json[end..].trim_start().len();
        match stream.next() {
            None => break,
            Some(Ok(_)) => {
                end = stream.byte_offset();
                found.push((line_of(start), &json[start..end]));
            }
            Some(Err(_)) if found.is_empty() => {
                *number += 1;
                docs.push(Document {
                    number: *number,
                    line: part.line,
                    text: part.text.as_bytes().to_vec(),
                });
                return Ok(());
            }
            Some(Err(e)) => {
                let first_line = &part.text[..offset];
                let column = first_line.len() - first_line.rfind('\n').map_or(0, |i| i + 1);
                return Err(in_document(
                    *number + found.len() + 1,
                    json_error(&e, line_of(0), column),
                ));
            }
        }
    }
    for (line, text) in found {
        *number += 1;
        docs.push(Document {
            number: *number,
            line,
            text: text.as_bytes().to_vec(),
        });
    }
    Ok(())
}

/// A JSON error with its position in the input: the text being parsed started at `line` (1-based),
/// after `column` characters of that line.
fn json_error(e: &serde_json::Error, line: usize, column: usize) -> ResourceError {
    let text = e.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
    let column = if e.line() == 1 { e.column() + column } else { e.column() };
    ResourceError::Syntax {
        format: "JSON",
        reason: format!("{message} at line {} column {column}", line + e.line() - 1),
    }
}
