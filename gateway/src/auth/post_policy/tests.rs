use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::*;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

struct Keys;

impl SecretLookup for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == AK).then(|| SK.to_owned())
    }
}

fn settings(now: &str) -> AuthSettings<'static> {
    AuthSettings {
        region: "us-east-1",
        now: parse_amz_date(now).unwrap(),
        max_skew: Duration::from_secs(900),
    }
}

fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The AWS documentation's example (sigv4-post-example.html).
const DOC_POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
const DOC_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";

fn doc_fields() -> Vec<(String, String)> {
    owned(&[
        ("key", "user/user1/photo.jpg"),
        ("acl", "public-read"),
        (
            "success_action_redirect",
            "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
        ),
        ("Content-Type", "image/jpeg"),
        ("x-amz-meta-uuid", "14365123651274"),
        ("x-amz-server-side-encryption", "AES256"),
        (
            "X-Amz-Credential",
            "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
        ),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Date", "20151229T000000Z"),
        ("x-amz-meta-tag", ""),
        ("Policy", DOC_POLICY),
        ("X-Amz-Signature", DOC_SIGNATURE),
        ("file", "(the file)"),
    ])
}

#[test]
fn aws_documentation_example() {
    let fields = doc_fields();
    let policy = verify_post_policy(&fields, &Keys, &settings("20151229T000000Z")).unwrap();
    assert_eq!(policy.access_key_id, AK);
    policy.check("sigv4examplebucket", &fields, 1000).unwrap();

    let err = policy.check("otherbucket", &fields, 1000).unwrap_err();
    assert_eq!(err.code, S3Code::AccessDenied);
    assert_eq!(
        err.message,
        "Invalid according to Policy: Policy Condition failed: [\"eq\", \"$bucket\", \"sigv4examplebucket\"]"
    );

    // Expired after 2015-12-30T12:00:00Z.
    let err = verify_post_policy(&fields, &Keys, &settings("20151230T120001Z")).unwrap_err();
    assert_eq!(err.code, S3Code::AccessDenied);
    assert_eq!(err.message, "Invalid according to Policy: Policy expired.");
    assert!(verify_post_policy(&fields, &Keys, &settings("20151230T120000Z")).is_ok());
}

#[test]
fn doc_example_tampering() {
    let now = settings("20151229T000000Z");
    let with = |name: &str, value: &str| {
        let mut f = doc_fields();
        for (n, v) in f.iter_mut() {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_owned();
            }
        }
        f
    };
    let code =
        |fields: Vec<(String, String)>| verify_post_policy(&fields, &Keys, &now).unwrap_err().code;
    let mut sig = DOC_SIGNATURE.to_owned();
    sig.replace_range(0..1, "9");
    assert_eq!(
        code(with("x-amz-signature", &sig)),
        S3Code::SignatureDoesNotMatch
    );
    assert_eq!(
        code(with("x-amz-signature", "zz")),
        S3Code::SignatureDoesNotMatch
    );
    let mut policy = DOC_POLICY.to_owned();
    policy.replace_range(10..11, "A");
    assert_eq!(code(with("policy", &policy)), S3Code::SignatureDoesNotMatch);
    assert_eq!(
        code(with(
            "x-amz-credential",
            "AKIAIOSFODNN7EXAMPLE/20151229/eu-west-1/s3/aws4_request"
        )),
        S3Code::AuthorizationHeaderMalformed
    );
    assert_eq!(
        code(with(
            "x-amz-credential",
            "AKIDOTHER/20151229/us-east-1/s3/aws4_request"
        )),
        S3Code::InvalidAccessKeyId
    );
    assert_eq!(
        code(with("x-amz-date", "20151230T000000Z")),
        S3Code::AuthorizationHeaderMalformed
    );
    assert_eq!(
        code(with("x-amz-date", "2015-12-29")),
        S3Code::InvalidArgument
    );
    assert_eq!(
        code(with("x-amz-algorithm", "AWS4-HMAC-SHA1")),
        S3Code::InvalidRequest
    );

    for missing in [
        "policy",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-algorithm",
    ] {
        let fields: Vec<_> = doc_fields()
            .into_iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(missing))
            .collect();
        assert_eq!(code(fields), S3Code::InvalidArgument, "{missing}");
    }
    let v2 = owned(&[
        ("key", "k"),
        ("AWSAccessKeyId", AK),
        ("policy", DOC_POLICY),
        ("signature", "abc="),
    ]);
    assert_eq!(code(v2), S3Code::InvalidRequest);
}

/// Signs `policy_json` with aws-sigv4's key derivation and returns the form fields.
fn signed_form(policy_json: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let policy = base64::engine::general_purpose::STANDARD.encode(policy_json);
    let time = SystemTime::from(parse_amz_date("20260101T000000Z").unwrap());
    let key = aws_sigv4::sign::v4::generate_signing_key(SK, time, "us-east-1", "s3");
    let signature = aws_sigv4::sign::v4::calculate_signature(key, policy.as_bytes());
    let mut fields = owned(&[
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        (
            "x-amz-credential",
            &format!("{AK}/20260101/us-east-1/s3/aws4_request"),
        ),
        ("x-amz-date", "20260101T000000Z"),
        ("policy", &policy),
        ("x-amz-signature", &signature),
    ]);
    fields.extend(owned(extra));
    fields
}

const SIGNING_CONDITIONS: &str = r#"{"x-amz-algorithm": "AWS4-HMAC-SHA256"},
    ["eq", "$x-amz-credential", "AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request"],
    {"x-amz-date": "20260101T000000Z"}"#;

fn policy_with(conditions: &str) -> String {
    format!(
        r#"{{"expiration": "2026-01-02T00:00:00Z", "conditions": [{SIGNING_CONDITIONS}, {conditions}]}}"#
    )
}

fn verify(fields: &[(String, String)]) -> Result<PostPolicy, S3Error> {
    verify_post_policy(fields, &Keys, &settings("20260101T100000Z"))
}

#[test]
fn conditions_are_enforced() {
    let json = policy_with(
        r#"{"bucket": "photos"},
           ["starts-with", "$key", "uploads/"],
           ["eq", "$acl", "private"],
           {"success_action_status": 201},
           ["starts-with", "$Content-Type", "image/"],
           ["starts-with", "$x-amz-meta-note", ""],
           ["content-length-range", 10, 1000]"#,
    );
    let good = [
        ("key", "uploads/cat.jpg"),
        ("ACL", "private"),
        ("success_action_status", "201"),
        ("content-type", "image/jpeg"),
        ("x-amz-meta-note", "anything"),
        ("x-ignore-me", "whatever"),
        ("file", "..."),
    ];
    let fields = signed_form(&json, &good);
    let policy = verify(&fields).unwrap();
    policy.check("photos", &fields, 10).unwrap();
    policy.check("photos", &fields, 1000).unwrap();

    let err = policy.check("photos", &fields, 9).unwrap_err();
    assert_eq!(err.code, S3Code::EntityTooSmall);
    assert_eq!(
        err.extra,
        vec![
            ("ProposedSize", "9".to_owned()),
            ("MinSizeAllowed", "10".to_owned())
        ]
    );
    let err = policy.check("photos", &fields, 1001).unwrap_err();
    assert_eq!(err.code, S3Code::EntityTooLarge);
    assert_eq!(
        policy.check("videos", &fields, 100).unwrap_err().code,
        S3Code::AccessDenied
    );

    let replace = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut f = fields.clone();
        for (n, v) in f.iter_mut() {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_owned();
            }
        }
        f
    };
    for (name, value) in [
        ("key", "other/cat.jpg"),
        ("key", "Uploads/cat.jpg"),
        ("acl", "public-read"),
        ("success_action_status", "200"),
        ("content-type", "text/html"),
        ("content-type", "image/png, text/html"),
    ] {
        let err = policy
            .check("photos", &replace(name, value), 100)
            .unwrap_err();
        assert_eq!(err.code, S3Code::AccessDenied, "{name}={value}");
        assert!(err
            .message
            .starts_with("Invalid according to Policy: Policy Condition failed: "));
    }
    policy
        .check(
            "photos",
            &replace("content-type", "image/png, image/gif"),
            100,
        )
        .unwrap();

    // A missing field fails its eq condition; starts-with "" allows it to be absent.
    let without = |name: &str| -> Vec<(String, String)> {
        fields
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    };
    assert_eq!(
        policy
            .check("photos", &without("acl"), 100)
            .unwrap_err()
            .code,
        S3Code::AccessDenied
    );
    policy
        .check("photos", &without("x-amz-meta-note"), 100)
        .unwrap();

    // Every other field needs a condition.
    let mut extra = fields.clone();
    extra.push(("x-amz-meta-sneaky".to_owned(), "1".to_owned()));
    extra.push(("Cache-Control".to_owned(), "no-cache".to_owned()));
    let err = policy.check("photos", &extra, 100).unwrap_err();
    assert_eq!(err.code, S3Code::AccessDenied);
    assert_eq!(
        err.message,
        "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky, cache-control"
    );
}

#[test]
fn signing_fields_must_be_covered() {
    let json = r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [{"bucket": "b"}, ["starts-with", "$key", ""]]}"#;
    let fields = signed_form(json, &[("key", "k")]);
    let policy = verify(&fields).unwrap();
    let err = policy.check("b", &fields, 1).unwrap_err();
    assert_eq!(
        err.message,
        "Invalid according to Policy: Extra input fields: x-amz-algorithm, x-amz-credential, x-amz-date"
    );
}

#[test]
fn invalid_policies_are_refused() {
    let bad = [
        "not json",
        r#"{"conditions": []}"#,
        r#"{"expiration": "tomorrow", "conditions": []}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z"}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [["eq", "key", "x"]]}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [["matches", "$key", "x"]]}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [["eq", "$key"]]}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [["content-length-range", 5, 1]]}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [["content-length-range", -1, 1]]}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [{"key": ["x"]}]}"#,
        r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": ["key"]}"#,
    ];
    for json in bad {
        let err = verify(&signed_form(json, &[])).unwrap_err();
        assert_eq!(err.code, S3Code::InvalidArgument, "{json}");
    }
    let mut fields = signed_form(&policy_with(r#"{"key": "k"}"#), &[]);
    for (n, v) in fields.iter_mut() {
        if n == "policy" {
            v.push('!');
        }
    }
    // The signature covers the policy text exactly.
    assert_eq!(
        verify(&fields).unwrap_err().code,
        S3Code::SignatureDoesNotMatch
    );
}

#[test]
fn expiration_formats_and_string_bounds() {
    let json = r#"{"expiration": "2026-01-01T10:00:00.500Z", "conditions": [["content-length-range", "1", "2"], {"key": "k"}]}"#;
    let fields = signed_form(json, &[("key", "k")]);
    let policy = verify(&fields).unwrap();
    assert_eq!(
        policy
            .check("b", &[("key".to_owned(), "k".to_owned())], 3)
            .unwrap_err()
            .code,
        S3Code::EntityTooLarge
    );
    let late = verify_post_policy(&fields, &Keys, &settings("20260101T100001Z")).unwrap_err();
    assert_eq!(late.code, S3Code::AccessDenied);
}
