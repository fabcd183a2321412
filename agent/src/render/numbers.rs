//! Bounded numbers read from compose files: whole numbers within a range, sizes, durations, CPUs, file
//! modes and user/group ids. A value out of its range is a problem at the key's file and line — never a
//! wrap, a saturation or a panic — and a message names the key and the bound, never the value (it may
//! have come from an environment variable).
//!
//! Layer: value readers (see the table in `render`).

use super::lines::Seg;
use super::values::{type_name, Ctx};
use serde_yaml::Value;
use std::num::IntErrorKind;
use std::time::Duration;

/// The most CPUs a `cpus:` limit may ask for (the engine refuses more than the host has anyway).
pub const MAX_CPUS: f64 = 1024.0;

/// Why a number could not be read. The text is made for a problem that already names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("must be a whole number{}", not(.found))]
    NotWhole { found: Option<&'static str> },
    #[error("must be between {min} and {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("must be a size like 512m or 1g{}", not(.found))]
    NotSize { found: Option<&'static str> },
    #[error(
        "is larger than the largest size the engine takes ({} bytes)",
        i64::MAX
    )]
    SizeTooLarge,
    #[error("must be a duration like 30s, 1m30s or 500ms, no longer than the agent accepts{}", not(.found))]
    NotDuration { found: Option<&'static str> },
    #[error("is longer than the longest duration the engine takes (about 292 years)")]
    DurationTooLong,
    #[error("must be 0 or at least 1ms")]
    DurationTooShort,
    #[error("must be a number of CPUs like 0.5{}", not(.found))]
    NotCpus { found: Option<&'static str> },
    #[error("must be 0 (no limit) or between 0.01 and {MAX_CPUS} CPUs")]
    CpusOutOfRange,
    #[error("must be a file mode like \"0440\"{}", not(.found))]
    NotMode { found: Option<&'static str> },
    #[error("must be a file mode between 0 and 07777")]
    ModeOutOfRange,
}

/// `, not a list` when the value was a collection (or another type worth naming); nothing for text.
fn not(found: &Option<&'static str>) -> String {
    found.map(|f| format!(", not {f}")).unwrap_or_default()
}

/// The type to name in a message when `v` is not text or a number.
fn found(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(_) | Value::Number(_) => None,
        other => Some(type_name(other)),
    }
}

/// A whole number, from a YAML integer or a string. Magnitudes past i128 come back as i128's bounds,
/// so the caller's range check refuses them.
fn whole(v: &Value) -> Result<i128, NumberError> {
    let not_whole = NumberError::NotWhole { found: found(v) };
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(i.into()),
            (None, Some(u)) => Ok(u.into()),
            _ => Err(not_whole),
        },
        Value::String(s) => match s.trim().parse::<i128>() {
            Ok(n) => Ok(n),
            Err(e) => match e.kind() {
                IntErrorKind::PosOverflow => Ok(i128::MAX),
                IntErrorKind::NegOverflow => Ok(i128::MIN),
                _ => Err(not_whole),
            },
        },
        _ => Err(not_whole),
    }
}

/// A whole number in `min..=max`.
pub fn parse_int(v: &Value, min: i64, max: i64) -> Result<i64, NumberError> {
    let n = whole(v)?;
    if n < i128::from(min) || n > i128::from(max) {
        return Err(NumberError::OutOfRange { min, max });
    }
    i64::try_from(n).map_err(|_| NumberError::OutOfRange { min, max })
}

/// A size in bytes: a whole number, or a number with a unit `b`, `k`, `m`, `g`, `t`, `p` (powers of
/// 1024, optionally followed by `i` and/or `b`, case-insensitive), the way Compose reads `mem_limit:
/// 512m` or `shm_size: 1gb`. At most `i64::MAX`, the engine's type.
pub fn parse_bytes(v: &Value) -> Result<i64, NumberError> {
    match v {
        Value::Number(_) => match whole(v) {
            Ok(n) if n < 0 => Err(NumberError::OutOfRange {
                min: 0,
                max: i64::MAX,
            }),
            Ok(n) => i64::try_from(n).map_err(|_| NumberError::SizeTooLarge),
            Err(_) => Err(NumberError::NotSize { found: None }),
        },
        Value::String(s) => parse_size(s),
        other => Err(NumberError::NotSize {
            found: found(other),
        }),
    }
}

/// The text form of [`parse_bytes`].
pub fn parse_size(s: &str) -> Result<i64, NumberError> {
    let bad = NumberError::NotSize { found: None };
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let (power, rest) = match unit.chars().next() {
        Some('k') => (1, &unit[1..]),
        Some('m') => (2, &unit[1..]),
        Some('g') => (3, &unit[1..]),
        Some('t') => (4, &unit[1..]),
        Some('p') => (5, &unit[1..]),
        _ => (0, unit),
    };
    let rest = rest.strip_prefix('i').filter(|_| power > 0).unwrap_or(rest);
    if !matches!(rest, "" | "b") {
        return Err(bad);
    }
    let factor: u64 = 1u64 << (10 * power);
    match num.split_once('.') {
        None => {
            if num.is_empty() {
                return Err(bad);
            }
            // Only digits here: the one way to fail is a number too large for u64.
            let n: u64 = num.parse().map_err(|_| NumberError::SizeTooLarge)?;
            let bytes = n.checked_mul(factor).ok_or(NumberError::SizeTooLarge)?;
            i64::try_from(bytes).map_err(|_| NumberError::SizeTooLarge)
        }
        Some((whole, frac)) => {
            if whole.is_empty() || frac.is_empty() || frac.contains('.') {
                return Err(bad);
            }
            let n: f64 = num.parse().map_err(|_| bad)?;
            // The factor is a power of two up to 2^50: exact in f64.
            let bytes = n * factor as f64;
            // 2^63 is the first value that does not fit; every f64 below it converts exactly.
            if bytes.is_finite() && (0.0..9_223_372_036_854_775_808.0).contains(&bytes) {
                Ok(bytes.floor() as i64)
            } else {
                Err(NumberError::SizeTooLarge)
            }
        }
    }
}

/// A Go-style duration (`1m30s`, `500ms`) or a number of seconds, read by
/// [`crate::config::parse_duration`], no longer than the engine's `int64` nanoseconds.
pub fn parse_duration(v: &Value) -> Result<Duration, NumberError> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(NumberError::NotDuration {
                found: found(other),
            })
        }
    };
    let d = crate::config::parse_duration(&text)
        .map_err(|_| NumberError::NotDuration { found: None })?;
    duration_nanos(d)?;
    Ok(d)
}

/// A duration as the engine's `int64` nanoseconds.
pub fn duration_nanos(d: Duration) -> Result<i64, NumberError> {
    i64::try_from(d.as_nanos()).map_err(|_| NumberError::DurationTooLong)
}

/// `cpus: 0.5` → nano CPUs. 0 means no limit; otherwise between 0.01 and [`MAX_CPUS`], the engine's
/// own lower bound.
pub fn parse_cpus(v: &Value) -> Result<i64, NumberError> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or(NumberError::NotCpus { found: found(v) })?;
    if !f.is_finite() {
        return Err(NumberError::CpusOutOfRange);
    }
    if f == 0.0 {
        return Ok(0);
    }
    if !(0.01..=MAX_CPUS).contains(&f) {
        return Err(NumberError::CpusOutOfRange);
    }
    // At most 1024e9: far inside i64.
    Ok((f * 1e9).round() as i64)
}

/// A file mode: an octal string (`"0440"`, `"0o440"`, `"440"`) or a YAML number taken as it is
/// (`0o440` is 288), at most `0o7777`.
pub fn parse_mode(v: &Value) -> Result<u32, NumberError> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix("0o").unwrap_or(t);
            if digits.is_empty() || !digits.chars().all(|c| matches!(c, '0'..='7')) {
                return Err(NumberError::NotMode { found: None });
            }
            let significant = digits.trim_start_matches('0');
            if significant.len() > 4 {
                return Err(NumberError::ModeOutOfRange);
            }
            if significant.is_empty() {
                return Ok(0);
            }
            u32::from_str_radix(significant, 8).map_err(|_| NumberError::ModeOutOfRange)
        }
        Value::Number(n) => match n.as_u64() {
            Some(m) if m <= 0o7777 => u32::try_from(m).map_err(|_| NumberError::ModeOutOfRange),
            Some(_) => Err(NumberError::ModeOutOfRange),
            None if n.as_i64().is_some() => Err(NumberError::ModeOutOfRange),
            None => Err(NumberError::NotMode { found: None }),
        },
        other => Err(NumberError::NotMode {
            found: found(other),
        }),
    }
}

/// A numeric user or group id (`uid`, `gid`), 0 to `u32::MAX`.
pub fn parse_id(v: &Value) -> Result<u32, NumberError> {
    let n = parse_int(v, 0, i64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| NumberError::OutOfRange {
        min: 0,
        max: i64::from(u32::MAX),
    })
}

fn report<T>(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    r: Result<T, NumberError>,
) -> Option<T> {
    match r {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.err(service, path, e);
            None
        }
    }
}

/// A whole number in `min..=max`, or a problem at `path`.
pub(super) fn int_in(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
    min: i64,
    max: i64,
) -> Option<i64> {
    report(ctx, service, path, parse_int(v, min, max))
}

/// A size in bytes ([`parse_bytes`]), or a problem at `path`.
pub(super) fn bytes(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<i64> {
    report(ctx, service, path, parse_bytes(v))
}

/// A duration ([`parse_duration`]), or a problem at `path`.
pub(super) fn duration(
    ctx: &mut Ctx,
    service: Option<&str>,
    path: &[Seg],
    v: &Value,
) -> Option<Duration> {
    report(ctx, service, path, parse_duration(v))
}

/// Nano CPUs ([`parse_cpus`]), or a problem at `path`.
pub(super) fn cpus(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<i64> {
    report(ctx, service, path, parse_cpus(v))
}

/// A file mode ([`parse_mode`]), or a problem at `path`.
pub(super) fn mode(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<u32> {
    report(ctx, service, path, parse_mode(v))
}

/// A user or group id ([`parse_id`]), or a problem at `path`.
pub(super) fn id(ctx: &mut Ctx, service: Option<&str>, path: &[Seg], v: &Value) -> Option<u32> {
    report(ctx, service, path, parse_id(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }
    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    #[test]
    fn whole_numbers_are_bounded_not_wrapped() {
        assert_eq!(parse_int(&y("42"), 0, 100), Ok(42));
        assert_eq!(parse_int(&s(" 7 "), 0, 100), Ok(7));
        assert_eq!(parse_int(&s("-1"), -1, 100), Ok(-1));
        let range = Err(NumberError::OutOfRange { min: 0, max: 100 });
        for v in [
            y("101"),
            y("-1"),
            y("18446744073709551615"),
            y("0x7fffffff"),
            s("99999999999999999999"),
            s("-99999999999999999999999999999999999999999999"),
        ] {
            assert_eq!(parse_int(&v, 0, 100), range, "{v:?}");
        }
        for v in [s("1e400"), s("1.5"), y("1.5"), s(""), s("0x10"), y(".inf")] {
            assert_eq!(
                parse_int(&v, 0, 100),
                Err(NumberError::NotWhole { found: None }),
                "{v:?}"
            );
        }
        assert_eq!(
            parse_int(&y("[1]"), 0, 100),
            Err(NumberError::NotWhole {
                found: Some("a list")
            })
        );
        assert_eq!(
            parse_int(&y("[1]"), 0, 100).unwrap_err().to_string(),
            "must be a whole number, not a list"
        );
    }

    #[test]
    fn sizes_are_exact_and_bounded() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1 gb"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("2p"), Ok(2 << 50));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("9223372036854775807"), Ok(i64::MAX));
        // The largest fraction below 2^63 converts exactly, without saturating.
        assert_eq!(parse_size("8191.99999p"), Ok(9_223_372_025_595_777_024));
        assert_eq!(parse_bytes(&y("1048576")), Ok(1 << 20));
        for t in [
            "99999999999999999999g",
            "99999999999999999999",
            "9223372036854775808",
            "8388608t",
            "8192p",
            "8192.0p",
        ] {
            assert_eq!(parse_size(t), Err(NumberError::SizeTooLarge), "{t}");
        }
        for t in [
            "", "m", "-1", "1x", "1.m", ".5m", "1.2.3m", "1e400", "1kk", "1ib", "+5",
        ] {
            assert_eq!(
                parse_size(t),
                Err(NumberError::NotSize { found: None }),
                "{t}"
            );
        }
        assert!(parse_bytes(&y("-1")).is_err());
        assert!(parse_bytes(&y("1.5")).is_err());
        assert!(parse_bytes(&y("18446744073709551615")).is_err());
        assert!(parse_bytes(&y("{a: 1}")).is_err());
    }

    #[test]
    fn cpus_are_finite_positive_and_bounded() {
        assert_eq!(parse_cpus(&y("0.5")), Ok(500_000_000));
        assert_eq!(parse_cpus(&s("2")), Ok(2_000_000_000));
        assert_eq!(parse_cpus(&y("0")), Ok(0));
        assert_eq!(parse_cpus(&y("1024")), Ok(1_024_000_000_000));
        for v in [
            s("1e400"),
            y(".inf"),
            s("NaN"),
            s("-1"),
            y("-0.5"),
            s("0.001"),
            s("1025"),
            y("1e300"),
        ] {
            assert_eq!(parse_cpus(&v), Err(NumberError::CpusOutOfRange), "{v:?}");
        }
        assert!(matches!(
            parse_cpus(&s("half")),
            Err(NumberError::NotCpus { .. })
        ));
    }

    #[test]
    fn modes_are_octal_up_to_07777() {
        assert_eq!(parse_mode(&s("0440")), Ok(0o440));
        assert_eq!(parse_mode(&y("0440")), Ok(0o440)); // a string in YAML 1.2
        assert_eq!(parse_mode(&y("0o440")), Ok(0o440));
        assert_eq!(parse_mode(&s("440")), Ok(0o440));
        assert_eq!(parse_mode(&s("01777")), Ok(0o1777));
        assert_eq!(parse_mode(&s("0000000000644")), Ok(0o644));
        assert_eq!(parse_mode(&y("288")), Ok(288));
        for v in [
            s("077777"),
            s("37777777777777777777777"),
            y("4096"),
            y("4294967716"), // 2^32 + 0o644: must not wrap to 0o644
            y("-1"),
        ] {
            assert_eq!(parse_mode(&v), Err(NumberError::ModeOutOfRange), "{v:?}");
        }
        for v in [s("0o"), s("0888"), s("rw"), s("0o0o7"), s("+7"), y("1.5")] {
            assert!(
                matches!(parse_mode(&v), Err(NumberError::NotMode { .. })),
                "{v:?}"
            );
        }
    }

    #[test]
    fn ids_are_numeric_u32() {
        assert_eq!(parse_id(&s("1000")), Ok(1000));
        assert_eq!(parse_id(&y("4294967295")), Ok(u32::MAX));
        assert!(parse_id(&y("4294967296")).is_err());
        assert!(parse_id(&s("-1")).is_err());
        assert!(parse_id(&s("root")).is_err());
    }

    #[test]
    fn durations_fit_the_engines_nanoseconds() {
        assert_eq!(parse_duration(&s("1m30s")), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(&y("10")), Ok(Duration::from_secs(10)));
        assert_eq!(
            duration_nanos(Duration::from_secs(u64::MAX)),
            Err(NumberError::DurationTooLong)
        );
        assert_eq!(
            duration_nanos(Duration::from_secs(9_223_372_036)),
            Ok(9_223_372_036_000_000_000)
        );
        for v in [s("-1s"), s("1e400"), s("99999999999999999999"), y("[1]")] {
            assert!(
                matches!(parse_duration(&v), Err(NumberError::NotDuration { .. })),
                "{v:?}"
            );
        }
    }
}
