use std::collections::HashMap;

use super::*;

struct Ctx(HashMap<&'static str, String>);

impl Context for Ctx {
    fn value(&self, key: &str) -> Option<Cow<'_, str>> {
        self.0.get(key).map(|v| Cow::Borrowed(v.as_str()))
    }
}

fn ctx(pairs: &[(&'static str, &str)]) -> Ctx {
    Ctx(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
}

fn decide(p: &Policy, who: Option<&str>, action: &str, resource: &str, c: &Ctx) -> Decision {
    let id = who.map(PrincipalId::of_access_key);
    p.evaluate(&Request {
        principal: id.as_ref(),
        action,
        resource,
        context: c,
    })
}

const PUBLIC_READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"r","Effect":"Allow",
    "Principal":"*","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/public/*"}]}"#;

#[test]
fn allow_deny_and_not_applicable() {
    let p = Policy::parse(PUBLIC_READ, "b").expect("valid");
    let c = ctx(&[]);
    assert_eq!(
        decide(&p, None, "s3:GetObject", "arn:aws:s3:::b/public/x", &c),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, None, "s3:GetObject", "arn:aws:s3:::b/private/x", &c),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, None, "s3:PutObject", "arn:aws:s3:::b/public/x", &c),
        Decision::NotApplicable
    );
    let deny = Policy::parse(
        r#"{"Statement":[
        {"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*"},
        {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::jets3:user/AK2"},"NotAction":"s3:Get*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "b",
    )
    .expect("valid");
    assert_eq!(
        decide(&deny, Some("AK2"), "s3:PutObject", "arn:aws:s3:::b/k", &c),
        Decision::Deny
    );
    assert_eq!(
        decide(&deny, Some("AK2"), "s3:GetObject", "arn:aws:s3:::b/k", &c),
        Decision::Allow
    );
    assert_eq!(
        decide(&deny, Some("AK3"), "s3:PutObject", "arn:aws:s3:::b/k", &c),
        Decision::Allow
    );
}

#[test]
fn principals_by_arn_and_canonical_id() {
    let id = canonical_user_id("AK1");
    assert_eq!(id.len(), 64);
    let text = format!(
        r#"{{"Statement":{{"Effect":"Allow","Principal":{{"CanonicalUser":"{id}"}},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::b"}}}}"#
    );
    let p = Policy::parse(&text, "b").expect("valid");
    let c = ctx(&[]);
    assert_eq!(
        decide(&p, Some("AK1"), "s3:ListBucket", "arn:aws:s3:::b", &c),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, Some("AK2"), "s3:ListBucket", "arn:aws:s3:::b", &c),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, None, "s3:ListBucket", "arn:aws:s3:::b", &c),
        Decision::NotApplicable
    );
    assert_eq!(
        p.named_canonical_ids().collect::<Vec<_>>(),
        vec![id.as_str()]
    );
}

#[test]
fn conditions() {
    let p = Policy::parse(
        r#"{"Statement":[
        {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],
         "Condition":{"Bool":{"aws:SecureTransport":"false"}}},
        {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
         "Condition":{"IpAddress":{"aws:SourceIp":["10.1.0.0/16","2001:db8::/32"]},
                      "NotIpAddress":{"aws:SourceIp":"10.1.2.0/24"}}},
        {"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b",
         "Condition":{"StringLike":{"s3:prefix":["home/*"]}}},
        {"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*",
         "Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},
                      "StringEquals":{"s3:ExistingObjectTag/Class":"open"}}},
        {"Effect":"Allow","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::b/*",
         "Condition":{"Null":{"s3:VersionId":"true"},"NumericLessThanEquals":{"s3:max-keys":"5"}}}]}"#,
        "b",
    )
    .expect("valid");
    let obj = "arn:aws:s3:::b/k";
    let tls = |ip: &str| ctx(&[("aws:securetransport", "true"), ("aws:sourceip", ip)]);
    assert_eq!(
        decide(&p, None, "s3:GetObject", obj, &tls("10.1.3.4")),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, None, "s3:GetObject", obj, &tls("10.1.2.4")),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, None, "s3:GetObject", obj, &tls("2001:db8::1")),
        Decision::Allow
    );
    let plain = ctx(&[
        ("aws:securetransport", "false"),
        ("aws:sourceip", "10.1.3.4"),
    ]);
    assert_eq!(
        decide(&p, None, "s3:GetObject", obj, &plain),
        Decision::Deny
    );
    let list = |prefix: &str| ctx(&[("aws:securetransport", "true"), ("s3:prefix", prefix)]);
    assert_eq!(
        decide(
            &p,
            None,
            "s3:ListBucket",
            "arn:aws:s3:::b",
            &list("home/me")
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, None, "s3:ListBucket", "arn:aws:s3:::b", &list("etc/")),
        Decision::NotApplicable
    );
    let tagged = |class: &str, now: &str| {
        ctx(&[
            ("aws:securetransport", "true"),
            ("aws:currenttime", now),
            ("s3:existingobjecttag/Class", class),
        ])
    };
    assert!(p.uses_object_tags());
    assert_eq!(
        decide(
            &p,
            None,
            "s3:PutObject",
            obj,
            &tagged("open", "2026-01-01T00:00:00Z")
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(
            &p,
            None,
            "s3:PutObject",
            obj,
            &tagged("closed", "2026-01-01T00:00:00Z")
        ),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(
            &p,
            None,
            "s3:PutObject",
            obj,
            &tagged("open", "2031-01-01T00:00:00Z")
        ),
        Decision::NotApplicable
    );
    let del = |v: Option<&str>, max: &str| {
        let mut c = ctx(&[("aws:securetransport", "true"), ("s3:max-keys", max)]);
        if let Some(v) = v {
            c.0.insert("s3:versionid", v.into());
        }
        c
    };
    assert_eq!(
        decide(&p, None, "s3:DeleteObject", obj, &del(None, "5")),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, None, "s3:DeleteObject", obj, &del(Some("v1"), "5")),
        Decision::NotApplicable
    );
    assert_eq!(
        decide(&p, None, "s3:DeleteObject", obj, &del(None, "6")),
        Decision::NotApplicable
    );
}

#[test]
fn malformed_policies_say_why() {
    let cases = [
        ("not json", "invalid Json"),
        (r#"{"Statement":[]}"#, "Missing required field Statement"),
        (
            r#"{"Statement":{"Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            "Missing required field Effect",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            "Missing required field Principal",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::b/*"}}"#,
            "invalid action",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"iam:GetUser","Resource":"arn:aws:s3:::b/*"}}"#,
            "invalid action",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#,
            "invalid resource",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            "Invalid principal",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringEquals":{"aws:Nope":"x"}}}}"#,
            "invalid condition key",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"StringSmells":{"s3:prefix":"x"}}}}"#,
            "Invalid Condition type",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"300.1.1.1"}}}}"#,
            "Invalid value",
        ),
        (
            r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
            "invalid version",
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Extra":1}}"#,
            "unknown field",
        ),
    ];
    for (text, why) in cases {
        let e = Policy::parse(text, "b").expect_err(text);
        assert!(e.0.contains(why), "{text}: {e}");
    }
    let big = format!(r#"{{"Id":"{}"}}"#, "x".repeat(MAX_POLICY_BYTES));
    assert!(Policy::parse(&big, "b").is_err());
}

#[test]
fn public_policies() {
    assert!(Policy::parse(PUBLIC_READ, "b").expect("valid").is_public());
    let narrowed = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}}"#;
    assert!(!Policy::parse(narrowed, "b").expect("valid").is_public());
    let wide = narrowed.replace("10.0.0.0/8", "0.0.0.0/1");
    assert!(Policy::parse(&wide, "b").expect("valid").is_public());
    let named = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::jets3:user/AK1"]},
        "Action":"s3:*","Resource":"arn:aws:s3:::b/*"}}"#;
    let p = Policy::parse(named, "b").expect("valid");
    assert!(!p.is_public());
    assert_eq!(p.named_access_keys().collect::<Vec<_>>(), vec!["AK1"]);
}

#[test]
fn globs() {
    assert!(glob("s3:Get*", "s3:GetObject", true));
    assert!(glob("s3:get*", "s3:GetObject", true));
    assert!(!glob("a/*", "A/x", false));
    assert!(glob("a/?/c*", "a/b/cde", false));
    assert!(glob("*", "", false));
    assert!(!glob("a*b", "acbx", false));
    assert!(glob("a*b*c", "axxbyybzc", false));
}

#[test]
fn negated_operators_hold_for_a_missing_key() {
    // IAM: a key the request does not carry does not match, so "not equal" holds: a Deny
    // "unless the request says X" applies to a request that says nothing.
    let p = Policy::parse(
        r#"{"Statement":[
        {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*",
         "Condition":{"StringNotEquals":{"s3:RequestObjectTag/Class":"open"}}},
        {"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*",
         "Condition":{"StringNotEqualsIfExists":{"aws:Referer":"https://ok.example/"}}},
        {"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}]}"#,
        "b",
    )
    .expect("valid");
    let obj = "arn:aws:s3:::b/k";
    let tagged = |v: &str| ctx(&[("s3:requestobjecttag/Class", v)]);
    assert_eq!(
        decide(&p, None, "s3:PutObject", obj, &tagged("open")),
        Decision::Allow
    );
    assert_eq!(
        decide(&p, None, "s3:PutObject", obj, &tagged("closed")),
        Decision::Deny
    );
    assert_eq!(
        decide(&p, None, "s3:PutObject", obj, &ctx(&[])),
        Decision::Deny,
        "no tag at all"
    );
    assert_eq!(
        decide(&p, None, "s3:GetObject", obj, &ctx(&[])),
        Decision::Deny,
        "IfExists holds for a missing key too"
    );
    assert_eq!(
        decide(
            &p,
            None,
            "s3:GetObject",
            obj,
            &ctx(&[("aws:referer", "https://ok.example/")])
        ),
        Decision::Allow
    );
}
