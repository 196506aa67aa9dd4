//! Every `env` array of a review cut down to the variables the policy reads, before serde
//! reads the review.
//!
//! The policy reads an environment variable for its name only, and only when that name says
//! a role ([`buildbot_policy::env_role`]): the view ([`crate::view`]) keeps those names and
//! skips the rest. serde_json still spends about 1,000 instructions on each variable read that
//! way (700 just to skip one), and a pod of 20 containers with 10 variables each spent a third
//! of its review there. This pass finds each `"env": [...]`, checks it at least as strictly as
//! serde would, and writes it back with only the variables whose name says a role, as
//! `{"name":"BUILDMASTER"}`. Everything else is copied byte for byte, so serde still reads
//! (and checks) all the rest.
//!
//! It only ever saves work. Anything it does not follow leaves the array as sent, and the
//! view reads that as before: an escape or control character in a key or a name, an element
//! that is not an object, a name that is neither a string nor null, text that is not UTF-8,
//! or any JSON error. Nothing else changes either: the view ignores an `env` array found
//! anywhere else (a key the view skips), cut or not, and when serde rejects the cut review,
//! the caller reads the review as sent, for the same answer and the same error.

use std::sync::LazyLock;

use buildbot_policy::env_role;

use crate::json_bytes::first_to_escape;
use memchr::memmem;

/// How deep a skipped value may nest before the pass leaves the review as sent.
const MAX_DEPTH: usize = 64;

/// The review with each well-formed `env` array cut down to the variables whose name says a
/// role; `None` when no array was cut (read the review as sent).
pub fn compact(body: &[u8]) -> Option<Vec<u8>> {
    static KEY: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new("\"env\""));
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for found in KEY.find_iter(body) {
        // In JSON, a quote is a string's delimiter unless an odd number of backslashes
        // escapes it; so `"env"` here is the string "env" (a bare `env` between two strings is
        // no JSON). Should the body not be JSON, serde rejects the cut review as it would
        // the review as sent: the bytes up to the array are the same.
        let backslashes = body[..found]
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if found < copied || backslashes % 2 == 1 {
            continue;
        }
        let colon = skip_ws(body, found + 5);
        if body.get(colon) != Some(&b':') {
            continue; // a value "env", not a key
        }
        let open = skip_ws(body, colon + 1);
        if body.get(open) != Some(&b'[') {
            continue;
        }
        let mut names = Vec::new();
        // Left as sent when not followed, or not UTF-8: serde reads the object as raw text
        // (so checks it is UTF-8) when the request's kind comes after it.
        let Some(close) = env_array(body, open, &mut names)
            .filter(|&close| std::str::from_utf8(&body[open..close]).is_ok())
        else {
            continue;
        };
        let out = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
        out.extend_from_slice(&body[copied..open]);
        out.push(b'[');
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"name":""#);
            out.extend_from_slice(name);
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
        copied = close;
    }
    let mut out = out?;
    out.extend_from_slice(&body[copied..]);
    Some(out)
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while matches!(b.get(at), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        at += 1;
    }
    at
}

/// Reads the array of environment variables that opens at `open`, pushing the names that
/// say a role, and returns the index just past its `]`; `None` for anything not followed.
fn env_array<'a>(b: &'a [u8], open: usize, names: &mut Vec<&'a [u8]>) -> Option<usize> {
    array(b, open, |at| {
        if b.get(at) != Some(&b'{') {
            return None;
        }
        let (next, name) = env_var(b, at)?;
        // The view keeps a name that says a role and is UTF-8 (the last `name` key counts).
        if let Some(name) = name.filter(|n| env_role(n).is_some() && std::str::from_utf8(n).is_ok())
        {
            names.push(name);
        }
        Some(next)
    })
}

/// Reads the variable (an object) that opens at `open`: the index just past its `}`, and the
/// value of its last `name` key (`None` for none or null).
fn env_var(b: &[u8], open: usize) -> Option<(usize, Option<&[u8]>)> {
    let mut name = None;
    let end = object(b, open, |key, at| {
        if key.contains(&b'\\') {
            return None; // the view would read the key unescaped
        }
        if key != b"name" {
            return skip_value(b, at, 0);
        }
        if let Some(after) = literal(b, at, b"null") {
            name = None;
            return Some(after);
        }
        let (value, after) = plain_string(b, at)?;
        name = Some(value);
        Some(after)
    })?;
    Some((end, name))
}

/// Reads the array that opens at `open`, each element with `element` (given where it starts,
/// it returns where it ends): the index just past the `]`.
fn array(b: &[u8], open: usize, mut element: impl FnMut(usize) -> Option<usize>) -> Option<usize> {
    let mut at = skip_ws(b, open + 1);
    if b.get(at) == Some(&b']') {
        return Some(at + 1);
    }
    loop {
        at = skip_ws(b, element(at)?);
        match b.get(at)? {
            b',' => at = skip_ws(b, at + 1),
            b']' => return Some(at + 1),
            _ => return None,
        }
    }
}

/// Reads the object that opens at `open`, each member with `member` (given its key as
/// written and where its value starts, it returns where the value ends): the index just past
/// the `}`. Keys are checked as serde_json skips a string.
fn object<'a>(
    b: &'a [u8],
    open: usize,
    mut member: impl FnMut(&'a [u8], usize) -> Option<usize>,
) -> Option<usize> {
    let mut at = skip_ws(b, open + 1);
    if b.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    loop {
        if b.get(at) != Some(&b'"') {
            return None;
        }
        let end = skip_string(b, at + 1)?;
        let key = &b[at + 1..end - 1];
        at = skip_ws(b, end);
        if b.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(b, member(key, skip_ws(b, at + 1))?);
        match b.get(at)? {
            b',' => at = skip_ws(b, at + 1),
            b'}' => return Some(at + 1),
            _ => return None,
        }
    }
}

/// A string at `at` with neither escapes nor control characters: its text, and the index just
/// past it.
fn plain_string(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let end = first_to_escape(b, at + 1);
    (b.get(end) == Some(&b'"')).then(|| (&b[at + 1..end], end + 1))
}

/// Checks the JSON value at `at` as serde_json does when it skips one, and returns the index
/// just past it.
fn skip_value(b: &[u8], at: usize, depth: usize) -> Option<usize> {
    match *b.get(at)? {
        b'"' => skip_string(b, at + 1),
        b'n' => literal(b, at, b"null"),
        b't' => literal(b, at, b"true"),
        b'f' => literal(b, at, b"false"),
        b'-' | b'0'..=b'9' => number(b, at),
        b'[' if depth < MAX_DEPTH => array(b, at, |at| skip_value(b, at, depth + 1)),
        b'{' if depth < MAX_DEPTH => object(b, at, |_, at| skip_value(b, at, depth + 1)),
        _ => None,
    }
}

/// A string whose text starts at `from`, checked as serde_json skips one (no control
/// characters, only JSON's escapes): the index just past its closing quote.
fn skip_string(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        at = first_to_escape(b, at);
        match *b.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => {
                at += match *b.get(at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if b.get(at + 2..at + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            _ => return None, // a control character
        }
    }
}

fn literal(b: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    b[at..].starts_with(word).then_some(at + word.len())
}

/// A number as JSON writes it (`-`, no leading zeros, fraction and exponent with digits):
/// the index just past it.
fn number(b: &[u8], mut at: usize) -> Option<usize> {
    let digits = |at: usize| {
        b.get(at..).map_or(0, |rest| {
            rest.iter().take_while(|c| c.is_ascii_digit()).count()
        })
    };
    if b.get(at) == Some(&b'-') {
        at += 1;
    }
    match b.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => at += digits(at),
        _ => return None,
    }
    if b.get(at) == Some(&b'.') {
        let n = digits(at + 1);
        if n == 0 {
            return None;
        }
        at += 1 + n;
    }
    if matches!(b.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(b.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let n = digits(at);
        if n == 0 {
            return None;
        }
        at += n;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(json: &str) -> Option<String> {
        compact(json.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn keeps_only_the_names_that_say_a_role() {
        assert_eq!(
            cut(r#"{"env": [ {"name":"PATH","value":"/bin"}, {"value":"m","name":"BUILDMASTER"},
                {"name":"WORKERNAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}} ], "x": 1}"#)
                .as_deref(),
            Some(r#"{"env": [{"name":"BUILDMASTER"},{"name":"WORKERNAME"}], "x": 1}"#)
        );
        assert_eq!(
            cut(r#"[{"env":[]},{"env":[{"name":"A"}]},{"env" : [{"name":"BUILDBOT_CONFIG_X"}]}]"#)
                .as_deref(),
            Some(r#"[{"env":[]},{"env":[]},{"env" : [{"name":"BUILDBOT_CONFIG_X"}]}]"#)
        );
        // The last `name` key counts, as in the view; null is no name.
        assert_eq!(
            cut(r#"{"env":[{"name":"BUILDMASTER","name":null},{"name":"A","name":"WORKERNAME"}]}"#)
                .as_deref(),
            Some(r#"{"env":[{"name":"WORKERNAME"}]}"#)
        );
    }

    #[test]
    fn leaves_what_it_does_not_follow_as_sent() {
        for json in [
            r#"{"a": "env", "b": ["env"]}"#,             // "env" as a value
            r#"{"env": null, "env2": []}"#,              // not an array
            r#"{"e\u006ev": [{"name":"A"}]}"#,           // an escaped key is not looked at
            r#"{"env": [{"name":"BUILD\u004dASTER"}]}"#, // an escaped name
            r#"{"env": [{"n\u0061me":"A"}]}"#,           // an escaped key inside
            r#"{"env": [1]}"#,                           // not an object
            r#"{"env": [{"name": 5}]}"#,                 // a name that is not a string
            r#"{"env": [{"name":"A","value":tru}]}"#,
            r#"{"env": [{"name":"A","value":01}]}"#,
            r#"{"env": [{"name":"A","value":"\x"}]}"#,
            r#"{"env": [{"name":"A","value":"a	b"}]}"#, // a tab: a control character
            r#"{"env": [{"name":"A",}]}"#,
            r#"{"env": [{"name":"A"},]}"#,
            r#"{"env": [{"name":"A"}"#,
            r#"{"a": "x\"env\": [{\"name\":\"A\"}]"}"#, // inside a string
        ] {
            assert_eq!(cut(json), None, "{json}");
        }
        // Not UTF-8 (as cargo fuzz found: a raw object must stay as invalid as it came).
        assert_eq!(compact(b"{\"env\": [{\"name\":\"A\x9f\"}]}"), None);
        // Only the arrays are checked: the rest is serde's to read (and reject), as sent.
        assert_eq!(
            cut(r#"{"env": [{"name":"A"}], "x": "unterminated"#).as_deref(),
            Some(r#"{"env": [], "x": "unterminated"#)
        );
    }

    #[test]
    fn skips_every_kind_of_value_serde_accepts() {
        let json = r#"{"env":[{"name":"PATH","v":[-0.5e+3, 0, 12, 1E9, true, false, null, {}, [], "\"\\\/\b\f\n\r\t\u00e9 é", {"k": [{"l": {}}]}]}]}"#;
        assert_eq!(cut(json).as_deref(), Some(r#"{"env":[]}"#));
        let deep = format!(
            r#"{{"env":[{{"v":{}1{}}}]}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert_eq!(
            cut(&deep),
            None,
            "nesting beyond the limit is left to serde"
        );
    }
}
