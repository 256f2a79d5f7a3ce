//! S3 ACLs: canned ACLs, `x-amz-grant-*` headers, AccessControlPolicy documents, and the
//! compact JSON form stored with a bucket (stream metadata) or an object (its metadata).

use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::error::{S3Code, S3Error, S3Result};
use crate::xml::{self, XmlWriter};

/// The group of everyone, anonymous callers included.
pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The group of every authenticated caller (every jets3 credential).
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Grantee {
    /// A credential, by canonical user id.
    User(String),
    AllUsers,
    AuthenticatedUsers,
}

/// An ACL permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Perm {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

impl Perm {
    fn as_str(self) -> &'static str {
        match self {
            Perm::Read => "READ",
            Perm::Write => "WRITE",
            Perm::ReadAcp => "READ_ACP",
            Perm::WriteAcp => "WRITE_ACP",
            Perm::FullControl => "FULL_CONTROL",
        }
    }

    fn parse(s: &str) -> Option<Perm> {
        Some(match s {
            "READ" => Perm::Read,
            "WRITE" => Perm::Write,
            "READ_ACP" => Perm::ReadAcp,
            "WRITE_ACP" => Perm::WriteAcp,
            "FULL_CONTROL" => Perm::FullControl,
            _ => return None,
        })
    }

    /// Whether a grant of `self` gives `need`.
    pub fn covers(self, need: Perm) -> bool {
        self == need || self == Perm::FullControl
    }
}

/// An access control list: its owner and grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// Canonical user id of the owner.
    pub owner: String,
    pub grants: Vec<(Grantee, Perm)>,
}

/// The canned ACLs and what they add to the owner's FULL_CONTROL.
fn canned(name: &str, owner: &str, bucket_owner: &str) -> Option<Vec<(Grantee, Perm)>> {
    let mut g = vec![(Grantee::User(owner.to_string()), Perm::FullControl)];
    match name {
        "private" => {}
        "public-read" => g.push((Grantee::AllUsers, Perm::Read)),
        "public-read-write" => {
            g.push((Grantee::AllUsers, Perm::Read));
            g.push((Grantee::AllUsers, Perm::Write));
        }
        "authenticated-read" => g.push((Grantee::AuthenticatedUsers, Perm::Read)),
        "bucket-owner-read" if bucket_owner != owner => {
            g.push((Grantee::User(bucket_owner.to_string()), Perm::Read))
        }
        "bucket-owner-full-control" if bucket_owner != owner => {
            g.push((Grantee::User(bucket_owner.to_string()), Perm::FullControl))
        }
        "bucket-owner-read" | "bucket-owner-full-control" => {}
        _ => return None,
    }
    Some(g)
}

/// Grant headers and the permission each gives.
const GRANT_HEADERS: &[(&str, Perm)] = &[
    ("x-amz-grant-read", Perm::Read),
    ("x-amz-grant-write", Perm::Write),
    ("x-amz-grant-read-acp", Perm::ReadAcp),
    ("x-amz-grant-write-acp", Perm::WriteAcp),
    ("x-amz-grant-full-control", Perm::FullControl),
];

/// Whether a request sets an ACL with headers.
pub fn requested(headers: &HeaderMap) -> bool {
    headers.contains_key("x-amz-acl") || GRANT_HEADERS.iter().any(|(h, _)| headers.contains_key(*h))
}

/// Who may be named in a grant: the canonical ids of configured credentials.
pub trait KnownIds {
    fn known(&self, canonical_id: &str) -> bool;
}

fn invalid_id(id: &str) -> S3Error {
    S3Error::new(S3Code::InvalidArgument, "Invalid id")
        .with("ArgumentName", "CanonicalUser/ID")
        .with("ArgumentValue", id)
}

fn grantee(kind: &str, value: &str, ids: &dyn KnownIds) -> S3Result<Grantee> {
    match kind {
        "id" | "CanonicalUser" => {
            let id = value.to_ascii_lowercase();
            if ids.known(&id) {
                Ok(Grantee::User(id))
            } else {
                Err(invalid_id(value))
            }
        }
        "uri" | "Group" => match value {
            ALL_USERS => Ok(Grantee::AllUsers),
            AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
            _ => Err(S3Error::new(S3Code::InvalidArgument, "Invalid group uri")
                .with("ArgumentName", "Group/URI")
                .with("ArgumentValue", value)),
        },
        "emailAddress" | "AmazonCustomerByEmail" => Err(S3Error::new(
            S3Code::UnresolvableGrantByEmailAddress,
            "The email address you provided does not match any account on record.",
        )),
        _ => Err(
            S3Error::new(S3Code::InvalidArgument, "Invalid grantee type")
                .with("ArgumentName", "Grantee")
                .with("ArgumentValue", kind),
        ),
    }
}

/// The ACL a request sets with `x-amz-acl` or `x-amz-grant-*` headers, if it sets one.
/// `owner` is the caller's canonical id, `bucket_owner` the bucket's owner.
pub fn from_headers(
    headers: &HeaderMap,
    owner: &str,
    bucket_owner: &str,
    ids: &dyn KnownIds,
) -> S3Result<Option<Acl>> {
    let canned_name = headers.get("x-amz-acl").map(|v| v.to_str().unwrap_or(""));
    let granted = GRANT_HEADERS.iter().any(|(h, _)| headers.contains_key(*h));
    if canned_name.is_some() && granted {
        return Err(S3Error::invalid_request(
            "Specifying both Canned ACLs and Header Grants is not allowed",
        ));
    }
    if let Some(name) = canned_name {
        let grants = canned(name.trim(), owner, bucket_owner).ok_or_else(|| {
            S3Error::new(S3Code::InvalidArgument, "Invalid canned ACL")
                .with("ArgumentName", "x-amz-acl")
                .with("ArgumentValue", name)
        })?;
        return Ok(Some(Acl {
            owner: owner.to_string(),
            grants,
        }));
    }
    if !granted {
        return Ok(None);
    }
    let mut grants = Vec::new();
    for (h, perm) in GRANT_HEADERS {
        for v in headers.get_all(*h) {
            let text = v
                .to_str()
                .map_err(|_| S3Error::invalid_request("bad grant header"))?;
            for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (kind, value) = item
                    .split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
                    .ok_or_else(|| {
                        S3Error::new(S3Code::InvalidArgument, "Invalid grant header")
                            .with("ArgumentName", *h)
                            .with("ArgumentValue", item)
                    })?;
                grants.push((grantee(kind, value, ids)?, *perm));
            }
        }
    }
    Ok(Some(Acl {
        owner: owner.to_string(),
        grants,
    }))
}

#[derive(Deserialize)]
struct PolicyXml {
    #[serde(rename = "Owner", default)]
    owner: Option<OwnerXml>,
    #[serde(rename = "AccessControlList", default)]
    list: Option<ListXml>,
}

#[derive(Deserialize)]
struct OwnerXml {
    #[serde(rename = "ID", default)]
    id: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListXml {
    #[serde(rename = "Grant", default)]
    grants: Vec<GrantXml>,
}

#[derive(Deserialize)]
struct GrantXml {
    #[serde(rename = "Grantee")]
    grantee: GranteeXml,
    #[serde(rename = "Permission")]
    permission: String,
}

#[derive(Deserialize)]
struct GranteeXml {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "URI", default)]
    uri: Option<String>,
    #[serde(rename = "EmailAddress", default)]
    email: Option<String>,
}

/// Parses an AccessControlPolicy document. The owner, when given, must be `owner` (S3
/// does not let an ACL change the owner).
pub fn from_xml(body: &[u8], owner: &str, ids: &dyn KnownIds) -> S3Result<Acl> {
    let malformed = || {
        S3Error::new(
            S3Code::MalformedACLError,
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    };
    let doc: PolicyXml = xml::parse(body).map_err(|_| malformed())?;
    let list = doc.list.ok_or_else(malformed)?;
    if let Some(id) = doc.owner.and_then(|o| o.id) {
        if !id.eq_ignore_ascii_case(owner) {
            return Err(S3Error::access_denied());
        }
    }
    let mut grants = Vec::new();
    for g in list.grants {
        let perm = Perm::parse(g.permission.trim()).ok_or_else(malformed)?;
        let who = match (g.grantee.id, g.grantee.uri, g.grantee.email) {
            (Some(id), None, None) => grantee("id", id.trim(), ids)?,
            (None, Some(uri), None) => grantee("uri", uri.trim(), ids)?,
            (None, None, Some(e)) => grantee("emailAddress", e.trim(), ids)?,
            _ => return Err(malformed()),
        };
        grants.push((who, perm));
    }
    Ok(Acl {
        owner: owner.to_string(),
        grants,
    })
}

impl Acl {
    /// The owner with FULL_CONTROL: what a bucket or object without a stored ACL has.
    pub fn private(owner: &str) -> Acl {
        Acl {
            owner: owner.to_string(),
            grants: vec![(Grantee::User(owner.to_string()), Perm::FullControl)],
        }
    }

    /// Whether it grants anything to everyone or to every credential.
    pub fn is_public(&self) -> bool {
        self.grants
            .iter()
            .any(|(g, _)| matches!(g, Grantee::AllUsers | Grantee::AuthenticatedUsers))
    }

    /// Whether it gives `need` to the caller (`None`: anonymous). With `ignore_public`
    /// (Block Public Access), grants to the groups count for nothing. The owner may always
    /// read and change the ACL itself, whatever it grants (as on S3).
    pub fn allows(&self, caller: Option<&str>, need: Perm, ignore_public: bool) -> bool {
        let acp = matches!(need, Perm::ReadAcp | Perm::WriteAcp);
        if acp && caller == Some(self.owner.as_str()) {
            return true;
        }
        self.grants.iter().any(|(g, p)| {
            p.covers(need)
                && match g {
                    Grantee::User(id) => caller == Some(id.as_str()),
                    Grantee::AllUsers => !ignore_public,
                    Grantee::AuthenticatedUsers => !ignore_public && caller.is_some(),
                }
        })
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form; `None` if it is not a valid ACL (read from NATS: untrusted).
    pub fn decode(text: &str) -> Option<Acl> {
        let acl: Acl = serde_json::from_str(text).ok()?;
        acl.is_valid().then_some(acl)
    }

    /// Whether an ACL read from NATS is well formed (ids of 64 hex digits, at most 100
    /// grants, as S3 allows).
    pub fn is_valid(&self) -> bool {
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        hex64(&self.owner)
            && self.grants.len() <= 100
            && self.grants.iter().all(|(g, _)| match g {
                Grantee::User(id) => hex64(id),
                _ => true,
            })
    }

    /// The AccessControlPolicy document.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new("AccessControlPolicy");
        w.open("Owner")
            .elem("ID", &self.owner)
            .close("Owner")
            .open("AccessControlList");
        for (g, p) in &self.grants {
            w.open("Grant");
            match g {
                Grantee::User(id) => {
                    w.raw("<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\">")
                        .elem("ID", id);
                }
                Grantee::AllUsers | Grantee::AuthenticatedUsers => {
                    let uri = if *g == Grantee::AllUsers {
                        ALL_USERS
                    } else {
                        AUTHENTICATED_USERS
                    };
                    w.raw("<Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\">")
                        .elem("URI", uri);
                }
            }
            w.close("Grantee")
                .elem("Permission", p.as_str())
                .close("Grant");
        }
        w.close("AccessControlList");
        w.finish("AccessControlPolicy")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ids(Vec<String>);
    impl KnownIds for Ids {
        fn known(&self, id: &str) -> bool {
            self.0.iter().any(|i| i == id)
        }
    }

    fn id(n: u8) -> String {
        format!("{n:064x}")
    }

    #[test]
    fn canned_acls() {
        let ids = Ids(vec![]);
        let mut h = HeaderMap::new();
        for (name, public) in [
            ("private", false),
            ("public-read", true),
            ("public-read-write", true),
            ("authenticated-read", true),
            ("bucket-owner-read", false),
            ("bucket-owner-full-control", false),
        ] {
            h.insert("x-amz-acl", name.parse().expect("header"));
            let acl = from_headers(&h, &id(1), &id(2), &ids)
                .expect("valid")
                .expect("set");
            assert_eq!(acl.is_public(), public, "{name}");
            assert!(acl.allows(Some(&id(1)), Perm::WriteAcp, true), "{name}");
            assert_eq!(
                acl.allows(Some(&id(2)), Perm::Read, true),
                name.starts_with("bucket-owner"),
                "{name}"
            );
            assert_eq!(
                acl.allows(None, Perm::Read, false),
                name.starts_with("public")
            );
            assert!(!acl.allows(None, Perm::Read, true), "ignored when blocked");
            assert_eq!(Acl::decode(&acl.encode()), Some(acl));
        }
        h.insert("x-amz-acl", "aws-exec-read".parse().expect("header"));
        let e = from_headers(&h, &id(1), &id(1), &ids).expect_err("not canned");
        assert_eq!(e.code, S3Code::InvalidArgument);
    }

    #[test]
    fn grant_headers_name_known_ids_only() {
        let ids = Ids(vec![id(3)]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-grant-read",
            format!("id=\"{}\", uri=\"{ALL_USERS}\"", id(3))
                .parse()
                .expect("h"),
        );
        let acl = from_headers(&h, &id(1), &id(1), &ids)
            .expect("ok")
            .expect("set");
        assert!(acl.allows(Some(&id(3)), Perm::Read, false));
        assert!(!acl.allows(Some(&id(3)), Perm::Write, false));
        // Its owner has granted itself nothing, and may still read and change the ACL.
        assert!(!acl.allows(Some(&id(1)), Perm::Read, true));
        assert!(acl.allows(Some(&id(1)), Perm::ReadAcp, false));
        assert!(acl.allows(Some(&id(1)), Perm::WriteAcp, false));
        assert!(!acl.allows(Some(&id(3)), Perm::ReadAcp, false));
        h.insert(
            "x-amz-grant-write",
            format!("id={}", id(4)).parse().expect("h"),
        );
        let e = from_headers(&h, &id(1), &id(1), &ids).expect_err("unknown id");
        assert_eq!(e.code, S3Code::InvalidArgument);
        h.insert("x-amz-acl", "private".parse().expect("h"));
        let e = from_headers(&h, &id(1), &id(1), &ids).expect_err("both");
        assert_eq!(e.code, S3Code::InvalidRequest);
    }

    #[test]
    fn xml_documents_round_trip() {
        let ids = Ids(vec![id(3)]);
        let mut acl = Acl::private(&id(1));
        acl.grants.push((Grantee::User(id(3)), Perm::Read));
        acl.grants.push((Grantee::AuthenticatedUsers, Perm::Read));
        let doc = acl.to_xml();
        assert_eq!(
            from_xml(doc.as_bytes(), &id(1), &Ids(vec![id(1), id(3)])).expect("ok"),
            acl
        );
        let e = from_xml(doc.as_bytes(), &id(1), &ids).expect_err("owner unknown as grantee");
        assert_eq!(e.code, S3Code::InvalidArgument);
        let e = from_xml(doc.as_bytes(), &id(2), &ids).expect_err("other owner");
        assert_eq!(e.code, S3Code::AccessDenied);
        let e = from_xml(b"<AccessControlPolicy/>", &id(1), &ids).expect_err("no list");
        assert_eq!(e.code, S3Code::MalformedACLError);
        assert_eq!(Acl::decode(r#"{"owner":"x","grants":[]}"#), None);
    }
}
