//! Durations and sizes as the configuration file and the command line write them.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

/// `30s`, `5m`, `1h`, `2d`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("\"{s}\" is not a duration (like 30s, 5m, 1h, 2d)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => bail!("\"{s}\": unknown unit \"{other}\" (use ms, s, m, h or d)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `35MB`, `512KB`, `1GB` (binary multiples), or a number of bytes.
pub fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim().to_ascii_uppercase();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: usize = num
        .parse()
        .map_err(|_| anyhow!("\"{s}\" is not a size (like 35MB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        "G" | "GB" | "GIB" => 1024 * 1024 * 1024,
        other => bail!("\"{s}\": unknown unit \"{other}\" (use KB, MB or GB)"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("\"{s}\" is too large"))
}
