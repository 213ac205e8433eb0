//! Compose resource amounts to Kubernetes quantities.

/// Converts compose `cpus` (`0.5`, `"2"`) to a CPU quantity (`500m`, `2`).
pub fn cpus(s: &str) -> Result<String, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("cpus `{s}` is not a number like 0.5"))?;
    if !(v > 0.0 && v <= 1024.0) {
        return Err(format!("cpus `{s}` must be between 0 and 1024"));
    }
    let milli = (v * 1000.0).round() as u64;
    Ok(if milli.is_multiple_of(1000) { (milli / 1000).to_string() } else { format!("{milli}m") })
}

/// Converts a compose memory amount (`512M`, `1g`, `1.5GB`, `268435456`) to `Mi`/`Gi`.
pub fn memory(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, factor): (&str, f64) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024.0),
        Some('m') => (&t[..t.len() - 1], 1024.0 * 1024.0),
        Some('g') => (&t[..t.len() - 1], 1024.0 * 1024.0 * 1024.0),
        Some('t') => (&t[..t.len() - 1], 1024f64.powi(4)),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("memory `{s}` is not an amount like 512M or 1G"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("memory `{s}` must be positive"));
    }
    let mib = (v * factor / (1024.0 * 1024.0)).ceil() as u64;
    if mib == 0 || mib > 64 * 1024 * 1024 {
        return Err(format!("memory `{s}` is out of range"));
    }
    Ok(if mib.is_multiple_of(1024) { format!("{}Gi", mib / 1024) } else { format!("{mib}Mi") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(cpus("0.5").unwrap(), "500m");
        assert_eq!(cpus("2").unwrap(), "2");
        assert_eq!(cpus("0.25").unwrap(), "250m");
        assert!(cpus("lots").is_err() && cpus("0").is_err());
        assert_eq!(memory("512M").unwrap(), "512Mi");
        assert_eq!(memory("1g").unwrap(), "1Gi");
        assert_eq!(memory("1.5GB").unwrap(), "1536Mi");
        assert_eq!(memory("268435456").unwrap(), "256Mi");
        assert!(memory("big").is_err());
    }
}
