//! The `awsQuery` protocol (STS, IAM, ELBv2): form-encoded `Action=..&Version=..` requests and
//! XML responses.
//!
//! Request members are flattened into dotted names: lists as `Name.member.N`, structures as
//! `Name.Member`, maps as `Name.entry.N.key` / `Name.entry.N.value`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;

use crate::{REQUEST_ID_HEADER, set_header};

/// Content type of `awsQuery` responses.
pub const CONTENT_TYPE: &str = "text/xml";

/// The decoded name/value pairs of an `awsQuery` request, in the order they were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryRequest {
    pairs: Vec<(String, String)>,
}

impl QueryRequest {
    /// Decodes the URL query string (if any, first) and the form-encoded body (after it).
    /// Percent escapes are decoded and `+` means a space; invalid UTF-8 is replaced, never
    /// rejected.
    pub fn parse(body: &[u8], uri_query: Option<&str>) -> Self {
        let from_uri = uri_query
            .map(|query| form_urlencoded::parse(query.as_bytes()))
            .into_iter()
            .flatten();
        let pairs = from_uri
            .chain(form_urlencoded::parse(body))
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Self { pairs }
    }

    /// Every pair, in request order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The `Action` parameter: the operation name.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// The `Version` parameter: the API version (`2011-06-15` for STS, ...).
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// The value of the first parameter called exactly `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The list `name`: the values of `name.member.1`, `name.member.2`, ... ordered by N (gaps
    /// are skipped, not filled).
    pub fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(u64, &str)> = self
            .pairs
            .iter()
            .filter_map(|(key, value)| {
                let index = key.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                Some((index, value.as_str()))
            })
            .collect();
        items.sort_by_key(|(index, _)| *index);
        items.into_iter().map(|(_, v)| v.to_owned()).collect()
    }

    /// The list of structures `name`: one map per N of `name.member.N.<rest>`, ordered by N,
    /// keyed by `<rest>` (which keeps any further dots, e.g. `Values.member.1`).
    pub fn structs(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let prefix = format!("{name}.member.");
        let mut items: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
        for (key, value) in &self.pairs {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((index, member)) = rest.split_once('.') else {
                continue;
            };
            let Ok(index) = index.parse::<u64>() else {
                continue;
            };
            if member.is_empty() {
                continue;
            }
            items
                .entry(index)
                .or_default()
                .entry(member.to_owned())
                .or_insert_with(|| value.clone());
        }
        items.into_values().collect()
    }

    /// The map `name`: `(key, value)` from `name.entry.N.key` / `name.entry.N.value`, ordered by
    /// N. Entries without a key are skipped; a missing value reads as an empty string.
    pub fn map(&self, name: &str) -> Vec<(String, String)> {
        let prefix = format!("{name}.entry.");
        let mut entries: BTreeMap<u64, (Option<String>, Option<String>)> = BTreeMap::new();
        for (key, value) in &self.pairs {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((index, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(index) = index.parse::<u64>() else {
                continue;
            };
            let entry = entries.entry(index).or_default();
            match field {
                "key" => {
                    entry.0.get_or_insert_with(|| value.clone());
                }
                "value" => {
                    entry.1.get_or_insert_with(|| value.clone());
                }
                _ => {}
            }
        }
        entries
            .into_values()
            .filter_map(|(key, value)| Some((key?, value.unwrap_or_default())))
            .collect()
    }
}

/// A minimal XML writer: elements and escaped text, no declaration, no pretty-printing.
#[derive(Debug, Default, Clone)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `<tag>`.
    pub fn open(&mut self, tag: &str) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// Writes `<tag xmlns="namespace">`.
    pub fn open_with_xmlns(&mut self, tag: &str, namespace: &str) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push_str(" xmlns=\"");
        escape_into(&mut self.out, namespace);
        self.out.push_str("\">");
    }

    /// Writes `</tag>`.
    pub fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// Writes `<tag>text</tag>` with `text` escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) {
        self.open(tag);
        escape_into(&mut self.out, text);
        self.close(tag);
    }

    /// Appends already well-formed XML (e.g. a fragment from another writer) verbatim.
    pub fn raw(&mut self, xml: &str) {
        self.out.push_str(xml);
    }

    /// The document written so far.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Escapes text for element content and attribute values. `&`, `<`, `>`, `"` and `'` become
/// entities and a carriage return becomes `&#xD;` (so that parsers do not normalise it away);
/// other control characters that XML 1.0 cannot carry at all are dropped.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// The `awsQuery` success response, `200`, `text/xml`, with `x-amzn-RequestId`:
/// `<{action}Response xmlns=NS><{action}Result>{result_xml}</{action}Result>
/// <ResponseMetadata><RequestId>id</RequestId></ResponseMetadata></{action}Response>`.
pub fn ok_response(action: &str, xmlns: &str, result_xml: &str, request_id: &str) -> Response {
    let response_tag = format!("{action}Response");
    let result_tag = format!("{action}Result");
    let mut xml = XmlWriter::new();
    xml.open_with_xmlns(&response_tag, xmlns);
    xml.open(&result_tag);
    xml.raw(result_xml);
    xml.close(&result_tag);
    xml.open("ResponseMetadata");
    xml.leaf("RequestId", request_id);
    xml.close("ResponseMetadata");
    xml.close(&response_tag);
    let mut response = Response::new(Body::from(xml.finish()));
    set_header(&mut response, "content-type", CONTENT_TYPE);
    set_header(&mut response, REQUEST_ID_HEADER, request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_action_version_and_plain_members() {
        let request = QueryRequest::parse(
            b"Action=CreateTargetGroup&Version=2015-12-01&Name=web&Port=80",
            None,
        );
        assert_eq!(request.action(), Some("CreateTargetGroup"));
        assert_eq!(request.version(), Some("2015-12-01"));
        assert_eq!(request.get("Name"), Some("web"));
        assert_eq!(request.get("Port"), Some("80"));
        assert_eq!(request.get("Missing"), None);
    }

    #[test]
    fn decodes_percent_escapes_and_plus_as_space() {
        let request = QueryRequest::parse(
            b"Action=X&Path=%2Fa%2Fb%3Fc%3Dd&Desc=hello+world&Utf=%C3%A9t%C3%A9&Lit=a%2Bb",
            None,
        );
        assert_eq!(request.get("Path"), Some("/a/b?c=d"));
        assert_eq!(request.get("Desc"), Some("hello world"));
        assert_eq!(request.get("Utf"), Some("été"));
        assert_eq!(request.get("Lit"), Some("a+b"));
    }

    #[test]
    fn reads_uri_query_then_body() {
        let request = QueryRequest::parse(
            b"Name=fromBody",
            Some("Action=GetCallerIdentity&Version=2011-06-15"),
        );
        assert_eq!(request.action(), Some("GetCallerIdentity"));
        assert_eq!(request.get("Name"), Some("fromBody"));
        assert_eq!(request.pairs().len(), 3);
        let get_only = QueryRequest::parse(b"", Some("Action=ListUsers&Version=2010-05-08"));
        assert_eq!(get_only.action(), Some("ListUsers"));
    }

    #[test]
    fn lists_are_ordered_by_member_index() {
        let request = QueryRequest::parse(
            b"Names.member.10=j&Names.member.2=b&Names.member.1=a&Other.member.1=x&Names.member.x=bad",
            None,
        );
        assert_eq!(request.list("Names"), vec!["a", "b", "j"]);
        assert!(request.list("Absent").is_empty());
    }

    #[test]
    fn structs_group_members_by_index() {
        let request = QueryRequest::parse(
            b"Targets.member.2.Id=i-2&Targets.member.1.Id=i-1&Targets.member.1.Port=32768\
              &Conditions.member.1.Field=path-pattern\
              &Conditions.member.1.Values.member.1=%2Fapi%2F*\
              &Conditions.member.1.Values.member.2=%2Fv2",
            None,
        );
        assert_eq!(
            request.structs("Targets"),
            vec![
                map(&[("Id", "i-1"), ("Port", "32768")]),
                map(&[("Id", "i-2")])
            ]
        );
        assert_eq!(
            request.structs("Conditions"),
            vec![map(&[
                ("Field", "path-pattern"),
                ("Values.member.1", "/api/*"),
                ("Values.member.2", "/v2"),
            ])]
        );
    }

    #[test]
    fn tags_style_lists_are_structs() {
        let request = QueryRequest::parse(
            b"Tags.member.1.Key=env&Tags.member.1.Value=prod&Tags.member.2.Key=team&Tags.member.2.Value=",
            None,
        );
        assert_eq!(
            request.structs("Tags"),
            vec![
                map(&[("Key", "env"), ("Value", "prod")]),
                map(&[("Key", "team"), ("Value", "")])
            ]
        );
    }

    #[test]
    fn maps_read_entry_key_value() {
        let request = QueryRequest::parse(
            b"Attributes.entry.2.key=b&Attributes.entry.2.value=2\
              &Attributes.entry.1.value=1&Attributes.entry.1.key=a\
              &Attributes.entry.3.value=orphan&Attributes.entry.4.key=novalue",
            None,
        );
        assert_eq!(
            request.map("Attributes"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
                ("novalue".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn xml_writer_escapes_text_and_attributes() {
        let mut xml = XmlWriter::new();
        xml.open_with_xmlns("Root", "urn:a&b\"c");
        xml.leaf("Text", "<a href='x'>Tom & \"Jerry\"</a>\r\n\u{1}");
        xml.open("Empty");
        xml.close("Empty");
        xml.close("Root");
        assert_eq!(
            xml.finish(),
            "<Root xmlns=\"urn:a&amp;b&quot;c\"><Text>&lt;a href=&apos;x&apos;&gt;Tom &amp; \
             &quot;Jerry&quot;&lt;/a&gt;&#xD;\n</Text><Empty></Empty></Root>"
        );
    }

    #[tokio::test]
    async fn ok_response_wraps_result_and_metadata() {
        let mut result = XmlWriter::new();
        result.leaf("Arn", "arn:aws:iam::000000000000:user/alice");
        let response = ok_response(
            "GetCallerIdentity",
            "https://sts.amazonaws.com/doc/2011-06-15/",
            &result.finish(),
            "rid-1",
        );
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/xml");
        assert_eq!(response.headers()["x-amzn-requestid"], "rid-1");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf-8"),
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><Arn>arn:aws:iam::000000000000:user/alice</Arn>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>rid-1</RequestId>\
             </ResponseMetadata></GetCallerIdentityResponse>"
        );
    }
}
