//! The S3 XML wire format: a small writer for responses and serde types for request bodies.

use std::fmt::Write as _;

/// Escapes text for XML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The S3 document namespace.
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Builds an XML document element by element.
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// Starts a document whose root carries the S3 namespace.
    pub fn new(root: &str) -> Self {
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(S3_NS);
        out.push_str("\">");
        XmlWriter { out }
    }

    /// `<name>text</name>`.
    pub fn elem(&mut self, name: &str, text: impl AsRef<str>) -> &mut Self {
        self.open(name);
        escape_into(&mut self.out, text.as_ref());
        self.close(name)
    }

    /// `<name>text</name>` when `text` is present.
    pub fn opt(&mut self, name: &str, text: Option<impl AsRef<str>>) -> &mut Self {
        if let Some(t) = text {
            self.elem(name, t);
        }
        self
    }

    /// `<name>`.
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Raw markup, for the rare element with attributes.
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

/// Parses a request body document; anything malformed (or with a DTD) is `MalformedXML`.
/// The text of leaf elements is taken exactly as sent (entities and CDATA decoded, nothing
/// trimmed): keys and tag values may begin or end with blanks.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> crate::error::S3Result<T> {
    let malformed = |e: &dyn std::fmt::Display| {
        tracing::debug!(error = %e, "malformed XML body");
        crate::error::S3Error::malformed_xml()
    };
    let text = std::str::from_utf8(body).map_err(|e| malformed(&e))?;
    let exact = exact_leaf_text(text).map_err(|e| malformed(&e))?;
    quick_xml::de::from_str(&exact).map_err(|e| malformed(&e))
}

/// Rewrites `doc` with the text of every leaf element as CDATA, which the serde
/// deserializer passes on untrimmed (it trims text events, and skips blank ones).
fn exact_leaf_text(doc: &str) -> Result<String, quick_xml::Error> {
    use quick_xml::events::{BytesCData, Event};
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(doc.len() + 64));
    // Events since the last start tag, held until it is known whether the element is a leaf.
    let mut held: Vec<Event> = Vec::new();
    let mut in_leaf = false;
    loop {
        let event = reader.read_event()?;
        match event {
            Event::Eof => break,
            Event::DocType(_) => {
                return Err(quick_xml::Error::Syntax(
                    quick_xml::errors::SyntaxError::InvalidBangMarkup,
                ))
            }
            Event::Text(_) | Event::CData(_) if in_leaf => held.push(event),
            Event::End(_) if in_leaf => {
                let mut exact = String::new();
                for e in held.drain(..) {
                    match e {
                        Event::Text(t) => exact.push_str(&t.unescape()?),
                        Event::CData(c) => exact.push_str(&c.decode()?),
                        _ => {}
                    }
                }
                for piece in BytesCData::escaped(&exact) {
                    writer.write_event(Event::CData(piece))?;
                }
                writer.write_event(event)?;
                in_leaf = false;
            }
            e => {
                for h in held.drain(..) {
                    writer.write_event(h)?;
                }
                in_leaf = matches!(e, Event::Start(_));
                writer.write_event(e)?;
            }
        }
    }
    String::from_utf8(writer.into_inner())
        .map_err(|e| quick_xml::Error::Encoding(e.utf8_error().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"'\r\u{1}"),
            "a&lt;b&gt;&amp;&quot;&apos;&#13;&#1;"
        );
    }

    #[test]
    fn leaf_text_is_kept_exactly() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Doc {
            #[serde(rename = "K", default)]
            keys: Vec<String>,
            #[serde(rename = "N", default)]
            n: Option<u32>,
        }
        let doc: Doc = parse(
            b"<?xml version=\"1.0\"?>\n<Doc>\n  <K> </K>\n  <K>_ </K><K>\ta\n</K>\n  <K>a&amp;&#32;b</K><K><![CDATA[ <c> ]]></K><K></K>\n  <N>7</N></Doc>",
        )
        .expect("parses");
        assert_eq!(doc.keys, vec![" ", "_ ", "\ta\n", "a& b", " <c> ", ""]);
        assert_eq!(doc.n, Some(7));
        let blank: Doc = parse(b"<Doc>\n  </Doc>").expect("an element of blanks");
        assert_eq!(
            blank,
            Doc {
                keys: vec![],
                n: None
            }
        );
        #[derive(serde::Deserialize, Debug)]
        struct Outer {
            #[serde(rename = "Doc")]
            doc: Doc,
        }
        let nested: Outer = parse(b"<Outer><Doc> </Doc></Outer>").expect("nested blanks");
        assert!(nested.doc.keys.is_empty());
        assert!(parse::<Doc>(b"<!DOCTYPE d [<!ENTITY x \"y\">]><Doc><K>&x;</K></Doc>").is_err());
        assert!(parse::<Doc>(b"<Doc><K>&bad;</K></Doc>").is_err());
    }

    #[test]
    fn writes_nested_documents() {
        let mut w = XmlWriter::new("R");
        w.open("A")
            .elem("K", "x&y")
            .close("A")
            .opt("N", None::<&str>);
        assert_eq!(
            w.finish("R"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><A><K>x&amp;y</K></A></R>"
        );
    }
}
