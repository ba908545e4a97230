//! HEALTHCHECK: `NONE`, or `CMD` with `--interval/--timeout/--start-period/--start-interval`
//! (Go durations such as `30s`, `1m30s`, `1.5h`, `250ms`) and `--retries`.

use super::flags::{check, flag, Kind};
use crate::diagnostic::Diagnostic;
use crate::parser::Node;

/// A parsed HEALTHCHECK. Durations are in nanoseconds, `0` meaning "inherit the default", as in
/// the image config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` (exec form) or `["CMD-SHELL", command]` (shell form).
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// The shortest interval BuildKit accepts for a non-zero duration flag (1 ms).
const MIN_INTERVAL_NS: u64 = 1_000_000;

pub(crate) fn parse(node: &Node) -> Result<Healthcheck, Diagnostic> {
    let Some(kind) = node.args.first() else {
        return Err(node
            .diagnostic("HEALTHCHECK requires at least one argument")
            .expected("`NONE` or `CMD command`"));
    };
    let upper = kind.to_uppercase();
    let rest = &node.args[1..];
    if upper == "NONE" {
        if !rest.is_empty() {
            return Err(node.diagnostic_on("HEALTHCHECK NONE takes no arguments", &rest[0]));
        }
        return Ok(Healthcheck {
            test: vec!["NONE".into()],
            interval: 0,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 0,
        });
    }
    let flags = check(
        node,
        &[
            flag("interval", Kind::String),
            flag("timeout", Kind::String),
            flag("start-period", Kind::String),
            flag("start-interval", Kind::String),
            flag("retries", Kind::String),
        ],
    )?;
    if upper != "CMD" {
        return Err(node
            .diagnostic_on(format!("Unknown type `{kind}` in HEALTHCHECK"), kind)
            .expected("`CMD` or `NONE`"));
    }
    if rest.is_empty() || (!node.json && rest.iter().all(String::is_empty)) {
        return Err(node.diagnostic("Missing command after HEALTHCHECK CMD"));
    }
    let test = if node.json {
        std::iter::once("CMD".to_string())
            .chain(rest.iter().cloned())
            .collect()
    } else {
        vec!["CMD-SHELL".to_string(), rest.join(" ")]
    };
    let duration = |name: &str| -> Result<u64, Diagnostic> {
        let Some(text) = flags.string(name) else {
            return Ok(0);
        };
        let at = |msg: String| node.diagnostic_on_flag(msg, flags.position(name));
        let ns = parse_go_duration(&text)
            .map_err(|e| at(e).expected("a duration such as `30s`, `1m30s` or `500ms`"))?;
        if ns < 0 {
            return Err(at(format!("`--{name}` cannot be negative")));
        }
        let ns = ns as u64;
        if ns != 0 && ns < MIN_INTERVAL_NS {
            return Err(at(format!("`--{name}` cannot be less than 1ms")));
        }
        Ok(ns)
    };
    let retries = match flags.string("retries") {
        None => 0,
        Some(text) => {
            let index = flags.position("retries");
            let value: i64 = text.parse().map_err(|_| {
                node.diagnostic_on_flag(format!("Invalid `--retries` value `{text}`"), index)
                    .expected("a whole number")
            })?;
            if value < 0 {
                return Err(node.diagnostic_on_flag(
                    format!("`--retries` cannot be negative ({value})"),
                    index,
                ));
            }
            u32::try_from(value)
                .map_err(|_| node.diagnostic_on_flag("`--retries` is too large", index))?
        }
    };
    Ok(Healthcheck {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let err = || format!("Invalid duration `{text}`");
    let (negative, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let number = &s[..num_end];
        if number.is_empty() || number == "." {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let scale = match &s[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("Missing unit in duration `{text}`")),
            other => return Err(format!("Unknown unit `{other}` in duration `{text}`")),
        };
        s = &s[unit_end..];
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    let ns = total.round() as i64;
    Ok(if negative { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as d;

    #[test]
    fn go_durations() {
        assert_eq!(d("30s"), Ok(30_000_000_000));
        assert_eq!(d("1m30s"), Ok(90_000_000_000));
        assert_eq!(d("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(d("250ms"), Ok(250_000_000));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("-1s"), Ok(-1_000_000_000));
        assert!(d("10").is_err());
        assert!(d("1x").is_err());
        assert!(d("").is_err());
        assert!(d("s").is_err());
    }
}
