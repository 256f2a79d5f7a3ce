//! Browser POST (PostObject) policy verification.

use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::sigv4::{
    ct_eq, decode_signature, hmac_sha256, invalid_access_key, parse_amz_date, parse_credential,
    signature_mismatch, unsupported_mechanism, Style, ALGORITHM,
};
use super::{AuthSettings, SecretLookup};
use crate::error::{S3Code, S3Error};

/// A verified POST policy: who signed it and the conditions the upload must meet.
#[derive(Debug, Clone)]
pub struct PostPolicy {
    /// The access key id that signed the policy.
    pub access_key_id: String,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone)]
enum Condition {
    Eq { field: String, value: String },
    StartsWith { field: String, prefix: String },
    ContentLength { min: u64, max: u64 },
}

impl Condition {
    fn field(&self) -> Option<&str> {
        match self {
            Condition::Eq { field, .. } | Condition::StartsWith { field, .. } => Some(field),
            Condition::ContentLength { .. } => None,
        }
    }

    /// The condition as JSON, for error messages.
    fn render(&self) -> String {
        let quote = |s: &str| Value::String(s.to_owned()).to_string();
        match self {
            Condition::Eq { field, value } => {
                format!(
                    "[\"eq\", {}, {}]",
                    quote(&format!("${field}")),
                    quote(value)
                )
            }
            Condition::StartsWith { field, prefix } => format!(
                "[\"starts-with\", {}, {}]",
                quote(&format!("${field}")),
                quote(prefix)
            ),
            Condition::ContentLength { min, max } => {
                format!("[\"content-length-range\", {min}, {max}]")
            }
        }
    }
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn missing_field(name: &str) -> S3Error {
    S3Error::invalid_argument(format!(
        "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
    ))
    .with("ArgumentName", name)
    .with("ArgumentValue", "")
}

fn invalid_policy(detail: &str) -> S3Error {
    S3Error::invalid_argument(format!("Invalid Policy: {detail}")).with("ArgumentName", "policy")
}

fn denied(detail: &str) -> S3Error {
    S3Error::new(
        S3Code::AccessDenied,
        format!("Invalid according to Policy: {detail}"),
    )
}

/// Browser POST (PostObject) policy: verifies the x-amz-signature over the base64 policy with
/// the credential in x-amz-credential (x-amz-algorithm AWS4-HMAC-SHA256, x-amz-date), checks
/// the expiration, then returns the decoded conditions. Field names match case-insensitively.
pub fn verify_post_policy(
    fields: &[(String, String)],
    lookup: &dyn SecretLookup,
    settings: &AuthSettings<'_>,
) -> Result<PostPolicy, S3Error> {
    let get = |name: &str| field(fields, name);
    let require = |name: &str| get(name).ok_or_else(|| missing_field(name));
    if get("x-amz-algorithm").is_none()
        && (get("awsaccesskeyid").is_some() || get("signature").is_some())
    {
        return Err(unsupported_mechanism());
    }
    let policy = require("policy")?;
    if require("x-amz-algorithm")? != ALGORITHM {
        return Err(unsupported_mechanism());
    }
    let credential = require("x-amz-credential")?;
    let amz_date = require("x-amz-date")?;
    let signature = require("x-amz-signature")?;
    let date = parse_amz_date(amz_date).ok_or_else(|| {
        S3Error::invalid_argument(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        )
        .with("ArgumentName", "x-amz-date")
        .with("ArgumentValue", amz_date)
    })?;
    let credential = parse_credential(credential, Style::Header, date, settings.region)?;
    let secret = lookup
        .secret(&credential.access_key_id)
        .ok_or_else(|| invalid_access_key(&credential.access_key_id))?;
    let computed = hmac_sha256(&credential.signing_key(&secret), &[policy.as_bytes()]);
    if !decode_signature(signature).is_some_and(|p| ct_eq(&p, &computed)) {
        return Err(signature_mismatch()
            .with("AWSAccessKeyId", credential.access_key_id.as_str())
            .with("StringToSign", policy)
            .with("SignatureProvided", signature));
    }
    let (expiration, conditions) = parse_policy(policy)?;
    if settings.now > expiration {
        return Err(denied("Policy expired."));
    }
    Ok(PostPolicy {
        access_key_id: credential.access_key_id,
        conditions,
    })
}

fn parse_policy(policy: &str) -> Result<(OffsetDateTime, Vec<Condition>), S3Error> {
    let compact: String = policy
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let json = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| invalid_policy("Invalid 'Policy' base64 encoding."))?;
    let doc: Value = serde_json::from_slice(&json).map_err(|_| invalid_policy("Invalid JSON."))?;
    let expiration = doc
        .get("expiration")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_policy("Policy missing expiration."))?;
    let expiration =
        OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
            .map_err(|_| invalid_policy("Invalid 'expiration' value."))?;
    let list = doc
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_policy("Policy missing conditions."))?;
    let mut conditions = Vec::with_capacity(list.len());
    for item in list {
        parse_condition(item, &mut conditions)?;
    }
    Ok((expiration, conditions))
}

/// A condition operand: strings as is, numbers in decimal.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn length_bound(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_condition(item: &Value, out: &mut Vec<Condition>) -> Result<(), S3Error> {
    let invalid = || invalid_policy(&format!("Invalid Condition: {item}"));
    match item {
        Value::Object(map) => {
            for (name, value) in map {
                out.push(Condition::Eq {
                    field: name.to_ascii_lowercase(),
                    value: scalar(value).ok_or_else(invalid)?,
                });
            }
        }
        Value::Array(parts) if parts.len() == 3 => {
            let op = parts[0].as_str().ok_or_else(invalid)?.to_ascii_lowercase();
            if op == "content-length-range" {
                let min = length_bound(&parts[1]).ok_or_else(invalid)?;
                let max = length_bound(&parts[2]).ok_or_else(invalid)?;
                if min > max {
                    return Err(invalid());
                }
                out.push(Condition::ContentLength { min, max });
                return Ok(());
            }
            let field = parts[1]
                .as_str()
                .and_then(|f| f.strip_prefix('$'))
                .filter(|f| !f.is_empty())
                .ok_or_else(invalid)?
                .to_ascii_lowercase();
            let value = scalar(&parts[2]).ok_or_else(invalid)?;
            out.push(match op.as_str() {
                "eq" => Condition::Eq { field, value },
                "starts-with" => Condition::StartsWith {
                    field,
                    prefix: value,
                },
                _ => return Err(invalid()),
            });
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

impl PostPolicy {
    /// Checks every condition (eq, starts-with, content-length-range; `["eq","$field",v]` and
    /// `{"field": v}` forms; the bucket condition against `bucket`) against the form fields and
    /// the file size, and that every form field except policy, x-amz-signature, file and
    /// x-ignore-* is covered by a condition. Violations give AccessDenied "Invalid according to
    /// Policy: ..."; the size range gives EntityTooSmall / EntityTooLarge.
    pub fn check(
        &self,
        bucket: &str,
        fields: &[(String, String)],
        content_length: u64,
    ) -> Result<(), S3Error> {
        let value_of = |name: &str| {
            if name == "bucket" {
                bucket
            } else {
                field(fields, name).unwrap_or("")
            }
        };
        for condition in &self.conditions {
            let ok = match condition {
                Condition::Eq { field, value } => value_of(field) == value,
                Condition::StartsWith { field, prefix } if field == "content-type" => {
                    value_of(field)
                        .split(',')
                        .all(|part| part.trim_start().starts_with(prefix.as_str()))
                }
                Condition::StartsWith { field, prefix } => value_of(field).starts_with(prefix),
                Condition::ContentLength { .. } => true,
            };
            if !ok {
                return Err(denied(&format!(
                    "Policy Condition failed: {}",
                    condition.render()
                )));
            }
        }
        let mut extra: Vec<String> = Vec::new();
        for (name, _) in fields {
            let name = name.to_ascii_lowercase();
            let exempt = matches!(name.as_str(), "policy" | "x-amz-signature" | "file")
                || name.starts_with("x-ignore-");
            let covered = self.conditions.iter().any(|c| c.field() == Some(&name));
            if !exempt && !covered && !extra.contains(&name) {
                extra.push(name);
            }
        }
        if !extra.is_empty() {
            return Err(denied(&format!("Extra input fields: {}", extra.join(", "))));
        }
        for condition in &self.conditions {
            if let Condition::ContentLength { min, max } = *condition {
                if content_length < min {
                    return Err(S3Error::new(
                        S3Code::EntityTooSmall,
                        "Your proposed upload is smaller than the minimum allowed size",
                    )
                    .with("ProposedSize", content_length.to_string())
                    .with("MinSizeAllowed", min.to_string()));
                }
                if content_length > max {
                    return Err(S3Error::new(
                        S3Code::EntityTooLarge,
                        "Your proposed upload exceeds the maximum allowed size",
                    )
                    .with("ProposedSize", content_length.to_string())
                    .with("MaxSizeAllowed", max.to_string()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
