//! S3 bucket policies: the parser and validator (the operator checks `S3Bucket.spec.policy`
//! with it, the gateway checks PutBucketPolicy with it) and the evaluator the gateway runs
//! on every request to a bucket that has one.
//!
//! Principals are jets3 credentials: `arn:aws:iam::jets3:user/<access key id>` (see
//! [`USER_ARN_PREFIX`]), `{"CanonicalUser": "<canonical id>"}` (see [`canonical_user_id`]),
//! or `*` (anyone, anonymous callers included).

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The largest policy document S3 accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

/// A jets3 credential as a policy principal: this prefix and the access key id.
pub const USER_ARN_PREFIX: &str = "arn:aws:iam::jets3:user/";

/// The resource prefix of S3 buckets and objects.
const S3_ARN_PREFIX: &str = "arn:aws:s3:::";

/// The canonical user id of a credential: SHA-256 (hex) of `jets3:` and its access key id,
/// 64 hex digits like S3's; stable for as long as the access key id is.
pub fn canonical_user_id(access_key_id: &str) -> String {
    hex::encode(Sha256::digest(format!("jets3:{access_key_id}")))
}

/// The principal ARN of a credential.
pub fn user_arn(access_key_id: &str) -> String {
    format!("{USER_ARN_PREFIX}{access_key_id}")
}

/// Why a policy document was refused (S3's `MalformedPolicy` message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

/// A parsed, validated bucket policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq)]
enum Principals {
    Any,
    /// User ARNs and canonical ids.
    Ids(Vec<String>),
}

/// Patterns and whether they are the `Not` form (match everything else).
#[derive(Debug, Clone, PartialEq)]
struct Patterns {
    not: bool,
    list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    effect: Effect,
    principal: Principals,
    not_principal: bool,
    actions: Patterns,
    resources: Patterns,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
    Null,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        use Op::*;
        Some(match s {
            "StringEquals" | "ArnEquals" => StringEquals,
            "StringNotEquals" | "ArnNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" | "ArnLike" => StringLike,
            "StringNotLike" | "ArnNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            "Null" => Null,
            _ => return None,
        })
    }

    /// Operators that hold when the value matches none of the listed ones.
    fn negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
        )
    }
}

/// How a condition treats a key with several values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Single,
    AnyValue,
    AllValues,
}

#[derive(Debug, Clone, PartialEq)]
enum Values {
    Text(Vec<String>),
    Numbers(Vec<f64>),
    Dates(Vec<OffsetDateTime>),
    Bools(Vec<bool>),
    Nets(Vec<ipnet::IpNet>),
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    op: Op,
    set: SetOp,
    if_exists: bool,
    /// Lower case, except the tag name of `s3:ExistingObjectTag/<name>`.
    key: String,
    values: Values,
}

/// What the policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement denies it: nothing else can allow it.
    Deny,
    /// A statement allows it and none denies it.
    Allow,
    /// No statement applies.
    NotApplicable,
}

/// The caller, as policies name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalId {
    /// `arn:aws:iam::jets3:user/<access key id>`.
    pub arn: String,
    /// [`canonical_user_id`] of the access key id.
    pub canonical: String,
}

impl PrincipalId {
    /// The principal of a credential.
    pub fn of_access_key(access_key_id: &str) -> PrincipalId {
        PrincipalId {
            arn: user_arn(access_key_id),
            canonical: canonical_user_id(access_key_id),
        }
    }
}

/// The condition keys of a request (names in lower case; `s3:existingobjecttag/<Name>`
/// keeps the tag's own case).
pub trait Context {
    /// The key's value, if the request has one.
    fn value(&self, key: &str) -> Option<Cow<'_, str>>;
}

/// A request as a policy sees it.
pub struct Request<'a> {
    /// `None`: anonymous.
    pub principal: Option<&'a PrincipalId>,
    /// `s3:GetObject`, ...
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    pub context: &'a dyn Context,
}

/// Actions a policy may name (patterns must match at least one).
const ACTIONS: &[&str] = &[
    "AbortMultipartUpload",
    "CreateBucket",
    "DeleteBucket",
    "DeleteBucketPolicy",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjectVersion",
    "DeleteObjectVersionTagging",
    "GetBucketAcl",
    "GetBucketCORS",
    "GetBucketLocation",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetObject",
    "GetObjectAcl",
    "GetObjectAttributes",
    "GetObjectTagging",
    "GetObjectVersion",
    "GetObjectVersionAcl",
    "GetObjectVersionAttributes",
    "GetObjectVersionTagging",
    "ListAllMyBuckets",
    "ListBucket",
    "ListBucketMultipartUploads",
    "ListBucketVersions",
    "ListMultipartUploadParts",
    "PutBucketAcl",
    "PutBucketCORS",
    "PutBucketPolicy",
    "PutBucketPublicAccessBlock",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutObject",
    "PutObjectAcl",
    "PutObjectTagging",
    "PutObjectVersionAcl",
    "PutObjectVersionTagging",
];

/// Condition keys a policy may use (lower case); `s3:existingobjecttag/` and
/// `s3:requestobjecttag/` take a tag name.
const KEYS: &[&str] = &[
    "aws:currenttime",
    "aws:epochtime",
    "aws:principaltype",
    "aws:referer",
    "aws:securetransport",
    "aws:sourceip",
    "aws:useragent",
    "aws:userid",
    "aws:username",
    "s3:authtype",
    "s3:delimiter",
    "s3:max-keys",
    "s3:prefix",
    "s3:signatureversion",
    "s3:versionid",
    "s3:x-amz-acl",
    "s3:x-amz-content-sha256",
    "s3:x-amz-copy-source",
    "s3:x-amz-grant-full-control",
    "s3:x-amz-grant-read",
    "s3:x-amz-grant-read-acp",
    "s3:x-amz-grant-write",
    "s3:x-amz-grant-write-acp",
    "s3:x-amz-metadata-directive",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-storage-class",
];

/// Tag-named condition key prefixes.
pub const EXISTING_OBJECT_TAG: &str = "s3:existingobjecttag/";
pub const REQUEST_OBJECT_TAG: &str = "s3:requestobjecttag/";

fn one_or_many(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => bad(format!("{what} must be a string or a list of strings")),
            })
            .collect(),
        _ => bad(format!("{what} must be a string or a list of strings")),
    }
}

/// Condition values: strings, numbers and booleans, alone or in a list.
fn condition_values(v: &Value) -> Result<Vec<String>, PolicyError> {
    let scalar = |x: &Value| match x {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => bad("Invalid Condition value: values must be strings, numbers or booleans"),
    };
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(scalar).collect(),
        Value::Array(_) => bad("Invalid Condition value: an empty list"),
        x => Ok(vec![scalar(x)?]),
    }
}

/// Glob match with `*` (any run) and `?` (any one character).
fn glob(pattern: &str, text: &str, fold_case: bool) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let eq = |a: u8, b: u8| {
        if fold_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn parse_action(a: &str) -> Result<String, PolicyError> {
    if a == "*" {
        return Ok("s3:*".into());
    }
    let name = match a.split_once(':') {
        Some((svc, name)) if svc.eq_ignore_ascii_case("s3") => name,
        _ => return bad(format!("Policy has invalid action: {a}")),
    };
    if !ACTIONS.iter().any(|known| glob(name, known, true)) {
        return bad(format!("Policy has invalid action: {a}"));
    }
    Ok(format!("s3:{name}"))
}

fn parse_resource(r: &str, bucket: &str) -> Result<String, PolicyError> {
    let rest = r
        .strip_prefix(S3_ARN_PREFIX)
        .ok_or_else(|| PolicyError(format!("Policy has invalid resource: {r}")))?;
    let (b, _) = rest.split_once('/').unwrap_or((rest, ""));
    if b != bucket {
        return bad(format!(
            "Policy has invalid resource: {r} is not in bucket {bucket}"
        ));
    }
    Ok(r.to_string())
}

fn parse_principal(v: &Value) -> Result<Principals, PolicyError> {
    let invalid = || PolicyError("Invalid principal in policy".into());
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Any),
        Value::Object(m) if !m.is_empty() => {
            let mut ids = Vec::new();
            for (kind, val) in m {
                let vals = one_or_many(val, "Principal").map_err(|_| invalid())?;
                for id in vals {
                    match kind.as_str() {
                        "AWS" if id == "*" => return Ok(Principals::Any),
                        "AWS" => match id.strip_prefix(USER_ARN_PREFIX) {
                            Some(ak) if !ak.is_empty() && !ak.contains(['*', '?', '/']) => {
                                ids.push(id)
                            }
                            _ => {
                                return bad(format!(
                                    "Invalid principal in policy: {id} (a jets3 credential is {USER_ARN_PREFIX}<access key id>)"
                                ))
                            }
                        },
                        "CanonicalUser"
                            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            ids.push(id.to_ascii_lowercase())
                        }
                        _ => return Err(invalid()),
                    }
                }
            }
            Ok(Principals::Ids(ids))
        }
        _ => Err(invalid()),
    }
}

fn parse_key(k: &str) -> Result<String, PolicyError> {
    let lower = k.to_ascii_lowercase();
    for prefix in [EXISTING_OBJECT_TAG, REQUEST_OBJECT_TAG] {
        if lower.starts_with(prefix) && k.len() > prefix.len() {
            return Ok(format!("{prefix}{}", &k[prefix.len()..]));
        }
    }
    if KEYS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        bad(format!("Policy has an invalid condition key: {k}"))
    }
}

fn parse_values(op: Op, key: &str, raw: Vec<String>) -> Result<Values, PolicyError> {
    use Op::*;
    let invalid = |v: &str| PolicyError(format!("Invalid value for condition {key}: {v:?}"));
    Ok(match op {
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Values::Numbers(
            raw.iter()
                .map(|v| v.trim().parse::<f64>().map_err(|_| invalid(v)))
                .collect::<Result<_, _>>()?,
        ),
        DateEquals
        | DateNotEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => Values::Dates(
            raw.iter()
                .map(|v| parse_date(v).ok_or_else(|| invalid(v)))
                .collect::<Result<_, _>>()?,
        ),
        Bool | Null => Values::Bools(
            raw.iter()
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(invalid(v)),
                })
                .collect::<Result<_, _>>()?,
        ),
        IpAddress | NotIpAddress => {
            if key != "aws:sourceip" {
                return bad(format!(
                    "Policy has an invalid condition key: {key} (IpAddress takes aws:SourceIp)"
                ));
            }
            Values::Nets(
                raw.iter()
                    .map(|v| crate::parse_cidr(v).map_err(|_| invalid(v)))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => Values::Text(raw),
    })
}

/// An ISO 8601 date-time (RFC 3339), a date alone, or epoch seconds.
fn parse_date(v: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t);
    }
    if let Ok(secs) = v.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

fn parse_conditions(v: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return bad("Condition must be an object");
    };
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let (set, rest) = if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
            (SetOp::AnyValue, r)
        } else if let Some(r) = op_name.strip_prefix("ForAllValues:") {
            (SetOp::AllValues, r)
        } else {
            (SetOp::Single, op_name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let op = Op::parse(base)
            .filter(|o| !(if_exists && *o == Op::Null))
            .ok_or_else(|| PolicyError(format!("Invalid Condition type: {op_name}")))?;
        let Value::Object(keys) = keys else {
            return bad(format!("Condition {op_name} must map keys to values"));
        };
        for (k, vals) in keys {
            let key = parse_key(k)?;
            let values = parse_values(op, &key, condition_values(vals)?)?;
            out.push(Condition {
                op,
                set,
                if_exists,
                key,
                values,
            });
        }
    }
    Ok(out)
}

fn parse_statement(v: &Value, bucket: &str) -> Result<Statement, PolicyError> {
    let Value::Object(m) = v else {
        return bad("Statement must be an object or a list of objects");
    };
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return bad(format!("Policy has an unknown field: {k}"));
        }
    }
    if m.get("Sid").is_some_and(|s| !s.is_string()) {
        return bad("Sid must be a string");
    }
    let effect = match m.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(e) => return bad(format!("Invalid effect: {e}")),
        None => return bad("Missing required field Effect"),
    };
    let (principal, not_principal) = match (m.get("Principal"), m.get("NotPrincipal")) {
        (Some(p), None) => (parse_principal(p)?, false),
        (None, Some(p)) => (parse_principal(p)?, true),
        (None, None) => return bad("Missing required field Principal"),
        (Some(_), Some(_)) => return bad("Statement has both Principal and NotPrincipal"),
    };
    let one_of = |a: &str, b: &str| -> Result<(bool, Vec<String>), PolicyError> {
        match (m.get(a), m.get(b)) {
            (Some(v), None) => Ok((false, one_or_many(v, a)?)),
            (None, Some(v)) => Ok((true, one_or_many(v, b)?)),
            (None, None) => bad(format!("Missing required field {a}")),
            (Some(_), Some(_)) => bad(format!("Statement has both {a} and {b}")),
        }
    };
    let (not, list) = one_of("Action", "NotAction")?;
    let actions = Patterns {
        not,
        list: list
            .iter()
            .map(|a| parse_action(a))
            .collect::<Result<_, _>>()?,
    };
    let (not, list) = one_of("Resource", "NotResource")?;
    let resources = Patterns {
        not,
        list: list
            .iter()
            .map(|r| parse_resource(r, bucket))
            .collect::<Result<_, _>>()?,
    };
    let conditions = match m.get("Condition") {
        Some(c) => parse_conditions(c)?,
        None => Vec::new(),
    };
    Ok(Statement {
        effect,
        principal,
        not_principal,
        actions,
        resources,
        conditions,
    })
}

impl Policy {
    /// Parses and validates a policy document for `bucket`.
    pub fn parse(text: &str, bucket: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return bad(format!(
                "Policy exceeds the maximum allowed document size ({MAX_POLICY_BYTES} bytes)"
            ));
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| PolicyError(format!("This policy contains invalid Json: {e}")))?;
        let Value::Object(m) = doc else {
            return bad("Policies must be JSON objects");
        };
        Self::from_map(&m, bucket)
    }

    fn from_map(m: &Map<String, Value>, bucket: &str) -> Result<Policy, PolicyError> {
        for k in m.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return bad(format!("Policy has an unknown field: {k}"));
            }
        }
        match m.get("Version") {
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(v) => return bad(format!("Policy has an invalid version: {v}")),
            None => {}
        }
        if m.get("Id").is_some_and(|i| !i.is_string()) {
            return bad("Id must be a string");
        }
        let statements = match m.get("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|s| parse_statement(s, bucket))
                .collect::<Result<_, _>>()?,
            Some(s @ Value::Object(_)) => vec![parse_statement(s, bucket)?],
            _ => return bad("Missing required field Statement"),
        };
        Ok(Policy { statements })
    }

    /// The access key ids the policy names (by ARN); canonical ids are not reversible.
    pub fn named_access_keys(&self) -> impl Iterator<Item = &str> {
        self.statements.iter().flat_map(|s| match &s.principal {
            Principals::Any => Vec::new(),
            Principals::Ids(ids) => ids
                .iter()
                .filter_map(|i| i.strip_prefix(USER_ARN_PREFIX))
                .collect(),
        })
    }

    /// The canonical ids the policy names.
    pub fn named_canonical_ids(&self) -> impl Iterator<Item = &str> {
        self.statements.iter().flat_map(|s| match &s.principal {
            Principals::Any => Vec::new(),
            Principals::Ids(ids) => ids
                .iter()
                .filter(|i| !i.starts_with(USER_ARN_PREFIX))
                .map(String::as_str)
                .collect(),
        })
    }

    /// Whether a condition reads the tags of the object a request addresses.
    pub fn uses_object_tags(&self) -> bool {
        self.statements.iter().any(|s| {
            s.conditions
                .iter()
                .any(|c| c.key.starts_with(EXISTING_OBJECT_TAG))
        })
    }

    /// Whether the policy grants anyone (S3's rule, simplified): an Allow statement for
    /// `*` (or with NotPrincipal) that no `aws:SourceIp` condition narrows to fixed
    /// ranges (at least /8 for IPv4, /32 for IPv6).
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && (s.not_principal || s.principal == Principals::Any)
                && !s.conditions.iter().any(|c| {
                    c.op == Op::IpAddress
                        && !c.if_exists
                        && matches!(&c.values, Values::Nets(n) if n.iter().all(|n| match n {
                            ipnet::IpNet::V4(v) => v.prefix_len() >= 8,
                            ipnet::IpNet::V6(v) => v.prefix_len() >= 32,
                        }))
                })
        })
    }

    /// Evaluates the policy: any matching Deny wins, then any matching Allow.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.effect == Effect::Allow && allowed {
                continue;
            }
            if s.applies(req) {
                match s.effect {
                    Effect::Deny => return Decision::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotApplicable
        }
    }
}

impl Statement {
    fn applies(&self, req: &Request<'_>) -> bool {
        let named = match (&self.principal, req.principal) {
            (Principals::Any, _) => true,
            (Principals::Ids(_), None) => false,
            (Principals::Ids(ids), Some(p)) => ids.iter().any(|i| *i == p.arn || *i == p.canonical),
        };
        if named == self.not_principal {
            return false;
        }
        let action = self.actions.list.iter().any(|a| glob(a, req.action, true));
        if action == self.actions.not {
            return false;
        }
        let resource = self
            .resources
            .list
            .iter()
            .any(|r| glob(r, req.resource, false));
        if resource == self.resources.not {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(req))
    }
}

impl Condition {
    fn holds(&self, req: &Request<'_>) -> bool {
        let value = req.context.value(&self.key);
        if self.op == Op::Null {
            let want_missing = matches!(&self.values, Values::Bools(b) if b.first() == Some(&true));
            return value.is_none() == want_missing;
        }
        let Some(value) = value else {
            // A missing key: IfExists, ForAllValues and the negated operators (StringNotEquals,
            // NotIpAddress, ...) hold, the rest do not, as IAM documents it. A Deny "unless the
            // request says X" must apply when the request says nothing.
            return self.if_exists || self.set == SetOp::AllValues || self.op.negated();
        };
        let any = self.matches_any(&value, req);
        if self.op.negated() {
            !any
        } else {
            any
        }
    }

    /// Whether `value` matches one of the listed values (for a negated operator: the
    /// positive form).
    fn matches_any(&self, value: &str, req: &Request<'_>) -> bool {
        use Op::*;
        match &self.values {
            Values::Text(list) => list.iter().any(|v| {
                let v = expand(v, req);
                match self.op {
                    StringEquals | StringNotEquals => v == value,
                    StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => {
                        v.eq_ignore_ascii_case(value)
                    }
                    _ => glob(&v, value, false),
                }
            }),
            Values::Numbers(list) => {
                let Ok(x) = value.trim().parse::<f64>() else {
                    return false;
                };
                list.iter().any(|&v| match self.op {
                    NumericLessThan => x < v,
                    NumericLessThanEquals => x <= v,
                    NumericGreaterThan => x > v,
                    NumericGreaterThanEquals => x >= v,
                    _ => x == v,
                })
            }
            Values::Dates(list) => {
                let Some(x) = parse_date(value) else {
                    return false;
                };
                list.iter().any(|&v| match self.op {
                    DateLessThan => x < v,
                    DateLessThanEquals => x <= v,
                    DateGreaterThan => x > v,
                    DateGreaterThanEquals => x >= v,
                    _ => x == v,
                })
            }
            Values::Bools(list) => {
                let x = value.eq_ignore_ascii_case("true");
                list.contains(&x)
            }
            Values::Nets(list) => match value.parse::<IpAddr>() {
                Ok(ip) => list.iter().any(|n| n.contains(&ip)),
                Err(_) => false,
            },
        }
    }
}

/// Policy variables in condition values: `${aws:username}` and `${aws:userid}`.
fn expand<'a>(v: &'a str, req: &Request<'_>) -> Cow<'a, str> {
    if !v.contains("${") {
        return Cow::Borrowed(v);
    }
    let mut out = v.to_string();
    for key in ["aws:username", "aws:userid"] {
        let var = format!("${{{key}}}");
        if out.contains(&var) {
            let val = req.context.value(key).map(|c| c.into_owned());
            out = out.replace(&var, val.as_deref().unwrap_or(""));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
