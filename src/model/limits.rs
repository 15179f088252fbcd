//! Bounds on the text cke reads from operators (cluster.yml, constraints, `ckecli resource set`
//! input), checked before any parser sees it, so that hostile or mistaken input costs bounded memory
//! and time and is refused with a clear error: its size, and how deep its flow collections (`[`, `{`)
//! nest, which the YAML parser handles in time quadratic in the depth (a megabyte of `[` would keep
//! it busy for hours). Deeper block nesting is refused by the readers themselves (cluster.yml's
//! reader, `super::yaml`, at [`MAX_NESTING`]; serde_yaml and serde_json stop at 128 levels);
//! [`nesting_error`] words their refusal. Pure.

/// The largest input accepted: far above any real declaration (a thousand nodes with labels and
/// taints is a few hundred KiB) and above what the management etcd stores in one value (1.5 MiB by
/// default), far below what could hurt the reader.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// How deep the YAML and JSON parsers let documents nest.
pub const MAX_NESTING: usize = 128;

/// Input refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("the input is {size} bytes or more; at most {max} bytes are accepted")]
    TooLarge {
        /// Its size (at least).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Flow collections nest deeper than [`MAX_NESTING`].
    #[error("line {line}: the document nests deeper than {max} levels")]
    TooDeep {
        /// The 1-based line where the limit was passed.
        line: usize,
        /// The limit.
        max: usize,
    },
}

/// Refuses input larger than [`MAX_INPUT_BYTES`].
pub fn check_size(len: usize) -> Result<(), LimitError> {
    if len > MAX_INPUT_BYTES {
        return Err(LimitError::TooLarge {
            size: len,
            max: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// Refuses flow collections (`[`, `{`) nested deeper than [`MAX_NESTING`], outside quoted scalars
/// and comments. Unclosed brackets count until the end of the text, so a document that is not
/// valid YAML anyway may be refused here first.
pub fn check_nesting(text: &str) -> Result<(), LimitError> {
    #[derive(PartialEq)]
    enum In {
        Plain,
        Single,
        Double,
        Comment,
    }
    let (mut state, mut depth, mut line, mut prev) = (In::Plain, 0usize, 1usize, '\n');
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        match state {
            In::Plain => match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(LimitError::TooDeep { line, max: MAX_NESTING });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                '\'' => state = In::Single,
                '"' => state = In::Double,
                '#' if prev.is_whitespace() => state = In::Comment,
                _ => {}
            },
            In::Single if c == '\'' => state = In::Plain,
            // An escaped character is skipped (an escaped line break still counts as a line).
            In::Double if c == '\\' && chars.next() == Some('\n') => line += 1,
            In::Double if c == '"' => state = In::Plain,
            In::Comment if c == '\n' => state = In::Plain,
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

/// [`check_size`] and [`check_nesting`].
pub fn check(text: &str) -> Result<(), LimitError> {
    check_size(text.len())?;
    check_nesting(text)
}

/// A clearer word for a parser's refusal of deep nesting, when `message` is one.
pub fn nesting_error(message: &str) -> Option<String> {
    message
        .contains("recursion limit exceeded")
        .then(|| format!("the document nests deeper than {MAX_NESTING} levels ({message})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_deep_inputs_are_refused_with_a_clear_error() {
        assert!(check_size(MAX_INPUT_BYTES).is_ok());
        let e = check_size(100 * 1024 * 1024).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the input is 104857600 bytes or more; at most 4194304 bytes are accepted"
        );
        // Deep flow nesting is refused before parsing; quoted brackets and comments do not count.
        let e = check(&format!("a: b\nname: {}", "[".repeat(1_000_000))).unwrap_err();
        assert_eq!(e.to_string(), "line 2: the document nests deeper than 128 levels");
        let fine = format!(
            "a: '{}'\nb: \"{}\\\"[\"\n# {}\nc: {}1{}\n",
            "[".repeat(500),
            "{".repeat(500),
            "[".repeat(500),
            "[".repeat(128),
            "]".repeat(128)
        );
        assert!(check(&fine).is_ok(), "{fine}");
        assert!(check(&format!("c: {}1{}", "[".repeat(129), "]".repeat(129))).is_err());
        // The parsers themselves refuse deep nesting (block nesting reaches them) without
        // exhausting the stack.
        for deep in [
            format!("name: {}1{}", "[".repeat(200), "]".repeat(200)),
            (0..300).map(|i| format!("{}- \n", "  ".repeat(i))).collect::<String>(),
            format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200)),
        ] {
            let e = serde_yaml::from_str::<serde_yaml::Value>(&deep).unwrap_err();
            let msg = nesting_error(&e.to_string()).unwrap_or_else(|| e.to_string());
            assert!(
                msg.contains("nests deeper") || msg.contains("did not find expected"),
                "{msg}"
            );
        }
        let e =
            serde_json::from_str::<serde_json::Value>(&format!("{}1{}", "[".repeat(129), "]".repeat(129))).unwrap_err();
        assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
    }
}
