//! The Blob service's XML answers: one page of List Blobs (`EnumerationResults`) and the error
//! document (`<Error><Code>…</Code><Message>…</Message></Error>`), read with the small XML
//! reader of the S3 backend. A damaged page is an error, never a shorter listing.

use crate::storage::s3::xml;
use crate::storage::swift::time;

/// One blob of a listing page: full name, size, and time (nanoseconds, whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub name: String,
    pub size: u64,
    pub modified_ns: i64,
}

/// One page: its blobs and the marker of the next page (none: the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub blobs: Vec<Blob>,
    pub next: Option<String>,
}

/// Parses one List Blobs page. Folded "directories" (`BlobPrefix`) are skipped.
pub fn parse_page(body: &str) -> Result<Page, String> {
    let root = xml::parse(body)?;
    if root.name != "EnumerationResults" {
        return Err(format!("root element <{}>", root.name));
    }
    let mut blobs = Vec::new();
    if let Some(list) = root.child("Blobs") {
        for b in list.children_named("Blob") {
            let name = b.child_text("Name").ok_or("a blob without a name")?;
            let props = b
                .child("Properties")
                .ok_or_else(|| format!("no properties for {name:?}"))?;
            let size = props
                .child_text("Content-Length")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("no size for {name:?}"))?;
            // A blob without a readable time is a damaged answer, not one to leave out.
            let modified_ns = props
                .child_text("Last-Modified")
                .and_then(time::parse_http_date)
                .ok_or_else(|| format!("no readable Last-Modified for {name:?}"))?;
            blobs.push(Blob {
                name: name.to_string(),
                size,
                modified_ns,
            });
        }
    }
    let next = root
        .child_text("NextMarker")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    Ok(Page { blobs, next })
}

/// The code, message and (for a rejected signature) detail of an error document.
pub fn error_code(body: &str) -> Option<(String, String)> {
    let root = xml::parse(body).ok()?;
    if root.name != "Error" {
        return None;
    }
    let code = root
        .child_text("Code")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut msg = root
        .child_text("Message")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Some(d) = root.child_text("AuthenticationErrorDetail") {
        msg = format!("{msg} ({})", d.trim());
    }
    Some((code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
        <EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/devstoreaccount1\" \
        ContainerName=\"charts\"><Prefix>p/</Prefix><MaxResults>2</MaxResults>\
        <Delimiter>/</Delimiter><Blobs>\
        <Blob><Name>p/a &amp; b.tgz</Name><Properties>\
        <Last-Modified>Thu, 26 Nov 2026 10:12:23 GMT</Last-Modified>\
        <Etag>0x8DB</Etag><Content-Length>3</Content-Length>\
        <Content-MD5>rL0Y20zC+Fzt72VPzMSk2A==</Content-MD5></Properties></Blob>\
        <BlobPrefix><Name>p/sub/</Name></BlobPrefix>\
        </Blobs><NextMarker>p/a &amp; b.tgz</NextMarker></EnumerationResults>";

    #[test]
    fn a_page_and_its_marker() {
        let page = parse_page(PAGE).unwrap();
        assert_eq!(page.next.as_deref(), Some("p/a & b.tgz"));
        assert_eq!(
            page.blobs,
            [Blob {
                name: "p/a & b.tgz".into(),
                size: 3,
                modified_ns: time::parse_http_date("Thu, 26 Nov 2026 10:12:23 GMT").unwrap(),
            }]
        );
        let last =
            parse_page("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
        assert_eq!(
            last,
            Page {
                blobs: vec![],
                next: None
            }
        );
    }

    #[test]
    fn damaged_pages_are_errors() {
        for bad in [
            "",
            "<Error/>",
            "<EnumerationResults><Blobs><Blob><Name>a</Name></Blob></Blobs></EnumerationResults>",
            "<EnumerationResults><Blobs><Blob><Properties><Content-Length>1</Content-Length>\
             </Properties></Blob></Blobs></EnumerationResults>",
            "<EnumerationResults><Blobs><Blob><Name>a</Name><Properties>\
             <Content-Length>1</Content-Length><Last-Modified>yesterday</Last-Modified>\
             </Properties></Blob></Blobs></EnumerationResults>",
            "<EnumerationResults><Blobs><Blob><Name>a</Name><Properties>\
             <Content-Length>-1</Content-Length>\
             <Last-Modified>Thu, 26 Nov 2026 10:12:23 GMT</Last-Modified>\
             </Properties></Blob></Blobs></EnumerationResults>",
            &PAGE[..PAGE.len() - 5],
        ] {
            assert!(parse_page(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn error_documents() {
        assert_eq!(
            error_code(
                "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code>\
                 <Message>Server failed to authenticate the request.\nRequestId:x</Message>\
                 <AuthenticationErrorDetail>bad sig</AuthenticationErrorDetail></Error>"
            ),
            Some((
                "AuthenticationFailed".into(),
                "Server failed to authenticate the request. (bad sig)".into()
            ))
        );
        assert_eq!(error_code("<x/>"), None);
        assert_eq!(error_code("not xml"), None);
    }

    /// A huge page: 20,000 blobs with odd names (unicode, markup, entities) parse in order.
    #[test]
    fn a_huge_page_with_odd_names() {
        let mut doc = String::from("<EnumerationResults><Blobs>");
        for i in 0..20_000 {
            doc.push_str(&format!(
                "<Blob><Name>ü&lt;&amp;&#x1F600; {i}.tgz</Name><Properties>\
                 <Last-Modified>Thu, 26 Nov 2026 10:12:23 GMT</Last-Modified>\
                 <Content-Length>{i}</Content-Length></Properties></Blob>"
            ));
        }
        doc.push_str("</Blobs><NextMarker>m</NextMarker></EnumerationResults>");
        let page = parse_page(&doc).unwrap();
        assert_eq!(page.blobs.len(), 20_000);
        assert_eq!(page.blobs[7].name, "ü<&\u{1f600} 7.tgz");
        assert_eq!(page.blobs[19_999].size, 19_999);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Any text is a page or an error, never a panic.
        #[test]
        fn any_text_parses_or_fails(doc in "\\PC{0,300}") {
            let _ = parse_page(&doc);
            let _ = error_code(&doc);
        }

        /// Any blob name (control characters and unicode included) written as XML text comes
        /// back as it was.
        #[test]
        fn any_name_round_trips(name in "[^\u{0}]{1,60}", size in any::<u64>()) {
            let esc = name
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let doc = format!(
                "<EnumerationResults><Blobs><Blob><Name>{esc}</Name><Properties>\
                 <Last-Modified>Thu, 26 Nov 2026 10:12:23 GMT</Last-Modified>\
                 <Content-Length>{size}</Content-Length></Properties></Blob></Blobs>\
                 </EnumerationResults>"
            );
            let page = parse_page(&doc).unwrap();
            prop_assert_eq!(&page.blobs[0].name, &name);
            prop_assert_eq!(page.blobs[0].size, size);
        }

        /// A document cut anywhere is an error or a page whose blobs were all whole.
        #[test]
        fn a_cut_page_is_never_taken_for_whole(cut in 0usize..PAGE.len()) {
            if let Some(doc) = PAGE.get(..cut) {
                prop_assert!(parse_page(doc).is_err());
            }
        }
    }
}
