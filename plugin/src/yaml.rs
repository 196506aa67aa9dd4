//! YAML out, readable by kubectl. serde_norway writes YAML 1.2, where `on`, `yes`, `n` or
//! `1:20` are plain strings; kubectl (sigs.k8s.io/yaml) reads YAML 1.1, where they are
//! booleans and a base-60 number, and `kubectl apply` of a label `a: on` fails ("cannot
//! unmarshal bool into ... of type string"). So every plain scalar that YAML 1.1 would read
//! as something else is single-quoted.

use serde::Serialize;

/// `value` as YAML that YAML 1.1 and 1.2 readers both read back the same.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    quote_yaml_1_1(&serde_norway::to_string(value).expect("JSON-like values serialise as YAML"))
}

/// A plain scalar that YAML 1.1 resolves to a boolean, null, or a sexagesimal number, and
/// YAML 1.2 to a string.
fn ambiguous_in_yaml_1_1(s: &str) -> bool {
    // `true`, `false` and `null` in their spellings are the same in both: serde_norway
    // already quotes such strings, so a plain one is a real boolean or null.
    const WORDS: [&str; 16] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    if WORDS.contains(&s) || s == "=" {
        return true;
    }
    // Base 60: `1:20`, `-190:20:30.15`.
    let digits = s.trim_start_matches(['-', '+']);
    let (int, _) = digits.split_once('.').unwrap_or((digits, ""));
    int.contains(':')
        && int
            .split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The length of the key at the start of `s`, a plain or quoted scalar followed by `:` and a
/// space or the end, if `s` is a mapping entry.
fn key_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let after_quote = match bytes.first()? {
        b'\'' => {
            let mut i = 1;
            loop {
                match bytes.get(i)? {
                    b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    b'\'' => break i + 1,
                    _ => i += 1,
                }
            }
        }
        b'"' => {
            let mut i = 1;
            loop {
                match bytes.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break i + 1,
                    _ => i += 1,
                }
            }
        }
        _ => {
            let at = s
                .find(": ")
                .or_else(|| s.ends_with(':').then(|| s.len() - 1))?;
            return Some(at);
        }
    };
    (s[after_quote..].starts_with(": ") || &s[after_quote..] == ":").then_some(after_quote)
}

fn quoted(scalar: &str) -> String {
    if ambiguous_in_yaml_1_1(scalar) {
        format!("'{scalar}'")
    } else {
        scalar.to_string()
    }
}

/// Quotes the plain scalars of block-style YAML (as serde_norway writes it) that YAML 1.1
/// reads differently. The content of literal and folded blocks is text, left alone.
pub fn quote_yaml_1_1(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 16);
    // Inside a block scalar: lines indented deeper than this belong to it.
    let mut block_parent: Option<usize> = None;
    for line in yaml.split_inclusive('\n') {
        let text = line.trim_end_matches('\n');
        let indent = text.len() - text.trim_start_matches(' ').len();
        if let Some(parent) = block_parent {
            if text.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block_parent = None;
        }
        let mut rest = &text[indent..];
        let mut prefix = text[..indent].to_string();
        while let Some(r) = rest.strip_prefix("- ") {
            prefix.push_str("- ");
            rest = r;
        }
        let (key, value) = match key_end(rest) {
            Some(end) => {
                let value = rest[end + 1..].trim_start();
                (Some(&rest[..end]), value)
            }
            None => (None, rest),
        };
        if value.starts_with('|') || value.starts_with('>') {
            block_parent = Some(indent);
        }
        out.push_str(&prefix);
        if let Some(key) = key {
            out.push_str(&quoted(key));
            out.push(':');
            if !value.is_empty() {
                out.push(' ');
            }
        }
        out.push_str(&quoted(value));
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn yaml_1_1_specials_are_quoted_and_nothing_else_changes() {
        let v = json!({
            "labels": {"a": "on", "b": "yes", "c": "N", "d": "off", "e": "1:20", "f": "=", "g": "ok"},
            "on": "key too",
            "list": ["on", "no", "- y", "x: on", "12:30:45.5"],
            "nested": [{"y": "n"}, ["on"]],
            "script": "line\nx: on\n  on\n",
            "lead": "  on\nno",
            "true": true,
            "t": "true",
            "empty": {},
            "quote": "it's on",
        });
        let yaml = to_string(&v);
        let expected = "\
empty: {}
labels:
  a: 'on'
  b: 'yes'
  c: 'N'
  d: 'off'
  e: '1:20'
  f: '='
  g: ok
lead: |2-
    on
  no
list:
- 'on'
- 'no'
- '- y'
- 'x: on'
- '12:30:45.5'
nested:
- 'y': 'n'
- - 'on'
'on': key too
quote: it's on
script: |
  line
  x: on
    on
t: 'true'
'true': true
";
        assert_eq!(yaml, expected);
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, v, "YAML 1.2 reads back the same");
    }

    #[test]
    fn what_needs_no_quotes_is_left_as_it_is() {
        for s in [
            "one", "yess", "onx", "1:2x", "12", "a:b", ":", "- -", "on off",
        ] {
            assert!(!ambiguous_in_yaml_1_1(s), "{s}");
        }
    }
}
