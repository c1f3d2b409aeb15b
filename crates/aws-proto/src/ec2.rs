//! The `ec2` protocol (EC2's own dialect of awsQuery): form-encoded `Action=..&Version=..`
//! requests whose lists are flattened without `.member.` (`GroupId.1=sg-a`, `Filter.1.Name=vpc-id`,
//! `Filter.1.Value.1=vpc-1`, `IpPermissions.1.IpRanges.2.CidrIp=...`), and XML responses:
//!
//! - success: `<{Action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
//!   <requestId>id</requestId>...members...</{Action}Response>` (no `Result` wrapper, lists as
//!   `<xSet><item>...</item></xSet>`);
//! - error: `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`
//!   ([`crate::AwsError::ec2_response`]).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;

use crate::query::{QueryRequest, XmlWriter};
use crate::{REQUEST_ID_HEADER, set_header};

/// Content type of `ec2` responses.
pub const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";

/// The parameters of an `ec2` request as a tree: `Filter.1.Value.2=x` is the value of the path
/// `Filter` → `1` → `Value` → `2`. Numeric path segments are list indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ec2Params {
    value: Option<String>,
    children: BTreeMap<String, Ec2Params>,
}

impl Ec2Params {
    /// Builds the tree from a decoded request (`Action` and `Version` included). The first value
    /// sent for a name wins.
    pub fn from_request(req: &QueryRequest) -> Self {
        let mut root = Self::default();
        for (name, value) in req.pairs() {
            let mut node = &mut root;
            for segment in name.split('.') {
                node = node.children.entry(segment.to_owned()).or_default();
            }
            node.value.get_or_insert_with(|| value.clone());
        }
        root
    }

    /// The value at this node, if one was sent.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// The child `name`.
    pub fn child(&self, name: &str) -> Option<&Ec2Params> {
        self.children.get(name)
    }

    /// The value of the child `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(Ec2Params::value)
    }

    /// The names of the children sent at this node.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.children.keys().map(String::as_str)
    }

    /// The list `name` (`name.1`, `name.2`, ...), ordered by index; gaps are skipped and
    /// non-numeric segments ignored.
    pub fn list(&self, name: &str) -> Vec<&Ec2Params> {
        let Some(node) = self.child(name) else {
            return Vec::new();
        };
        let mut items: Vec<(u64, &Ec2Params)> = node
            .children
            .iter()
            .filter_map(|(k, v)| Some((k.parse::<u64>().ok()?, v)))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// The list of strings `name` (`name.1=a&name.2=b`).
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.list(name)
            .into_iter()
            .filter_map(|n| n.value().map(str::to_owned))
            .collect()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`, in request order.
    pub fn filters(&self) -> Vec<Filter> {
        self.list("Filter")
            .into_iter()
            .map(|f| Filter {
                name: f.get("Name").unwrap_or_default().to_owned(),
                values: f.strings("Value"),
            })
            .collect()
    }
}

/// One `Filter.N` of a Describe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    /// Whether `candidate` matches one of the values, with EC2's wildcards (`*` any run of
    /// characters, `?` one character; `\` escapes them).
    pub fn matches(&self, candidate: &str) -> bool {
        self.values
            .iter()
            .any(|pattern| wildcard_match(pattern, candidate))
    }

    /// Whether any of `candidates` matches.
    pub fn matches_any<'a>(&self, mut candidates: impl Iterator<Item = &'a str>) -> bool {
        candidates.any(|c| self.matches(c))
    }
}

/// EC2 filter matching: `*` matches any run of characters, `?` exactly one, `\` escapes the next
/// character; everything else literally (case-sensitive).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Tok {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            '*' => Tok::Any,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Classic two-pointer glob match with backtracking to the last `*`.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(Tok::One) => {
                p += 1;
                t += 1;
            }
            Some(Tok::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| matches!(t, Tok::Any))
}

/// Writes `<tag><item>..</item>...</tag>` with `f` writing each item's members.
pub fn write_items<T>(
    w: &mut XmlWriter,
    tag: &str,
    items: &[T],
    mut f: impl FnMut(&mut XmlWriter, &T),
) {
    w.open(tag);
    for item in items {
        w.open("item");
        f(w, item);
        w.close("item");
    }
    w.close(tag);
}

/// The `ec2` success response, `200`, with `x-amzn-RequestId`:
/// `<{action}Response xmlns=NS><requestId>id</requestId>{inner_xml}</{action}Response>`.
pub fn ok_response(action: &str, xmlns: &str, inner_xml: &str, request_id: &str) -> Response {
    let tag = format!("{action}Response");
    let mut xml = XmlWriter::new();
    xml.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.open_with_xmlns(&tag, xmlns);
    xml.leaf("requestId", request_id);
    xml.raw(inner_xml);
    xml.close(&tag);
    let mut response = Response::new(Body::from(xml.finish()));
    set_header(&mut response, "content-type", CONTENT_TYPE);
    set_header(&mut response, REQUEST_ID_HEADER, request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn params(body: &str) -> Ec2Params {
        Ec2Params::from_request(&QueryRequest::parse(body.as_bytes(), None))
    }

    #[test]
    fn lists_are_flattened_without_member() {
        let p =
            params("Action=DescribeSecurityGroups&GroupId.2=sg-b&GroupId.1=sg-a&GroupId.10=sg-j");
        assert_eq!(p.get("Action"), Some("DescribeSecurityGroups"));
        assert_eq!(p.strings("GroupId"), vec!["sg-a", "sg-b", "sg-j"]);
        assert!(p.strings("Missing").is_empty());
    }

    #[test]
    fn filters_read_names_and_values() {
        let p = params(
            "Filter.2.Name=tag%3AName&Filter.2.Value.1=web&Filter.1.Name=vpc-id\
             &Filter.1.Value.2=vpc-2&Filter.1.Value.1=vpc-1",
        );
        assert_eq!(
            p.filters(),
            vec![
                Filter {
                    name: "vpc-id".into(),
                    values: vec!["vpc-1".into(), "vpc-2".into()]
                },
                Filter {
                    name: "tag:Name".into(),
                    values: vec!["web".into()]
                },
            ]
        );
    }

    #[test]
    fn nested_structures_become_a_tree() {
        let p = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80\
             &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8&IpPermissions.1.IpRanges.2.CidrIp=0.0.0.0%2F0\
             &IpPermissions.1.Groups.1.GroupId=sg-1&IpPermissions.2.IpProtocol=-1",
        );
        let perms = p.list("IpPermissions");
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[0].get("FromPort"), Some("80"));
        let ranges: Vec<&str> = perms[0]
            .list("IpRanges")
            .iter()
            .filter_map(|r| r.get("CidrIp"))
            .collect();
        assert_eq!(ranges, vec!["10.0.0.0/8", "0.0.0.0/0"]);
        assert_eq!(perms[0].list("Groups")[0].get("GroupId"), Some("sg-1"));
        assert_eq!(perms[1].get("IpProtocol"), Some("-1"));
        assert_eq!(p.names().collect::<Vec<_>>(), vec!["IpPermissions"]);
    }

    #[test]
    fn first_value_wins() {
        let p = params("CidrBlock=10.0.0.0%2F16&CidrBlock=192.168.0.0%2F16");
        assert_eq!(p.get("CidrBlock"), Some("10.0.0.0/16"));
    }

    #[test]
    fn wildcards_match_as_ec2_does() {
        assert!(wildcard_match("web-*", "web-1"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*-prod-*", "api-prod-eu"));
        assert!(!wildcard_match("web", "web-1"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
        assert!(wildcard_match("**x", "abx"));
    }

    #[tokio::test]
    async fn ok_response_carries_request_id_without_result_wrapper() {
        let response = ok_response(
            "CreateVpc",
            "http://ec2.amazonaws.com/doc/2016-11-15/",
            "<vpc><vpcId>vpc-1</vpcId></vpc>",
            "rid-1",
        );
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["x-amzn-requestid"], "rid-1");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).expect("utf-8"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <CreateVpcResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>rid-1</requestId><vpc><vpcId>vpc-1</vpcId></vpc></CreateVpcResponse>"
        );
    }
}
