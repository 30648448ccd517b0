//! Durations and sizes as settings spell them (`30s`, `5m`, `4MiB`): the parsers every
//! flag and `CROWBAR_*` variable with a unit goes through. A leaf: it imports nothing of
//! crowbar, so every subsystem's settings can use it.

use std::time::Duration;

/// `text` as a number and what follows it (`"10s"` → `(10, "s")`), or `None`.
fn number_and_unit(text: &str) -> Option<(u64, String)> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit.trim().to_ascii_lowercase()))
}

/// Parses `250ms`, `10s`, `5m`, `1h`, `7d` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = number_and_unit(text)
        .ok_or_else(|| format!("`{text}` is not a duration (try 30s, 500ms, 5m)"))?;
    let millis: u64 = match unit.as_str() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses a size in bytes: `4096`, `64KiB`, `4MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, ...,
/// all powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = number_and_unit(text)
        .ok_or_else(|| format!("`{text}` is not a size (try 65536, 64KiB, 4MiB)"))?;
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use KiB, MiB or GiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(
            parse_duration("99999999999999999d").is_err(),
            "too long, not a panic"
        );
        assert_eq!(parse_duration("2H"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("4PiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
