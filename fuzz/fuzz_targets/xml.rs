//! The XML request bodies: DeleteObjects, CompleteMultipartUpload, tagging, CORS,
//! CreateBucketConfiguration, ACL, VersioningConfiguration.
//!
//! First byte: which body (0-6) the rest is, parsed as the handler does (no panic, only
//! client errors); 7: structured input (arbitrary) written as each document with the
//! gateway's own XML writer, which must parse back to exactly the text written.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use jets3_fuzz::client_error;
use jets3_gateway::error::{S3Code, S3Result};
use jets3_gateway::fuzzing as f;
use jets3_gateway::xml::XmlWriter;
use libfuzzer_sys::fuzz_target;

const BUCKET: &str = "my.bucket-1";

fn check<T>(r: S3Result<T>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            client_error(&e, what);
            None
        }
    }
}

fn body(kind: u8, body: &[u8]) {
    match kind % 7 {
        0 => {
            check(f::delete_objects(body), "DeleteObjects");
        }
        1 => {
            check(f::complete_multipart(body), "CompleteMultipartUpload");
        }
        2 => {
            if let Some(tags) = check(f::parse_tagging(body, 10), "Tagging") {
                assert!(tags.len() <= 10, "more than 10 tags accepted");
                for (i, (k, _)) in tags.iter().enumerate() {
                    assert!(
                        !k.is_empty() && !k.starts_with("aws:"),
                        "tag key {k:?} accepted"
                    );
                    assert!(
                        tags[..i].iter().all(|(o, _)| o != k),
                        "repeated tag key {k:?}"
                    );
                }
            }
        }
        3 => {
            if let Some(rules) = check(f::cors(body, BUCKET), "CORS") {
                assert!(
                    !rules.is_empty(),
                    "a CORS configuration without rules accepted"
                );
                let json = serde_json::to_string(&rules).expect("rules serialize");
                let back: Vec<jets3_crds::CorsRule> =
                    serde_json::from_str(&json).expect("stored rules parse");
                assert_eq!(back, rules, "stored CORS rules change on reading");
                for origin in ["http://a.example", "https://x", "null", ""] {
                    for method in ["GET", "PUT", "POST", "DELETE", "HEAD"] {
                        f::cors_match(&rules, origin, method, &["content-type", "x-amz-date"]);
                    }
                }
            }
        }
        4 => {
            check(f::create_bucket(body), "CreateBucketConfiguration");
        }
        5 => {
            check(f::acl(body, "owner", &["owner"]), "AccessControlPolicy");
        }
        _ => {
            check(f::versioning(body), "VersioningConfiguration");
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Docs {
    objects: Vec<(String, Option<String>)>,
    quiet: Option<bool>,
    parts: Vec<(u32, String)>,
    tags: Vec<(String, String)>,
    origins: Vec<String>,
    location: String,
    status: String,
}

fn round_trip(d: &Docs) {
    // XML 1.0 text cannot hold most control characters, whatever the escaping.
    let text = |s: &str| s.chars().all(|c| c >= ' ' || c == '\t' || c == '\n');
    let objects: Vec<(String, Option<String>)> = d
        .objects
        .iter()
        .filter(|(k, v)| !k.is_empty() && text(k) && v.as_deref().is_none_or(text))
        .cloned()
        .collect();
    if !objects.is_empty() {
        let mut w = XmlWriter::new("Delete");
        for (k, v) in &objects {
            w.open("Object")
                .elem("Key", k)
                .opt("VersionId", v.as_deref())
                .close("Object");
        }
        w.opt("Quiet", d.quiet.map(|q| q.to_string()));
        let doc = w.finish("Delete");
        let got = f::delete_objects(doc.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {doc}"));
        let want: Vec<(String, Option<String>)> = objects
            .into_iter()
            .map(|(k, v)| (k, v.filter(|v| !v.is_empty())))
            .collect();
        let got_objects: Vec<(String, Option<String>)> = got
            .0
            .into_iter()
            .map(|(k, v)| (k, v.filter(|v| !v.is_empty())))
            .collect();
        assert_eq!(got_objects, want, "DeleteObjects keys change: {doc}");
        assert_eq!(got.1, d.quiet, "Quiet changes: {doc}");
    }
    let parts: Vec<(u32, String)> = d
        .parts
        .iter()
        .filter(|(_, e)| !e.is_empty() && text(e))
        .cloned()
        .collect();
    if !parts.is_empty() {
        let mut w = XmlWriter::new("CompleteMultipartUpload");
        for (n, e) in &parts {
            w.open("Part")
                .elem("PartNumber", n.to_string())
                .elem("ETag", e)
                .close("Part");
        }
        let doc = w.finish("CompleteMultipartUpload");
        let got = f::complete_multipart(doc.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {doc}"));
        assert_eq!(got, parts, "Complete parts change: {doc}");
    }
    let tags: Vec<(String, String)> = d
        .tags
        .iter()
        .filter(|(k, v)| !k.is_empty() && text(k) && text(v))
        .cloned()
        .collect();
    let mut w = XmlWriter::new("Tagging");
    w.open("TagSet");
    for (k, v) in &tags {
        w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
    }
    w.close("TagSet");
    let doc = w.finish("Tagging");
    match f::parse_tagging(doc.as_bytes(), usize::MAX) {
        Ok(got) => assert_eq!(got, tags, "tags change: {doc}"),
        Err(e) => assert_eq!(e.code, S3Code::InvalidTag, "{e:?}: {doc}"),
    }
    let origins: Vec<&String> = d.origins.iter().filter(|o| text(o)).collect();
    if !origins.is_empty() {
        let mut w = XmlWriter::new("CORSConfiguration");
        w.open("CORSRule");
        for o in &origins {
            w.elem("AllowedOrigin", o);
        }
        w.elem("AllowedMethod", "GET").close("CORSRule");
        let doc = w.finish("CORSConfiguration");
        if let Ok(rules) = f::cors(doc.as_bytes(), BUCKET) {
            let got: Vec<&String> = rules[0].allowed_origins.iter().collect();
            assert_eq!(got, origins, "CORS origins change: {doc}");
        }
    }
    if text(&d.location) && !d.location.is_empty() {
        let mut w = XmlWriter::new("CreateBucketConfiguration");
        w.elem("LocationConstraint", &d.location);
        let doc = w.finish("CreateBucketConfiguration");
        let got = f::create_bucket(doc.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {doc}"));
        assert_eq!(
            got.as_deref(),
            Some(d.location.as_str()),
            "location changes: {doc}"
        );
    }
    if text(&d.status) && !d.status.is_empty() {
        let mut w = XmlWriter::new("VersioningConfiguration");
        w.elem("Status", &d.status);
        let doc = w.finish("VersioningConfiguration");
        let got = f::versioning(doc.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {doc}"));
        assert_eq!(
            got.0.as_deref(),
            Some(d.status.as_str()),
            "status changes: {doc}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((k, rest)) if k % 8 == 7 => {
            if let Ok(d) = Docs::arbitrary(&mut Unstructured::new(rest)) {
                round_trip(&d);
            }
        }
        Some((kind, rest)) => body(*kind, rest),
        None => {}
    }
});
