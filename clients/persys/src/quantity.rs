//! Resource quantities as people write them: CPU in cores or millicores (`500m`, `0.5`, `2`)
//! and memory in bytes with decimal or binary suffixes (`256Mi`, `1G`, `1.5Gi`, `512MB`).

/// The largest number of fractional digits accepted (more cannot matter for bytes or millis).
const MAX_DECIMALS: u32 = 9;

/// A non-negative decimal number as `mantissa / 10^decimals`.
struct Decimal {
    mantissa: u128,
    decimals: u32,
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    let decimals = u32::try_from(frac.len()).ok().filter(|d| *d <= MAX_DECIMALS)?;
    let mut mantissa: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    Some(Decimal { mantissa, decimals })
}

/// Returns `d * multiplier`, rounded up to a whole unit, if it fits an `i64`.
fn scale_ceil(d: &Decimal, multiplier: u128) -> Option<i64> {
    let divisor = 10u128.pow(d.decimals);
    let product = d.mantissa.checked_mul(multiplier)?;
    i64::try_from(product.div_ceil(divisor)).ok()
}

/// Parses a CPU amount into millicores: `500m`, `0.5`, `2`, `1.25`.
pub fn parse_cpu(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let usage = || format!("`{s}` is not a CPU amount: use cores (`1`, `0.5`) or millicores (`500m`)");
    let (number, multiplier) = match s.strip_suffix('m') {
        Some(n) => (n, 1),
        None => (s, 1000),
    };
    let d = parse_decimal(number).ok_or_else(usage)?;
    let exact = d.mantissa.checked_mul(multiplier).ok_or_else(usage)?;
    if exact % 10u128.pow(d.decimals) != 0 {
        return Err(format!("`{s}` is finer than CPU's precision of 1m (0.001 cores)"));
    }
    scale_ceil(&d, multiplier).ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses a memory or disk amount into bytes: `1048576`, `256Mi`, `1G`, `1.5Gi`, `512MB`.
/// Fractions of a byte round up.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u128 = match unit.strip_suffix('B').unwrap_or(unit) {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}`; use a number of bytes or a suffix: Ki, Mi, Gi, Ti (1024) or k, M, G, T (1000)"
            ));
        }
    };
    let d = parse_decimal(number).ok_or_else(|| format!("`{s}` is not an amount like 256Mi, 1G or 1.5Gi"))?;
    scale_ceil(&d, multiplier).ok_or_else(|| format!("`{s}` is too large"))
}

/// Formats millicores the way `parse_cpu` reads them: `2`, `1.5`, `250m`.
pub fn format_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else if millis % 100 == 0 && millis > 1000 {
        format!("{:.1}", millis as f64 / 1000.0)
    } else {
        format!("{millis}m")
    }
}

/// Formats bytes with the largest binary unit that keeps the number at least 1: `256Mi`,
/// `1.5Gi`, `512`.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [(&str, i64); 5] =
        [("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return if bytes % size == 0 {
                format!("{}{unit}", bytes / size)
            } else {
                let v = bytes as f64 / size as f64;
                format!("{}{unit}", trim_float(v))
            };
        }
    }
    bytes.to_string()
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn cpu_reads_cores_and_millicores() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("1.25"), Ok(1250));
        assert_eq!(parse_cpu(".5"), Ok(500));
        assert_eq!(parse_cpu("0"), Ok(0));
        assert_eq!(parse_cpu(" 1 "), Ok(1000));
    }

    #[test]
    fn cpu_refuses_garbage_and_sub_millicore_precision() {
        for bad in ["", "m", "-1", "1.2.3", "abc", "1c", "0.5m", "1e3", "."] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
        assert!(parse_cpu("0.0005").unwrap_err().contains("precision"));
        assert!(parse_cpu("99999999999999999999999").is_err());
    }

    #[test]
    fn bytes_read_decimal_and_binary_units() {
        assert_eq!(parse_bytes("256Mi"), Ok(256 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("512MB"), Ok(512_000_000));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("100B"), Ok(100));
        assert_eq!(parse_bytes("1k"), Ok(1000));
        // Fractions of a byte round up rather than silently reserving less.
        assert_eq!(parse_bytes("0.3Ki"), Ok(308));
    }

    #[test]
    fn bytes_name_the_unknown_unit() {
        let e = parse_bytes("12XB").unwrap_err();
        assert!(e.contains("unknown unit `XB`"), "{e}");
        for bad in ["", "Mi", "-1Mi", "1..5Gi", "1 Gi", "1mi", "9999999999Pi"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        assert_eq!(format_cpu(500), "500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(1500), "1.5");
        assert_eq!(format_bytes(256 << 20), "256Mi");
        assert_eq!(format_bytes(3 << 29), "1.5Gi");
        assert_eq!(format_bytes(512), "512");
        for millis in [0, 1, 250, 1000, 1500, 2000, 12_345] {
            assert_eq!(parse_cpu(&format_cpu(millis)), Ok(millis));
        }
        for bytes in [0, 1023, 1 << 10, 256 << 20, 3 << 29, 5 << 40] {
            assert_eq!(parse_bytes(&format_bytes(bytes)), Ok(bytes));
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_cpu(&s);
            let _ = parse_bytes(&s);
        }

        #[test]
        fn numeric_looking_input_never_panics(s in "[0-9.]{0,30}[mkKMGTPiB]{0,3}") {
            let _ = parse_cpu(&s);
            let _ = parse_bytes(&s);
        }
    }
}
