//! EXPOSE port specs, as docker/go-connections `nat.ParsePortSpecs` reads them:
//! `[ip:][hostPort:]containerPort[-end][/proto]`, ranges expanded, proto tcp (default), udp or
//! sctp. Only the container side matters for EXPOSE.

/// Expands one EXPOSE word into normalised `port/proto` keys.
pub fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (raw, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "Invalid proto `{proto}` in `{spec}` (expected tcp, udp or sctp)"
        ));
    }
    // Strip `ip:hostPort:` (IPv6 addresses come in brackets).
    let container = match raw.rfind(':') {
        Some(i) if !raw[..i].ends_with(']') || raw.starts_with('[') => &raw[i + 1..],
        _ => raw,
    };
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (parse_port(a, spec)?, parse_port(b, spec)?),
        None => {
            let p = parse_port(container, spec)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("Invalid range in port spec `{spec}`"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn parse_port(text: &str, spec: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("Invalid containerPort `{text}` in `{spec}`"))
}

#[cfg(test)]
mod tests {
    use super::parse_port_spec as p;

    #[test]
    fn specs() {
        assert_eq!(p("80").expect("ok"), ["80/tcp"]);
        assert_eq!(p("53/UDP").expect("ok"), ["53/udp"]);
        assert_eq!(
            p("8000-8002/tcp").expect("ok"),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(p("127.0.0.1:8080:80").expect("ok"), ["80/tcp"]);
        assert!(p("80/xyz").is_err());
        assert!(p("http").is_err());
        assert!(p("70000").is_err());
        assert!(p("9-1").is_err());
    }
}
