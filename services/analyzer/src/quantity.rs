//! Kubernetes quantities, parsed without panicking (Dorgu's `MustParse` crashed its reconciler
//! on a bad persona): `Err` names what is wrong instead.

/// Parses a quantity into its value in base units (cores for CPU, bytes for memory).
pub fn parse(q: &str) -> Result<f64, String> {
    let s = q.trim();
    if s.is_empty() {
        return Err("empty quantity".into());
    }
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, factor) =
        SUFFIXES.iter().find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f))).unwrap_or((s, 1.0));
    let valid = !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'))
        && num.chars().next().is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-'));
    let value: f64 = if valid {
        num.parse().map_err(|_| format!("`{q}` is not a Kubernetes quantity"))?
    } else {
        return Err(format!("`{q}` is not a Kubernetes quantity"));
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{q}` is not a non-negative quantity"));
    }
    Ok(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory() {
        assert_eq!(parse("500m").unwrap(), 0.5);
        assert_eq!(parse("2").unwrap(), 2.0);
        assert_eq!(parse("1Gi").unwrap(), 1_073_741_824.0);
        assert_eq!(parse("512Mi").unwrap(), 536_870_912.0);
        assert_eq!(parse("1e3").unwrap(), 1000.0);
        for bad in ["", "lots", "Gi", "1.2.3Mi", "-1", "1Qi"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
