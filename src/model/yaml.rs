//! Reads a YAML (or JSON) document the way CKE does: `sigs.k8s.io/yaml` over `go.yaml.in/yaml/v2`,
//! a YAML 1.1 reader. Plain scalars resolve as yaml.v2's `resolve.go` does (`yes`, `on`, `Y` are
//! booleans, `0755` is octal, `1_000` an integer, `.inf` a float); quoted and block scalars are
//! strings; `<<` merge keys and aliases expand; only the first document is read; a key given twice
//! keeps its last value. The result is a [`Yaml`] tree that `schema` turns into the typed
//! declaration. Nothing here knows the declaration's fields.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle};

use super::limits::MAX_NESTING;

/// A YAML node after yaml.v2's resolution, as Go's `interface{}` holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    /// `~`, `null`, an empty plain scalar.
    Null,
    /// `true`, `yes`, `on`, `y`, ... and their negations.
    Bool(bool),
    /// An integer that fits Go's `int`.
    Int(i64),
    /// An integer above `int`'s range (yaml.v2's `uint64`).
    Uint(u64),
    /// A float.
    Float(f64),
    /// A string: any quoted or block scalar, and every plain scalar that resolves to nothing else.
    Str(String),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping, entries in document order (merge keys expanded, duplicates kept: the last wins).
    Map(Vec<(Yaml, Yaml)>),
}

/// The document cannot be read as YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(pub String);

/// What reading noticed that CKE accepts silently.
#[derive(Debug, Default)]
pub struct ReadNotes {
    /// The text holds more than one document; only the first is read (as CKE reads it).
    pub more_documents: bool,
}

const CORE: &str = "tag:yaml.org,2002:";

/// Reads the first document of `text`. An empty stream reads as [`Yaml::Null`].
pub fn read(text: &str) -> Result<(Yaml, ReadNotes), YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder::default();
    let mut notes = ReadNotes::default();
    while let Some(next) = parser.next() {
        let (event, span) = next.map_err(|e| YamlError(e.to_string()))?;
        let line = span.start.line();
        match event {
            Event::DocumentStart(..) => {}
            Event::DocumentEnd => {
                // yaml.v2 reads one document; what follows is not even parsed, except to say so.
                if let Some(Ok((Event::DocumentStart(..), _))) = parser.next() {
                    notes.more_documents = true;
                }
                break;
            }
            Event::StreamEnd => break,
            Event::Alias(id) => {
                let (v, nodes) = b
                    .anchors
                    .get(&id)
                    .ok_or_else(|| YamlError(format!("line {line}: unknown anchor")))?;
                let nodes = *nodes;
                // Counted before the copy is made: a few lines of nested aliases would otherwise
                // expand to billions of nodes.
                b.decoded += 1 + nodes;
                b.aliased += nodes;
                b.check_aliasing(line)?;
                let v = v.clone();
                b.value(v, line)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle(), t.suffix()));
                let v = scalar(&value, style, tag.as_deref()).map_err(|e| YamlError(format!("line {line}: {e}")))?;
                b.decoded += 1;
                if anchor != 0 {
                    b.anchors.insert(anchor, (v.clone(), 1));
                }
                // A plain `<<` key (or one tagged !!merge) merges the mapping(s) that follow.
                let merge = value == "<<"
                    && ((style == ScalarStyle::Plain && tag.is_none())
                        || tag.as_deref() == Some("tag:yaml.org,2002:merge"));
                b.scalar_value(v, merge, line)?;
            }
            Event::SequenceStart(_, anchor, _) => b.open(Frame::seq(anchor), line)?,
            Event::MappingStart(_, anchor, _) => b.open(Frame::map(anchor), line)?,
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = b.stack.pop().expect("balanced events");
                b.decoded += 1;
                let nodes = b.decoded - frame.decoded_before;
                let (v, anchor) = frame.finish();
                if anchor != 0 {
                    b.anchors.insert(anchor, (v.clone(), nodes));
                }
                b.value(v, line)?;
            }
            _ => {}
        }
    }
    Ok((b.root.unwrap_or(Yaml::Null), notes))
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Anchored values and how many nodes each holds.
    anchors: HashMap<usize, (Yaml, usize)>,
    root: Option<Yaml>,
    /// Nodes decoded so far, those copied from aliases included (yaml.v2's `decodeCount`).
    decoded: usize,
    /// Nodes copied from aliases (yaml.v2's `aliasCount`).
    aliased: usize,
}

struct Frame {
    anchor: usize,
    /// [`Builder::decoded`] when the collection opened.
    decoded_before: usize,
    seq: Option<Vec<Yaml>>,
    map: Vec<(Yaml, Yaml)>,
    key: Option<(Yaml, bool)>,
}

impl Frame {
    fn seq(anchor: usize) -> Frame {
        Frame {
            anchor,
            decoded_before: 0,
            seq: Some(Vec::new()),
            map: Vec::new(),
            key: None,
        }
    }
    fn map(anchor: usize) -> Frame {
        Frame {
            anchor,
            decoded_before: 0,
            seq: None,
            map: Vec::new(),
            key: None,
        }
    }
    fn finish(self) -> (Yaml, usize) {
        match self.seq {
            Some(s) => (Yaml::Seq(s), self.anchor),
            None => (Yaml::Map(self.map), self.anchor),
        }
    }
}

impl Builder {
    /// Opens a collection, unless the document already nests [`MAX_NESTING`] deep (nesting is
    /// bounded for every reader of operators' input, see [`crate::model::limits`]).
    fn open(&mut self, mut frame: Frame, line: usize) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_NESTING {
            return Err(YamlError(format!(
                "line {line}: the document nests deeper than {MAX_NESTING} levels"
            )));
        }
        frame.decoded_before = self.decoded;
        self.stack.push(frame);
        Ok(())
    }

    /// yaml.v2's refusal of "excessive aliasing": past 100 nodes copied from aliases and 1000
    /// decoded, at most 99% of the nodes may come from aliases in a small document, scaling down to
    /// 10% from 4 million nodes on (a "billion laughs" document is refused, not expanded).
    fn check_aliasing(&self, line: usize) -> Result<(), YamlError> {
        const LOW: f64 = 400_000.0;
        const HIGH: f64 = 4_000_000.0;
        let decoded = self.decoded as f64;
        let allowed = if decoded <= LOW {
            0.99
        } else if decoded >= HIGH {
            0.10
        } else {
            0.99 - 0.89 * ((decoded - LOW) / (HIGH - LOW))
        };
        if self.aliased > 100 && self.decoded > 1000 && self.aliased as f64 / decoded > allowed {
            return Err(YamlError(format!("line {line}: document contains excessive aliasing")));
        }
        Ok(())
    }

    fn scalar_value(&mut self, v: Yaml, merge: bool, line: usize) -> Result<(), YamlError> {
        if let Some(top) = self.stack.last_mut() {
            if top.seq.is_none() && top.key.is_none() {
                top.key = Some((v, merge));
                return Ok(());
            }
        }
        self.value(v, line)
    }

    fn value(&mut self, v: Yaml, line: usize) -> Result<(), YamlError> {
        let Some(top) = self.stack.last_mut() else {
            self.root.get_or_insert(v);
            return Ok(());
        };
        if let Some(seq) = &mut top.seq {
            seq.push(v);
            return Ok(());
        }
        match top.key.take() {
            None => top.key = Some((v, false)),
            Some((_, true)) => merge_into(&mut top.map, v, line)?,
            Some((k, false)) => top.map.push((k, v)),
        }
        Ok(())
    }
}

/// yaml.v2's `merge`: a mapping, or a sequence of mappings applied last to first (so the first
/// one listed wins); anything else is an error.
fn merge_into(map: &mut Vec<(Yaml, Yaml)>, v: Yaml, line: usize) -> Result<(), YamlError> {
    let err = || {
        YamlError(format!(
            "line {line}: map merge requires map or sequence of maps as the value"
        ))
    };
    match v {
        Yaml::Map(entries) => map.extend(entries),
        Yaml::Seq(items) => {
            for item in items.into_iter().rev() {
                match item {
                    Yaml::Map(entries) => map.extend(entries),
                    _ => return Err(err()),
                }
            }
        }
        _ => return Err(err()),
    }
    Ok(())
}

/// yaml.v2's `decoder.scalar` into `interface{}`: untagged quoted and block scalars are strings;
/// plain ones and tagged ones go through [`resolve`].
fn scalar(value: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Yaml, String> {
    match tag {
        None if style != ScalarStyle::Plain => Ok(Yaml::Str(value.to_string())),
        None => Ok(resolve(value)),
        Some(t) => {
            let short = t
                .strip_prefix(CORE)
                .map(|s| format!("!!{s}"))
                .unwrap_or_else(|| t.to_string());
            let resolved = resolve(value);
            let got = match &resolved {
                Yaml::Null => "!!null",
                Yaml::Bool(_) => "!!bool",
                Yaml::Int(_) | Yaml::Uint(_) => "!!int",
                Yaml::Float(_) => "!!float",
                _ => "!!str",
            };
            match short.as_str() {
                "!!str" => Ok(Yaml::Str(value.to_string())),
                "!!binary" => {
                    use base64::Engine;
                    let clean: String = value.chars().filter(|c| !c.is_whitespace()).collect();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(clean)
                        .map_err(|e| format!("!!binary value contains invalid base64 data: {e}"))?;
                    Ok(Yaml::Str(String::from_utf8_lossy(&bytes).into_owned()))
                }
                "!!null" | "!!bool" | "!!int" | "!!float" | "!!timestamp" => {
                    if short == got || (short == "!!timestamp" && got == "!!str") {
                        Ok(resolved)
                    } else if short == "!!float" {
                        match resolved {
                            Yaml::Int(i) => Ok(Yaml::Float(i as f64)),
                            _ => Err(format!("cannot decode {got} `{value}` as a {short}")),
                        }
                    } else {
                        Err(format!("cannot decode {got} `{value}` as a {short}"))
                    }
                }
                // Other tags are not resolved: the value stays a string.
                _ => Ok(Yaml::Str(value.to_string())),
            }
        }
    }
}

/// yaml.v2's `resolve` for an untagged plain scalar (YAML 1.1 booleans and nulls, Go's
/// `strconv.ParseInt(s, 0, 64)` integers after removing `_`, YAML-style floats).
pub fn resolve(s: &str) -> Yaml {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Yaml::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Yaml::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Yaml::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" => return Yaml::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Yaml::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Yaml::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let str_ = || Yaml::Str(s.to_string());
    match s.as_bytes()[0] {
        b'.' => match go_parse_float(s) {
            Some(f) => Yaml::Float(f),
            None => str_(),
        },
        b'+' | b'-' | b'0'..=b'9' => {
            let plain = s.replace('_', "");
            if let Some(i) = go_parse_int(&plain) {
                return Yaml::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain) {
                return Yaml::Uint(u);
            }
            if is_yaml_style_float(&plain) {
                if let Some(f) = go_parse_float(&plain) {
                    return Yaml::Float(f);
                }
            }
            str_()
        }
        _ => str_(),
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").unwrap()
    });
    RE.is_match(s)
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms YAML produces: out of range is an error.
fn go_parse_float(s: &str) -> Option<f64> {
    let ok = s
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    let f: f64 = if ok { s.parse().ok()? } else { return None };
    f.is_finite().then_some(f)
}

/// Digits and base of a Go base-0 integer literal without sign (`0x1f`, `0o17`, `017`, `0b1`, `12`).
fn go_base(s: &str) -> Option<(&str, u32)> {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b'0' {
        match b[1] {
            b'x' | b'X' => return Some((&s[2..], 16)),
            b'o' | b'O' => return Some((&s[2..], 8)),
            b'b' | b'B' => return Some((&s[2..], 2)),
            _ => return Some((&s[1..], 8)),
        }
    }
    Some((s, 10))
}

fn go_digits(digits: &str, base: u32) -> Option<u64> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    u64::from_str_radix(digits, base).ok()
}

/// Go's `strconv.ParseInt(s, 0, 64)` (the `_` already removed).
pub fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let (digits, base) = go_base(rest)?;
    let u = go_digits(digits, base)?;
    if neg {
        if u <= i64::MAX as u64 + 1 {
            Some((u as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` (no sign).
fn go_parse_uint(s: &str) -> Option<u64> {
    let (digits, base) = go_base(s)?;
    go_digits(digits, base)
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`, which `sigs.k8s.io/yaml` uses for a float given
/// where a string is expected (`1.10` → `"1.1"`, `1e6` → `"1e+06"`).
pub fn go_format_float32(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest round-trip digits of the float32, and the decimal exponent.
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let neg = if x < 0.0 { "-" } else { "" };
    // Go: with the shortest precision, %e is used when the exponent is < -4 or >= 6.
    if !(-4..6).contains(&exp) {
        // %e form: d[.ddd]e±XX
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{neg}{first}{frac}e{sign}{:02}", exp.abs());
    }
    // %f form with exactly the shortest digits.
    let n = digits.len() as i32;
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{neg}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= n {
        format!("{neg}{digits}{}", "0".repeat((point - n) as usize))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{neg}{a}.{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Yaml {
        match read(&format!("v: {text}\n")).unwrap().0 {
            Yaml::Map(mut m) => m.pop().unwrap().1,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_resolve_as_yaml_v2() {
        // go.yaml.in/yaml/v2 resolve.go: YAML 1.1 booleans, base-0 integers, YAML-style floats.
        for (text, want) in [
            ("yes", Yaml::Bool(true)),
            ("Off", Yaml::Bool(false)),
            ("y", Yaml::Bool(true)),
            ("~", Yaml::Null),
            ("", Yaml::Null),
            ("0755", Yaml::Int(493)),
            ("0x1F", Yaml::Int(31)),
            ("0o17", Yaml::Int(15)),
            ("0b101", Yaml::Int(5)),
            ("-0b101", Yaml::Int(-5)),
            ("1_000", Yaml::Int(1000)),
            ("+12", Yaml::Int(12)),
            ("08", Yaml::Float(8.0)),
            ("1e3", Yaml::Float(1000.0)),
            ("1.10", Yaml::Float(1.1)),
            (".5", Yaml::Float(0.5)),
            ("18446744073709551615", Yaml::Uint(u64::MAX)),
            ("1e400", Yaml::Str("1e400".into())),
            ("2024-01-02", Yaml::Str("2024-01-02".into())),
            ("'yes'", Yaml::Str("yes".into())),
            ("\"1\"", Yaml::Str("1".into())),
            ("!!str 12", Yaml::Str("12".into())),
            ("!!float 12", Yaml::Float(12.0)),
            ("Yes please", Yaml::Str("Yes please".into())),
            ("0x", Yaml::Str("0x".into())),
        ] {
            assert_eq!(one(text), want, "{text}");
        }
        assert!(matches!(one(".inf"), Yaml::Float(f) if f.is_infinite()));
        assert!(read("v: !!int abc\n").is_err());
    }

    #[test]
    fn merge_keys_aliases_duplicates_and_documents() {
        let (y, notes) = read("base: &b {a: 1, b: 2}\nm:\n  b: 0\n  <<: *b\n  c: 3\n---\nignored: [\n").unwrap();
        assert!(notes.more_documents);
        let Yaml::Map(top) = y else { panic!() };
        assert_eq!(top[1].0, Yaml::Str("m".into()));
        // yaml.v2 applies the merge where it stands: the merged b (2) comes after the explicit b (0).
        assert_eq!(
            top[1].1,
            Yaml::Map(vec![
                (Yaml::Str("b".into()), Yaml::Int(0)),
                (Yaml::Str("a".into()), Yaml::Int(1)),
                (Yaml::Str("b".into()), Yaml::Int(2)),
                (Yaml::Str("c".into()), Yaml::Int(3)),
            ])
        );
        let (y, _) = read("m:\n  <<: [{a: 1}, {a: 2}]\n").unwrap();
        let Yaml::Map(top) = y else { panic!() };
        // The first mapping of the list wins: it is applied last.
        assert_eq!(
            top[0].1,
            Yaml::Map(vec![
                (Yaml::Str("a".into()), Yaml::Int(2)),
                (Yaml::Str("a".into()), Yaml::Int(1))
            ])
        );
        assert!(read("m:\n  <<: 3\n").is_err());
        assert_eq!(read("").unwrap().0, Yaml::Null);
        assert!(read("a: [").is_err());
    }

    #[test]
    fn deep_nesting_and_excessive_aliasing_are_refused() {
        // Block nesting (which no check before parsing sees) stops at the same depth as flow nesting.
        let block: String = (0..200).map(|i| format!("{}- \n", "  ".repeat(i))).collect();
        let e = read(&block).unwrap_err();
        assert!(e.0.ends_with("the document nests deeper than 128 levels"), "{e}");
        let fine: String = (0..127).map(|i| format!("{}- \n", "  ".repeat(i))).collect();
        assert!(read(&fine).is_ok());
        // A "billion laughs": nine lines that would expand to 10^9 nodes.
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            laughs.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{p}"); 10].join(", ")));
        }
        let e = read(&laughs).unwrap_err();
        assert!(e.0.contains("excessive aliasing"), "{e}");
        // Aliases as declarations use them (a few shared blocks) are fine.
        let mut shared = String::from("base: &base {a: 1, b: [1, 2, 3]}\nnodes:\n");
        for i in 0..1000 {
            shared.push_str(&format!("  - {{address: 10.0.0.{}, <<: *base}}\n", i % 250));
        }
        assert!(read(&shared).is_ok());
    }

    #[test]
    fn floats_format_as_go_g_float32() {
        for (f, want) in [
            (1.1, "1.1"),
            (1234567.0, "1.234567e+06"),
            (100000.0, "100000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (std::f64::consts::E, "2.7182817"),
            (1e21, "1e+21"),
            (123456.7, "123456.7"),
            (-0.5, "-0.5"),
            (8.0, "8"),
        ] {
            assert_eq!(go_format_float32(f), want, "{f}");
        }
    }
}
