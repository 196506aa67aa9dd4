//! The bytes a JSON string cannot hold as they are: `"`, `\` and control characters. The
//! webhook's reader looks for them to find where a string ends ([`crate::env_compact`]), its
//! writer to copy the text between them whole ([`write_str`]: the patch, the audit
//! annotations and warnings of a response).

/// The index of the first `"`, `\` or control character at or after `at`, or `b.len()`.
///
/// Eight bytes at a time, as serde_json's reader looks for them (Mycroft's has-less-than): a
/// byte below 0x20 (or, once xored, equal to `"` or `\`) borrows in the subtraction and sets
/// its high bit; bytes from 0x80 up are masked out, and a borrow only runs upwards, so the
/// lowest byte flagged is the first such byte.
pub(crate) fn first_to_escape(b: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    let less_than = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w;
    while let Some(chunk) = b.get(at..at + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = (less_than(w, 0x20)
            | less_than(w ^ (ONES * u64::from(b'"')), 1)
            | less_than(w ^ (ONES * u64::from(b'\\')), 1))
            & (ONES << 7);
        if found != 0 {
            return at + found.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + b
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&c| c >= 0x20 && c != b'"' && c != b'\\')
        .count()
}

/// Appends `s` as a JSON string, quotes included, byte for byte as serde_json writes it: the
/// runs between bytes to escape are copied whole (serde_json looks at each byte in turn).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let at = first_to_escape(b, start);
        out.extend_from_slice(&b[start..at]);
        let Some(&c) = b.get(at) else { break };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]),
        }
        start = at + 1;
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_quote_backslash_or_control_character() {
        for len in 0..20 {
            for at in 0..=len {
                for c in [b'"', b'\\', b'\n', 0x1f, 0] {
                    let mut b = vec![0xc3; len];
                    if at < len {
                        b[at] = c;
                        b.iter_mut().skip(at + 1).for_each(|x| *x = b'"');
                    }
                    assert_eq!(first_to_escape(&b, 0), at, "{c:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn strings_are_written_as_serde_writes_them() {
        let mut cases: Vec<String> = (0..=0x7fu8)
            .map(|c| format!("a{}b", char::from(c)))
            .collect();
        cases.extend(
            [
                "",
                "plain",
                "\"",
                "\\",
                "é ü \u{1f600}",
                "line\nnext\ttab \"quoted\" \\ end\u{1}",
            ]
            .map(String::from),
        );
        cases.push("x\"".repeat(40));
        for s in cases {
            let mut out = vec![b'!'];
            write_str(&mut out, &s);
            assert_eq!(out[1..], serde_json::to_vec(&s).unwrap()[..], "{s:?}");
        }
    }

    #[test]
    fn a_string_needs_escaping_exactly_when_json_says() {
        let needs_escape = |s: &[u8]| first_to_escape(s, 0) < s.len();
        for b in 0..=255u8 {
            let must = b < 0x20 || b == b'"' || b == b'\\';
            for at in 0..19 {
                // Next to bytes from 0x80 up too, which must not hide it or be taken for it.
                for filler in [b'a', 0xc3, 0xff] {
                    let mut s = vec![filler; 19];
                    s[at] = b;
                    assert_eq!(
                        needs_escape(&s),
                        must,
                        "byte {b:#x} at {at} among {filler:#x}"
                    );
                }
            }
        }
        assert!(!needs_escape(b""));
        assert!(!needs_escape("é ü /~ \u{7f} \u{1f600}".as_bytes()));
    }
}
