//! Rule evaluation: which action a request gets. Pure functions over the request's parts.

use std::net::IpAddr;

use gantry_domain::lb::{Action, Listener, Redirect, Rule, RuleCondition, wildcard_match};

/// A listener's rules sorted by priority (each with its terminal action), then its default
/// action.
#[derive(Debug, Clone)]
pub struct RouteTable {
    rules: Vec<(Rule, Option<Action>)>,
    default: Option<Action>,
}

/// What rule matching looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Host header without the port.
    pub host: &'a str,
    pub headers: Headers<'a>,
    pub source: IpAddr,
}

/// A request's headers: hyper's map, or the header lines of a parsed HTTP/1.x head.
#[derive(Debug, Clone, Copy)]
pub enum Headers<'a> {
    Map(&'a http::HeaderMap),
    Raw(&'a [httparse::Header<'a>]),
}

/// Whether a header value is text (visible ASCII, spaces and tabs), as
/// `http::HeaderValue::to_str` requires.
fn is_text(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

impl<'a> Headers<'a> {
    /// The text values of the headers named `name` (case-insensitive), in order; values that
    /// are not text are skipped.
    pub fn get_all<'n>(self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let (map, raw) = match self {
            Headers::Map(m) => (Some(m.get_all(name).iter()), None),
            Headers::Raw(r) => (None, Some(r.iter())),
        };
        let map = map.into_iter().flatten().filter_map(|v| v.to_str().ok());
        let raw = raw
            .into_iter()
            .flatten()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter(|h| is_text(h.value))
            .filter_map(|h| std::str::from_utf8(h.value).ok());
        map.chain(raw)
    }
}

/// The terminal action of an action list (the one with the highest order, or the last).
fn terminal(actions: &[Action]) -> Option<Action> {
    let mut sorted: Vec<&Action> = actions.iter().collect();
    sorted.sort_by_key(|a| a.order().unwrap_or(u32::MAX));
    sorted.last().map(|a| (*a).clone())
}

impl RouteTable {
    pub fn new(listener: &Listener) -> Self {
        let mut rules = listener.rules.clone();
        rules.sort_by_key(|r| r.priority);
        Self {
            rules: rules
                .into_iter()
                .map(|r| {
                    let action = terminal(&r.actions);
                    (r, action)
                })
                .collect(),
            default: terminal(&listener.default_actions),
        }
    }

    /// The action for a request: the first rule (by priority) whose conditions all match,
    /// else the default action.
    pub fn select(&self, req: &RequestView<'_>) -> Option<&Action> {
        for (r, action) in &self.rules {
            if r.conditions.iter().all(|c| condition_matches(c, req)) {
                return action.as_ref();
            }
        }
        self.default.as_ref()
    }

    /// The default action (TCP listeners only have that).
    pub fn default_action(&self) -> Option<&Action> {
        self.default.as_ref()
    }
}

fn any_wildcard(patterns: &[String], text: &str, ci: bool) -> bool {
    patterns.iter().any(|p| wildcard_match(p, text, ci))
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> String {
    form_decode(s.as_bytes())
}

fn form_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn condition_matches(c: &RuleCondition, req: &RequestView<'_>) -> bool {
    match c.field.as_str() {
        "path-pattern" => any_wildcard(&c.values, req.path, false),
        "host-header" => any_wildcard(&c.values, req.host, true),
        "http-request-method" => c.values.iter().any(|m| m == req.method),
        "http-header" => {
            let Some(name) = c.http_header_name.as_deref() else {
                return false;
            };
            req.headers
                .get_all(name)
                .any(|v| any_wildcard(&c.values, v, true))
        }
        "query-string" => {
            let pairs: Vec<(String, String)> = req
                .query
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(kv), String::new()),
                })
                .collect();
            c.query_strings.iter().any(|m| {
                pairs.iter().any(|(k, v)| {
                    m.key
                        .as_deref()
                        .is_none_or(|mk| wildcard_match(mk, k, true))
                        && wildcard_match(&m.value, v, true)
                })
            })
        }
        "source-ip" => c.values.iter().any(|cidr| cidr_contains(cidr, req.source)),
        _ => false,
    }
}

/// Whether `ip` is inside `cidr` (`a.b.c.d/n` or IPv6); IPv4-mapped IPv6 sources count as IPv4.
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// The `Location` of a redirect action for a request on listener port `port`.
pub fn redirect_location(r: &Redirect, req: &RequestView<'_>, port: u16) -> String {
    let path_no_slash = req.path.strip_prefix('/').unwrap_or(req.path);
    let fill = |s: &str| {
        s.replace("#{protocol}", "HTTP")
            .replace("#{host}", req.host)
            .replace("#{port}", &port.to_string())
            .replace("#{path}", path_no_slash)
            .replace("#{query}", req.query)
    };
    let protocol = fill(&r.protocol).to_ascii_lowercase();
    let host = fill(&r.host);
    let port = fill(&r.port);
    let path = fill(&r.path);
    let query = fill(&r.query);
    let default_port =
        (protocol == "http" && port == "80") || (protocol == "https" && port == "443");
    let mut out = format!("{protocol}://{host}");
    if !default_port {
        out.push(':');
        out.push_str(&port);
    }
    out.push_str(&path);
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_domain::lb::QueryStringMatch;

    fn cond(field: &str, values: &[&str]) -> RuleCondition {
        RuleCondition {
            field: field.into(),
            values: values.iter().map(|s| (*s).to_owned()).collect(),
            http_header_name: None,
            query_strings: vec![],
        }
    }

    fn view<'a>(headers: &'a http::HeaderMap, path: &'a str, query: &'a str) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path,
            query,
            host: "api.example.com",
            headers: Headers::Map(headers),
            source: "10.1.2.3".parse().unwrap(),
        }
    }

    #[test]
    fn conditions_match_like_alb() {
        let mut h = http::HeaderMap::new();
        h.insert("x-env", "Blue".parse().unwrap());
        let v = view(&h, "/api/users", "v=2&name=a%20b");
        assert!(condition_matches(&cond("path-pattern", &["/api/*"]), &v));
        assert!(!condition_matches(&cond("path-pattern", &["/API/*"]), &v));
        assert!(condition_matches(
            &cond("host-header", &["*.EXAMPLE.com"]),
            &v
        ));
        assert!(condition_matches(
            &cond("http-request-method", &["GET", "HEAD"]),
            &v
        ));
        assert!(!condition_matches(
            &cond("http-request-method", &["get"]),
            &v
        ));
        assert!(condition_matches(&cond("source-ip", &["10.0.0.0/8"]), &v));
        assert!(!condition_matches(
            &cond("source-ip", &["192.168.0.0/16"]),
            &v
        ));
        let mut hh = cond("http-header", &["blue"]);
        hh.http_header_name = Some("X-Env".into());
        assert!(condition_matches(&hh, &v));
        let mut q = cond("query-string", &[]);
        q.query_strings = vec![QueryStringMatch {
            key: Some("name".into()),
            value: "a b".into(),
        }];
        assert!(condition_matches(&q, &v));
        q.query_strings[0].key = None;
        q.query_strings[0].value = "2".into();
        assert!(condition_matches(&q, &v));
        q.query_strings[0].value = "3".into();
        assert!(!condition_matches(&q, &v));
    }

    #[test]
    fn raw_header_lines_match_like_the_map() {
        let raw = [
            httparse::Header {
                name: "X-Env",
                value: b"green",
            },
            httparse::Header {
                name: "x-env",
                value: b"Blue",
            },
            httparse::Header {
                name: "x-bin",
                value: b"\xffblue",
            },
        ];
        let mut map = http::HeaderMap::new();
        for h in &raw {
            map.append(
                http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        for headers in [Headers::Raw(&raw), Headers::Map(&map)] {
            let v = RequestView {
                headers,
                ..view(&map, "/", "")
            };
            let mut hh = cond("http-header", &["blue"]);
            hh.http_header_name = Some("X-ENV".into());
            assert!(condition_matches(&hh, &v), "{headers:?}");
            hh.values = vec!["purple".into()];
            assert!(!condition_matches(&hh, &v), "{headers:?}");
            // Values that are not text never match.
            hh.http_header_name = Some("x-bin".into());
            hh.values = vec!["*".into()];
            assert!(!condition_matches(&hh, &v), "{headers:?}");
            assert_eq!(headers.get_all("x-env").count(), 2);
        }
    }

    #[test]
    fn cidrs_and_mapped_addresses() {
        assert!(cidr_contains(
            "127.0.0.0/8",
            "::ffff:127.0.0.1".parse().unwrap()
        ));
        assert!(cidr_contains("0.0.0.0/0", "8.8.8.8".parse().unwrap()));
        assert!(cidr_contains("::1/128", "::1".parse().unwrap()));
        assert!(!cidr_contains("bad", "::1".parse().unwrap()));
    }

    #[test]
    fn redirects_fill_placeholders() {
        let h = http::HeaderMap::new();
        let v = view(&h, "/a/b", "x=1");
        let r = Redirect {
            protocol: "#{protocol}".into(),
            port: "#{port}".into(),
            host: "#{host}".into(),
            path: "/new/#{path}".into(),
            query: "#{query}&y=2".into(),
            status_code: "HTTP_301".into(),
        };
        assert_eq!(
            redirect_location(&r, &v, 8080),
            "http://api.example.com:8080/new/a/b?x=1&y=2"
        );
        let r = Redirect {
            protocol: "HTTPS".into(),
            port: "443".into(),
            query: "#{query}".into(),
            ..r
        };
        assert_eq!(
            redirect_location(&r, &view(&h, "/", ""), 80),
            "https://api.example.com/new/"
        );
        assert_eq!(decode("a%2Fb+c%zz"), "a/b c%zz");
    }
}
