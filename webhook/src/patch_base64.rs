//! The patch as an AdmissionResponse carries it: RFC 6902 JSON, base64'd (Go's `[]byte`).
//!
//! Written straight into the response buffer, without a JSON copy of the patch. Every
//! worker's patch carries the same long strings (the preStop hook's script is 4 KB): escaping
//! them for JSON and base64'ing them was half the cost of a worker's review. So a string of
//! at least [`LONG`] bytes is escaped and base64'd once per thread and copied afterwards. Base64
//! maps three bytes to four characters, so a copy is only valid at a multiple of three bytes
//! into the patch: the JSON gets one or two spaces before and after such a string (between
//! tokens, where JSON allows whitespace), and the API server reads the same patch.
//!
//! The encoder is `base64-simd`'s (SSSE3 or AVX2, chosen at run time; plain code elsewhere):
//! the `base64` crate's, a table look-up for every six bits, was 7% of a worker's review.

use std::cell::RefCell;

use base64_simd::{Out, STANDARD};
use json_patch::{Patch, PatchOperation};
use serde_json::Value;

/// Strings this long or longer are encoded once per thread (the policy's own: a patch holds
/// no user string this long).
pub const LONG: usize = 512;
/// How many long strings a thread keeps; the oldest goes first.
const KEPT: usize = 8;

/// A long string as the patch carries it: JSON-escaped with its quotes, padded with spaces
/// to a multiple of three bytes, base64'd.
struct Encoded {
    text: String,
    base64: Vec<u8>,
}

#[derive(Default)]
struct Scratch {
    /// Patch JSON not yet base64'd.
    json: Vec<u8>,
    kept: Vec<Encoded>,
    /// Where the next long string goes in `kept` once it is full.
    next: usize,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Appends `patch` as base64'd JSON to `out`.
pub fn write(patch: &Patch, out: &mut Vec<u8>) {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.json.clear();
        let mut w = Writer { scratch, out };
        w.patch(patch);
        w.flush(true);
    });
}

struct Writer<'a> {
    scratch: &'a mut Scratch,
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn patch(&mut self, patch: &Patch) {
        self.scratch.json.push(b'[');
        for (i, op) in patch.0.iter().enumerate() {
            if i > 0 {
                self.scratch.json.push(b',');
            }
            match op {
                PatchOperation::Add(add) => {
                    self.scratch
                        .json
                        .extend_from_slice(br#"{"op":"add","path":"#);
                    self.short_string(add.path.as_str());
                    self.scratch.json.extend_from_slice(br#","value":"#);
                    self.value(&add.value);
                    self.scratch.json.push(b'}');
                }
                // The policy only adds; any other operation is written as serde writes it.
                other => serde_json::to_writer(&mut self.scratch.json, other)
                    .expect("a patch operation always serialises"),
            }
        }
        self.scratch.json.push(b']');
    }

    /// Writes `v` as `serde_json::to_writer` would (maps in key order), long strings aside.
    fn value(&mut self, v: &Value) {
        match v {
            Value::String(s) if s.len() >= LONG => self.long_string(s),
            Value::Array(items) => {
                self.scratch.json.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.scratch.json.push(b',');
                    }
                    self.value(item);
                }
                self.scratch.json.push(b']');
            }
            Value::Object(map) => {
                self.scratch.json.push(b'{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.scratch.json.push(b',');
                    }
                    self.short_string(key);
                    self.scratch.json.push(b':');
                    self.value(item);
                }
                self.scratch.json.push(b'}');
            }
            Value::String(s) => self.short_string(s),
            scalar => serde_json::to_writer(&mut self.scratch.json, scalar)
                .expect("a JSON scalar always serialises"),
        }
    }

    /// Writes `s` as a JSON string, as serde writes it.
    fn short_string(&mut self, s: &str) {
        crate::json_bytes::write_str(&mut self.scratch.json, s);
    }

    /// Pads the JSON so far to a multiple of three bytes, base64s it, then copies the long
    /// string's base64, encoding it first if this thread has not yet.
    fn long_string(&mut self, s: &str) {
        self.flush(false);
        let scratch = &mut *self.scratch;
        let at = match scratch.kept.iter().position(|e| e.text == s) {
            Some(at) => at,
            None => {
                let mut json = serde_json::to_vec(s).expect("a string always serialises");
                json.resize(json.len().next_multiple_of(3), b' ');
                let encoded = Encoded {
                    text: s.to_owned(),
                    base64: STANDARD.encode_type::<Vec<u8>>(&json),
                };
                if scratch.kept.len() < KEPT {
                    scratch.kept.push(encoded);
                    scratch.kept.len() - 1
                } else {
                    let at = scratch.next;
                    scratch.kept[at] = encoded;
                    scratch.next = (at + 1) % KEPT;
                    at
                }
            }
        };
        self.out.extend_from_slice(&scratch.kept[at].base64);
    }

    /// Base64s the pending JSON into `out`: all of it with `=` padding when `last`, else
    /// padded with spaces to a multiple of three bytes so that more can follow.
    fn flush(&mut self, last: bool) {
        let json = &mut self.scratch.json;
        if !last {
            json.resize(json.len().next_multiple_of(3), b' ');
        }
        let at = self.out.len();
        self.out.resize(at + STANDARD.encoded_length(json.len()), 0);
        let _ = STANDARD.encode(json, Out::from_slice(&mut self.out[at..]));
        json.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn decoded(patch: &Patch) -> Vec<u8> {
        let mut out = Vec::new();
        write(patch, &mut out);
        // Read back by the other crate's decoder.
        base64::engine::general_purpose::STANDARD
            .decode(out)
            .expect("valid base64")
    }

    fn patch(ops: Value) -> Patch {
        serde_json::from_value(ops).unwrap()
    }

    #[test]
    fn short_patches_are_exactly_what_serde_writes() {
        let p = patch(json!([
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "buildbot"},
            {"op": "add", "path": "/spec/x", "value": {"b": [1, 2.5, true, null], "a": "é\"\n"}},
            {"op": "remove", "path": "/spec/y"},
        ]));
        assert_eq!(decoded(&p), serde_json::to_vec(&p).unwrap());
        assert_eq!(decoded(&Patch(Vec::new())), b"[]");
    }

    #[test]
    fn long_strings_at_every_alignment_give_the_same_patch_the_first_time_and_after() {
        let long: String = "line with \"quotes\", a tab\t and ü\n".repeat(LONG / 8);
        for pad in 0..6 {
            let p = patch(json!([
                {"op": "add", "path": format!("/{}", "p".repeat(pad)),
                 "value": {"command": ["sh", long, "x".repeat(pad)], "z": long}},
                {"op": "add", "path": "/last", "value": long},
            ]));
            for _ in 0..2 {
                let json = decoded(&p);
                let back: Value = serde_json::from_slice(&json).unwrap();
                assert_eq!(back, serde_json::to_value(&p).unwrap(), "pad {pad}");
                let extra = json.len() - serde_json::to_vec(&p).unwrap().len();
                assert!(extra <= 3 * 4, "at most two spaces around each long string");
            }
        }
    }

    #[test]
    fn strings_that_need_escapes_are_written_as_serde_writes_them() {
        let p =
            patch(json!([{"op": "add", "path": "/a\"b", "value": {"k\\": ["\u{1}", "plain é"]}}]));
        assert_eq!(decoded(&p), serde_json::to_vec(&p).unwrap());
    }

    #[test]
    fn a_thread_keeps_a_bounded_number_of_long_strings() {
        for i in 0..3 * KEPT {
            let s = format!("{i}{}", "x".repeat(LONG));
            let p = patch(json!([{"op": "add", "path": "/a", "value": s}]));
            let back: Value = serde_json::from_slice(&decoded(&p)).unwrap();
            assert_eq!(back[0]["value"], s);
        }
        SCRATCH.with_borrow(|s| assert_eq!(s.kept.len(), KEPT));
    }
}
