//! A small XML reader for S3's answers (listings and error documents): elements, their text
//! and children; attributes, comments, processing instructions and the document type are
//! skipped; the five predefined entities, character references and CDATA sections are
//! decoded. Namespace prefixes are dropped from element names. Anything that is not
//! well-formed at the level of tags (unclosed or mismatched elements, a second root, text
//! outside the root, an unknown entity) is an error, so a damaged answer is never taken for a
//! short listing.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    /// The element's own text (its character data, concatenated), decoded.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Decodes `&lt;`, `&gt;`, `&amp;`, `&quot;`, `&apos;`, `&#N;` and `&#xH;`.
pub fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(|| format!("unterminated entity near {:?}", clip(&rest[i..])))?;
        let name = &after[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{name};"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Skips from `s` past the first `end`; an error when there is none.
fn skip_past<'a>(s: &'a str, end: &str, what: &str) -> Result<&'a str, String> {
    s.find(end)
        .map(|i| &s[i + end.len()..])
        .ok_or_else(|| format!("unterminated {what}"))
}

/// The end of a start or end tag: the first `>` outside a quoted attribute value.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn local_name(tag: &str) -> &str {
    let name = tag
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or("");
    name.rsplit(':').next().unwrap_or(name)
}

/// Parses a document into its root element.
pub fn parse(doc: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut rest = doc.strip_prefix('\u{feff}').unwrap_or(doc);
    let add_text = |stack: &mut Vec<Element>, text: &str, raw: bool| -> Result<(), String> {
        match stack.last_mut() {
            Some(top) => {
                if raw {
                    top.text.push_str(text);
                } else {
                    top.text.push_str(&unescape(text)?);
                }
                Ok(())
            }
            None if text.trim().is_empty() => Ok(()),
            None => Err(format!("text outside the root element: {:?}", clip(text))),
        }
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = skip_past(r, "?>", "processing instruction")?;
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = skip_past(r, "-->", "comment")?;
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>").ok_or("unterminated CDATA section")?;
            add_text(&mut stack, &r[..end], true)?;
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("<!") {
            if stack.is_empty() && root.is_none() {
                let end = tag_end(r).ok_or("unterminated declaration")?;
                if r[..end].contains('[') {
                    return Err("document type declarations with a subset are not accepted".into());
                }
                rest = &r[end + 1..];
            } else {
                return Err("unexpected declaration inside the document".into());
            }
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = tag_end(r).ok_or("unterminated end tag")?;
            let name = local_name(r[..end].trim());
            let el = stack
                .pop()
                .ok_or_else(|| format!("end tag </{name}> without a start"))?;
            if el.name != name {
                return Err(format!("end tag </{name}> closes <{}>", el.name));
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None if root.is_none() => root = Some(el),
                None => return Err("more than one root element".into()),
            }
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('<') {
            let end = tag_end(r).ok_or("unterminated start tag")?;
            let tag = &r[..end];
            let name = local_name(tag);
            if name.is_empty() {
                return Err("start tag without a name".into());
            }
            if stack.is_empty() && root.is_some() {
                return Err("more than one root element".into());
            }
            let el = Element {
                name: name.to_string(),
                ..Element::default()
            };
            if tag.ends_with('/') {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            } else {
                stack.push(el);
            }
            rest = &r[end + 1..];
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            add_text(&mut stack, &rest[..end], false)?;
            rest = &rest[end..];
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("element <{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no root element".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
            <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
            <Name>charts</Name><Prefix></Prefix><IsTruncated>false</IsTruncated>\
            <Contents><Key>a&amp;b &lt;c&gt; &#34;d&#x27;.tgz</Key>\
            <ETag>&quot;b1946ac92492d2347c6235b4d2611184&quot;</ETag><Size>6</Size>\
            <LastModified>2026-11-26T10:12:23Z</LastModified></Contents>\
            <Contents><Key><![CDATA[x<y>.tgz]]></Key><Size>1</Size></Contents>\
            <CommonPrefixes><Prefix>org/</Prefix></CommonPrefixes>\
            <!-- a comment --><s3:Empty/></ListBucketResult>";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "ListBucketResult");
        assert_eq!(root.child_text("IsTruncated"), Some("false"));
        let c: Vec<&Element> = root.children_named("Contents").collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].child_text("Key"), Some("a&b <c> \"d'.tgz"));
        assert_eq!(
            c[0].child_text("ETag"),
            Some("\"b1946ac92492d2347c6235b4d2611184\"")
        );
        assert_eq!(c[1].child_text("Key"), Some("x<y>.tgz"));
        assert!(root.child("Empty").is_some());
        assert_eq!(
            root.child("CommonPrefixes").unwrap().child_text("Prefix"),
            Some("org/")
        );
    }

    #[test]
    fn damaged_documents_are_refused() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "x<a/>",
            "<a>&bogus;</a>",
            "<a>&amp</a>",
            "<a><![CDATA[x</a>",
            "<a><!-- x</a>",
            "</a>",
            "<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse("<a k='x>y'>1</a>").unwrap().text,
            "1",
            "> inside an attribute"
        );
        assert_eq!(unescape("&#128512;").unwrap(), "😀");
    }
}
