//! A service's `ports` (short and long syntax) and `expose` → port bindings. Every port is a u16
//! (1-65535), ranges are checked for direction and equal length, and the bindings one service expands
//! to are bounded ([`MAX_PORT_BINDINGS`]), so `1-65535` written many times cannot eat memory.
//!
//! Layer: service sections (see the table in `render`).

use super::lines::Seg;
use super::values::*;
use crate::model::PortSpec;
use serde_yaml::{Mapping, Value};

/// The most port bindings the `ports` of one service may expand to (a range is one binding per port).
/// Every host port of one address and protocol fits; publishing one range of a few thousand ports
/// (RTP, FTP passive) does too.
pub const MAX_PORT_BINDINGS: usize = 65_536;

/// Why a port entry was refused. Messages name the part at fault, never the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("the protocol must be tcp, udp or sctp")]
    Protocol,
    #[error("the {part} must be a port number (1-65535)")]
    NotPort { part: &'static str },
    #[error("the {part} range is backwards")]
    Backwards { part: &'static str },
    #[error("the host range and the container range must be the same length")]
    RangeLengths,
    #[error("a published range needs a target range of the same length")]
    PublishedRange,
    #[error("the `[` of an IPv6 host address is not closed")]
    UnclosedBracket,
    #[error("expected `:` after the host address")]
    ColonAfterAddress,
    #[error("is not a port mapping like 8080:80 or 127.0.0.1:8080:80/udp")]
    Shape,
    #[error("`target` is required")]
    TargetRequired,
    #[error("must be a port, not {0}")]
    WrongType(&'static str),
    #[error("the ports of this service expand to more than {MAX_PORT_BINDINGS} bindings")]
    TooMany,
}

const CONTAINER: &str = "container port";
const HOST: &str = "host port";

pub(super) fn ports(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<PortSpec> {
    let svc = Some(service);
    let Value::Sequence(items) = v else {
        ctx.err(svc, path, format!("must be a list, not {}", type_name(v)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = idx(path, i);
        let parsed = match item {
            Value::Number(_) | Value::String(_) => {
                parse_port_short(&scalar(item).unwrap_or_default())
            }
            Value::Mapping(m) => {
                check_keys(
                    ctx,
                    svc,
                    &p,
                    m,
                    &[
                        "target",
                        "published",
                        "host_ip",
                        "protocol",
                        "mode",
                        "name",
                        "app_protocol",
                    ],
                    &[],
                );
                port_long(m)
            }
            other => Err(PortError::WrongType(type_name(other))),
        };
        match parsed {
            Ok(mut ports) if out.len() + ports.len() <= MAX_PORT_BINDINGS => out.append(&mut ports),
            Ok(_) => {
                ctx.err(svc, &p, PortError::TooMany);
                break;
            }
            Err(e) => ctx.err(svc, &p, e),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `expose`: ports and ranges, each kept as one entry (`8000-8010/tcp`), as Compose passes them on.
pub(super) fn expose(ctx: &mut Ctx, service: &str, path: &[Seg], v: &Value) -> Vec<String> {
    let svc = Some(service);
    let mut expose = Vec::new();
    for (i, e) in string_list(ctx, svc, path, v, false)
        .into_iter()
        .enumerate()
    {
        let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        match (parse_range(port, "exposed port"), check_protocol(proto)) {
            (Ok((a, b)), Ok(())) => {
                if a == b {
                    expose.push(format!("{a}/{proto}"));
                } else {
                    expose.push(format!("{a}-{b}/{proto}"));
                }
            }
            (Err(err), _) | (_, Err(err)) => ctx.err(svc, &idx(path, i), err),
        }
    }
    expose.sort();
    expose.dedup();
    expose
}

/// Long syntax: `target`, `published` (a port, or a range of length one), `host_ip`, `protocol`.
pub(super) fn port_long(m: &Mapping) -> Result<Vec<PortSpec>, PortError> {
    let target = m.get("target").ok_or(PortError::TargetRequired)?;
    let target = scalar(target).ok_or(PortError::NotPort {
        part: "target port",
    })?;
    let target = parse_port_number(&target, "target port")?;
    let protocol = m
        .get("protocol")
        .and_then(scalar)
        .unwrap_or_else(|| "tcp".into());
    check_protocol(&protocol)?;
    let host_ip = m.get("host_ip").and_then(scalar).filter(|s| !s.is_empty());
    let published = m
        .get("published")
        .and_then(scalar)
        .filter(|s| !s.is_empty());
    let host = match published {
        None => None,
        Some(p) => {
            let (a, b) = parse_range(&p, "published port")?;
            if a != b {
                return Err(PortError::PublishedRange);
            }
            Some(a)
        }
    };
    Ok(vec![PortSpec {
        host_ip,
        host_port: host,
        container_port: target,
        protocol,
    }])
}

pub(super) fn check_protocol(p: &str) -> Result<(), PortError> {
    if matches!(p, "tcp" | "udp" | "sctp") {
        Ok(())
    } else {
        Err(PortError::Protocol)
    }
}

/// A port number, 1 to 65535.
pub(super) fn parse_port_number(s: &str, part: &'static str) -> Result<u16, PortError> {
    match s.trim().parse::<u16>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(PortError::NotPort { part }),
    }
}

/// `a` or `a-b` with `a <= b`; a range holds at most 65535 ports.
pub(super) fn parse_range(s: &str, part: &'static str) -> Result<(u16, u16), PortError> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port_number(a, part)?, parse_port_number(b, part)?);
            if b < a {
                return Err(PortError::Backwards { part });
            }
            Ok((a, b))
        }
        None => {
            let n = parse_port_number(s, part)?;
            Ok((n, n))
        }
    }
}

/// `[[host_ip:][host_port[-end]]:]container_port[-end][/protocol]`; host ranges map one to one.
pub fn parse_port_short(s: &str) -> Result<Vec<PortSpec>, PortError> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p.to_string()),
        None => (s, "tcp".to_string()),
    };
    check_protocol(&protocol)?;
    // An IPv6 host address is written in brackets.
    let (host_ip, rest) = if let Some(r) = spec.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or(PortError::UnclosedBracket)?;
        let rest = after
            .strip_prefix(':')
            .ok_or(PortError::ColonAfterAddress)?;
        (Some(ip.to_string()), rest.to_string())
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [_] | [_, _] => (None, spec.to_string()),
            [ip, h, c] => (Some(ip.to_string()), format!("{h}:{c}")),
            _ => return Err(PortError::Shape),
        }
    };
    let host_ip = host_ip.filter(|h| !h.is_empty());
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest.as_str()),
    };
    let (c0, c1) = parse_range(container, CONTAINER)?;
    let host = match host.filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => {
            let (h0, h1) = parse_range(h, HOST)?;
            if h1 - h0 != c1 - c0 {
                return Err(PortError::RangeLengths);
            }
            Some(h0)
        }
    };
    // Both ranges are ascending and of the same length, so `h0 + i` stays within `h0..=h1`.
    Ok((c0..=c1)
        .zip(0u16..)
        .map(|(c, i)| PortSpec {
            host_ip: host_ip.clone(),
            host_port: host.map(|h0| h0 + i),
            container_port: c,
            protocol: protocol.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports() {
        let p = |s: &str| parse_port_short(s).unwrap();
        assert_eq!(
            p("8080:80"),
            vec![PortSpec {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                protocol: "tcp".into()
            }]
        );
        assert_eq!(p("80")[0].host_port, None);
        let r = p("127.0.0.1:8000-8001:80-81/udp");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].host_port, Some(8001));
        assert_eq!(r[1].container_port, 81);
        assert_eq!(r[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(r[0].protocol, "udp");
        assert_eq!(p("[::1]:53:53/udp")[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(p(":80")[0].host_port, None);
        assert_eq!(
            parse_port_short("8000-8002:80-81"),
            Err(PortError::RangeLengths)
        );
        assert_eq!(
            parse_port_short("99999"),
            Err(PortError::NotPort { part: CONTAINER })
        );
        assert_eq!(parse_port_short("80/icmp"), Err(PortError::Protocol));
        assert_eq!(parse_port_short("a:b:c:d"), Err(PortError::Shape));
    }

    #[test]
    fn port_numbers_are_u16_and_ranges_ascend() {
        for bad in [
            "0",
            "65536",
            "-1",
            "4294967296",
            "99999999999999999999",
            "1e400",
        ] {
            assert!(parse_port_short(bad).is_err(), "{bad}");
            assert!(parse_port_short(&format!("{bad}:80")).is_err(), "{bad}");
            assert!(parse_port_short(&format!("80-{bad}")).is_err(), "{bad}");
        }
        assert!(parse_port_short("").is_err());
        assert_eq!(
            parse_port_short("90-80"),
            Err(PortError::Backwards { part: CONTAINER })
        );
        assert_eq!(
            parse_port_short("[::1:80:80"),
            Err(PortError::UnclosedBracket)
        );
        // The whole port space is one range: the last host port is 65535, no overflow.
        let all = parse_port_short("1-65535:1-65535").unwrap();
        assert_eq!(all.len(), 65535);
        assert_eq!(all[65534].host_port, Some(65535));
        let m: Mapping = serde_yaml::from_str("{target: 80, published: 8000-8001}").unwrap();
        assert_eq!(port_long(&m), Err(PortError::PublishedRange));
        let m: Mapping = serde_yaml::from_str("{target: [80]}").unwrap();
        assert!(port_long(&m).is_err());
        let m: Mapping = serde_yaml::from_str("{target: 70000}").unwrap();
        assert!(port_long(&m).is_err());
    }

    #[test]
    fn a_service_expands_to_a_bounded_number_of_bindings() {
        let mut ctx = Ctx {
            docs: &[],
            stack: "s".into(),
            problems: Vec::new(),
            warnings: Vec::new(),
            budget: super::super::budget::Budget::default(),
        };
        // One full range fits the cap; a second one does not, and is a problem, not memory.
        let v: Value =
            serde_yaml::from_str("['1-65535/udp', '1-65535/tcp', '1-65535/sctp']").unwrap();
        let path = vec![Seg::Key("ports".into())];
        let got = ports(&mut ctx, "web", &path, &v);
        assert!(got.len() <= MAX_PORT_BINDINGS, "{}", got.len());
        assert_eq!(ctx.problems.len(), 1, "{:?}", ctx.problems);
        assert!(ctx.problems[0].message.contains("more than"));
        assert!(ctx.problems[0].message.starts_with("ports[1]: "));
    }
}
