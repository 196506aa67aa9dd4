//! Kubernetes resource quantities, parsed just enough to compare them.

/// The value of a quantity in base units (cores, bytes), or `None` when it is not one.
/// Accepts decimal SI (`m`, `k`, `M`, `G`, `T`, `P`, `E`), binary SI (`Ki` … `Ei`) and
/// exponents (`1e3`), as the API server does.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() || number == "." {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let value = number * factor;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_forms_kubernetes_accepts() {
        for (q, v) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("1Gi", 1073741824.0),
            ("512Mi", 536870912.0),
            ("1G", 1e9),
            ("1e3", 1000.0),
            ("100k", 1e5),
            ("0", 0.0),
        ] {
            assert_eq!(parse(q), Some(v), "{q}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for q in ["", "lots", "1Zi", "-1", "m", ".", "1.2.3", "1ee"] {
            assert_eq!(parse(q), None, "{q}");
        }
    }
}
