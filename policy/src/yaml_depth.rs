//! A guard in front of the YAML parser. libyaml's scanner (which serde_norway uses) checks
//! every pending simple key at each token, so flow collections nested N deep (`{a: {a: ...`)
//! cost O(N²) before serde's recursion limit (128) ever sees them: 4,000 levels took 51 ms,
//! 8,000 took 220 ms, and a test with 100,000 (a 400 KB file) had not finished after ten
//! minutes. Nothing legitimate nests flow collections that deep, so a cheap linear scan
//! refuses such input before it reaches the parser.

/// The deepest flow nesting serde's recursion limit accepts anyway.
pub const MAX_FLOW_DEPTH: usize = 128;

/// The first line at which `text` nests `[`/`{` flow collections deeper than
/// [`MAX_FLOW_DEPTH`], if it does. Quoted scalars and comments are skipped; brackets inside
/// plain or block scalars count, which only matters for text with more than 128 unclosed
/// brackets.
pub fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' if previous.is_whitespace() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '\'' | '"' if matches!(previous, ' ' | '\t' | '\n' | '[' | '{' | ',' | ':') => {
                // A quoted scalar: to its closing quote (`''` and `\"` escape).
                while let Some(q) = chars.next() {
                    match q {
                        '\n' => line += 1,
                        '\\' if c == '"' => {
                            chars.next();
                        }
                        _ if q == c && c == '\'' && chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        _ if q == c => break,
                        _ => {}
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_and_everything_else_passes() {
        assert_eq!(too_deep(&"{a: ".repeat(200)), Some(1));
        assert_eq!(too_deep(&format!("x: 1\ny: {}", "[".repeat(129))), Some(2));
        assert_eq!(too_deep(&"[".repeat(128)), None);
        // Balanced brackets in a script, brackets in quotes and comments.
        let script = format!("run: |\n  {}\n", "f() { g() { :; }; }; ".repeat(100));
        assert_eq!(too_deep(&script), None);
        assert_eq!(
            too_deep(&format!(
                "a: '{}'\nb: \"{}\"\n# {}\n",
                "[".repeat(300),
                "{".repeat(300),
                "[".repeat(300)
            )),
            None
        );
        assert_eq!(too_deep("a: 'it''s [' \nb: \"say \\\"{\\\"\"\n"), None);
    }
}
