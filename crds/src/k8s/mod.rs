//! The Kubernetes custom resources of jets3 (group `jets3.io`, version `v1alpha1`):
//! [`S3Bucket`] and [`S3Credential`].
//!
//! The CRD YAML in `crds/yaml/jets3.io_crds.yaml` is generated from these types by the `crdgen`
//! bin ([`crds_yaml`]); a test fails when the committed file drifts from the types.
//!
//! Schema rules the apiserver enforces (OpenAPI `pattern`/`minimum`/... and CEL
//! `x-kubernetes-validations`) are written next to the fields they guard. The CEL helpers
//! below build the S3 bucket naming rules that `bucket_name::validate_s3_bucket_name` checks
//! in Rust, so the apiserver refuses exactly the names the gateway would refuse.

mod access;
mod bucket;
mod credential;

use std::fmt::Write as _;

pub use access::{
    BucketCacheSpec, BucketIpFilter, BucketJwt, BucketRateLimit, JwtClaimRule, JwtKeyRef,
    JwtSecretKeyRef, JwtTokenSource,
};
pub use bucket::{
    BucketAccess, CorsMethod, CorsRule, DeletionPolicy, Placement, S3Bucket, S3BucketSpec,
    S3BucketStatus, StorageType, NATS_BUCKET_PATTERN,
};
pub use credential::{
    BucketGrant, GrantPermission, KeySource, KeySourceType, Rotation, S3Credential,
    S3CredentialSpec, S3CredentialStatus, SecretKeyRef,
};

pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
pub use kube::core::Duration;

use kube::CustomResourceExt;

/// API group of every jets3 resource.
pub const GROUP: &str = "jets3.io";
/// API version of the resources in this module.
pub const VERSION: &str = "v1alpha1";

/// Annotation on an `S3Credential` that asks for a rotation now: set it to a new value (for
/// example the current time); the operator rotates once per distinct value and records the
/// value it handled in `status.lastRotateRequest`.
pub const ROTATE_ANNOTATION: &str = "jets3.io/rotate";

/// Condition types and reasons used in the status of both resources.
pub mod conditions {
    /// Everything the resource asks for is in place and served.
    pub const READY: &str = "Ready";
    /// `S3Bucket`: the NATS object-store bucket exists with the spec's configuration.
    pub const BUCKET_PROVISIONED: &str = "BucketProvisioned";
    /// `S3Credential`: the Secret for apps is written and current.
    pub const SECRET_WRITTEN: &str = "SecretWritten";
    /// The resource's part of the gateway config is valid and pushed to the gateways.
    pub const SERVED: &str = "Served";
    /// `S3Bucket`: True once the NATS bucket was found missing and created again, empty (the
    /// objects it held are gone); it stays, with the time, for as long as the S3Bucket does.
    pub const DATA_LOST: &str = "DataLost";

    /// Reason: another `S3Bucket` (in another namespace) already owns this S3 bucket name.
    pub const REASON_NAME_CONFLICT: &str = "NameConflict";
    /// Reason: the NATS bucket exists, was not created for this `S3Bucket`, and `spec.adopt`
    /// is false.
    pub const REASON_BUCKET_EXISTS: &str = "BucketExists";
}

/// Keys of the Secret the operator writes for apps (use it with `envFrom`).
pub mod secret_keys {
    /// The access key id (20 characters).
    pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    /// The secret access key (40 characters).
    pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    /// The gateway Service URL.
    pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    /// The region the gateway answers for.
    pub const REGION: &str = "AWS_REGION";
    /// The S3 bucket name, written when the credential grants exactly one bucket.
    pub const BUCKET_NAME: &str = "BUCKET_NAME";
}

/// OpenAPI pattern of an S3 bucket name's characters: dot-separated labels of lowercase
/// letters, digits and `-`, each beginning and ending with a letter or digit. Together with
/// the length (3..=63) and [`s3_name_rules`] this is `validate_s3_bucket_name`.
pub const S3_BUCKET_NAME_PATTERN: &str =
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$";

/// OpenAPI pattern of a Kubernetes object name (RFC 1123 subdomain): the same characters as an
/// S3 bucket name, which is why an S3 name can default to `metadata.name`.
pub const DNS_SUBDOMAIN_PATTERN: &str = S3_BUCKET_NAME_PATTERN;

/// OpenAPI pattern of a namespace name (RFC 1123 label).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";

/// OpenAPI pattern of a key in a Secret's data.
pub const SECRET_DATA_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// OpenAPI pattern of a non-negative Go duration (`90s`, `1h30m`, `1.5h`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// An IPv4 address as `validate_s3_bucket_name` sees it: four dot-separated numbers that
/// each fit in a `u8` (leading zeros allowed).
const IPV4_REGEX: &str =
    r"^(0*(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])[.]){3}0*(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])$";

/// Prefixes S3 reserves.
const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
/// Suffixes S3 reserves.
const RESERVED_SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"];

/// The CEL expressions, each with its message, of the S3 naming rules the OpenAPI pattern and
/// length cannot say, applied to the string expression `name` (e.g. `self`).
pub fn s3_name_rules(name: &str) -> Vec<(String, String)> {
    let prefixes = RESERVED_PREFIXES
        .iter()
        .map(|p| format!("!{name}.startsWith('{p}')"))
        .collect::<Vec<_>>()
        .join(" && ");
    let suffixes = RESERVED_SUFFIXES
        .iter()
        .map(|s| format!("!{name}.endsWith('{s}')"))
        .collect::<Vec<_>>()
        .join(" && ");
    vec![
        (
            format!("!{name}.matches('{IPV4_REGEX}')"),
            "an S3 bucket name must not be formatted as an IP address".to_string(),
        ),
        (
            prefixes,
            format!(
                "an S3 bucket name must not start with {}",
                quoted_list(&RESERVED_PREFIXES)
            ),
        ),
        (
            suffixes,
            format!(
                "an S3 bucket name must not end with {}",
                quoted_list(&RESERVED_SUFFIXES)
            ),
        ),
    ]
}

fn quoted_list(items: &[&str]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { " or " } else { ", " });
        }
        let _ = write!(out, "'{item}'");
    }
    out
}

/// A rule of [`s3_name_rules`] as a `kube` CEL rule.
fn s3_name_rule(name: &str, index: usize) -> kube::core::Rule {
    let (rule, message) = s3_name_rules(name).swap_remove(index);
    kube::core::Rule::new(rule).message(message.as_str())
}

/// Root-level rule: when `spec.bucketName` is unset, `metadata.name` is the S3 bucket name and
/// must follow the S3 rules that a Kubernetes name does not already imply.
///
/// The apiserver's CEL cost estimator sees `metadata.name` without a maxLength (about 3 MiB,
/// the request size limit), so the IPv4 `matches` here is estimated at roughly 6.6M of the
/// 10M per-rule budget: keep [`IPV4_REGEX`] short.
fn default_name_rule(index: usize) -> kube::core::Rule {
    let name = "self.metadata.name";
    let (rule, message) = if index == 0 {
        (
            format!("size({name}) >= 3 && size({name}) <= 63"),
            "an S3 bucket name must be between 3 and 63 characters long".to_string(),
        )
    } else {
        s3_name_rules(name).swap_remove(index - 1)
    };
    let message = format!(
        "{message}; metadata.name is used as the S3 bucket name because spec.bucketName is unset"
    );
    kube::core::Rule::new(format!("has(self.spec.bucketName) || ({rule})"))
        .message(message.as_str())
}

/// Both custom resource definitions, in a stable order, as the committed YAML has them: the
/// derived `S3Bucket::crd()` and `S3Credential::crd()` with the doc comments' line breaks
/// unwrapped, so `kubectl explain` can wrap the descriptions itself. Install these.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [S3Bucket::crd(), S3Credential::crd()]
        .into_iter()
        .map(|crd| {
            let mut value = serde_json::to_value(crd).expect("a CRD serializes to JSON");
            unwrap_descriptions(&mut value);
            serde_json::from_value(value).expect("a CRD deserializes from its JSON")
        })
        .collect()
}

/// Joins the lines of each paragraph of every `description` (paragraphs stay apart).
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Header of the generated YAML file.
pub const CRDS_YAML_HEADER: &str = "\
# Generated from the Rust types in crds/src/k8s by
#   cargo run -p jets3-crds --features kube --bin crdgen > crds/yaml/jets3.io_crds.yaml
# Do not edit by hand.
";

/// The CRDs as one multi-document YAML text, with keys sorted so the output does not depend on
/// serde_json's `preserve_order` feature being on somewhere in the build.
pub fn crds_yaml() -> String {
    let mut out = String::from(CRDS_YAML_HEADER);
    for crd in crds() {
        let value = serde_json::to_value(&crd).expect("a CRD serializes to JSON");
        out.push_str("---\n");
        out.push_str(
            &serde_yaml::to_string(&sorted_yaml(value)).expect("a JSON value serializes to YAML"),
        );
    }
    out
}

fn sorted_yaml(value: serde_json::Value) -> serde_yaml::Value {
    use serde_json::Value as J;
    use serde_yaml::Value as Y;
    match value {
        J::Null => Y::Null,
        J::Bool(b) => Y::Bool(b),
        J::Number(n) => serde_yaml::to_value(n).expect("a JSON number is a YAML number"),
        J::String(s) => Y::String(s),
        J::Array(items) => Y::Sequence(items.into_iter().map(sorted_yaml).collect()),
        J::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Y::Mapping(
                entries
                    .into_iter()
                    .map(|(k, v)| (Y::String(k), sorted_yaml(v)))
                    .collect(),
            )
        }
    }
}

/// Bytes as a short human-readable size (`0 B`, `512 B`, `1.5 KiB`, `12.0 GiB`), for the
/// `status.size` printer column.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests;
