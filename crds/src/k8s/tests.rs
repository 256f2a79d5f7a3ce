//! Tests of the generated CRDs: committed YAML in step with the types, schema content
//! (printer columns, defaults, CEL rules), the example manifests, and the CEL rules themselves,
//! evaluated client-side with kube's `cel` feature (kube-cel), which applies schema defaults
//! first as the apiserver does. The OpenAPI `pattern`/length checks are not CEL: the name tests
//! apply them from the schema with the `regex` crate.

use kube::core::cel::{compile_schema, CompiledSchema, Validator};
use serde_json::{json, Value};

use super::*;
use crate::validate_s3_bucket_name;

const YAML_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/yaml/jets3.io_crds.yaml");
const BUCKET_EXAMPLE: &str = include_str!("../../examples/s3bucket.yaml");
const CREDENTIAL_EXAMPLE: &str = include_str!("../../examples/s3credential.yaml");

/// The CRDs as installed (from [`crds`]).
fn bucket_crd() -> CustomResourceDefinition {
    crds().swap_remove(0)
}

fn credential_crd() -> CustomResourceDefinition {
    crds().swap_remove(1)
}

fn crd_json(crd: &CustomResourceDefinition) -> Value {
    serde_json::to_value(crd).unwrap()
}

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    crd_json(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The `rule`s of the `x-kubernetes-validations` at a schema node.
fn rules_at(node: &Value) -> Vec<String> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Client-side CEL validation of raw objects against one CRD's schema.
struct Cel {
    compiled: CompiledSchema,
    validator: Validator,
}

impl Cel {
    fn new(crd: &CustomResourceDefinition) -> Self {
        let compiled = compile_schema(&schema_of(crd));
        Cel {
            compiled,
            validator: Validator::new(),
        }
    }

    /// The messages of the rules that fail (creation when `old` is `None`, else update).
    fn errors(&self, obj: &Value, old: Option<&Value>) -> Vec<String> {
        match self.validator.validate_compiled(&self.compiled, obj, old) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[track_caller]
    fn assert_ok(&self, obj: &Value, old: Option<&Value>) {
        let errors = self.errors(obj, old);
        assert!(
            errors.is_empty(),
            "unexpected CEL errors {errors:?} for {obj}"
        );
    }

    #[track_caller]
    fn assert_refused(&self, obj: &Value, old: Option<&Value>, message_part: &str) {
        let errors = self.errors(obj, old);
        assert!(
            errors.iter().any(|e| e.contains(message_part)),
            "expected an error containing {message_part:?}, got {errors:?} for {obj}"
        );
    }
}

fn bucket(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "jets3.io/v1alpha1",
        "kind": "S3Bucket",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": spec,
    })
}

fn credential(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "jets3.io/v1alpha1",
        "kind": "S3Credential",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": spec,
    })
}

// ---------------------------------------------------------------------------------------------
// Committed YAML

#[test]
fn committed_crd_yaml_is_current() {
    let generated = crds_yaml();
    let committed = std::fs::read_to_string(YAML_PATH).unwrap_or_default();
    if committed != generated {
        let (line, old, new) = committed
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(generated.lines().map(Some).chain(std::iter::repeat(None)))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i + 1, a.unwrap_or("<end>"), b.unwrap_or("<end>")))
            .unwrap_or((0, "", ""));
        panic!(
            "crds/yaml/jets3.io_crds.yaml is out of date with the Rust types in crds/src/k8s \
             (first difference at line {line}:\n  committed: {old}\n  generated: {new}\n).\n\
             Regenerate it from the workspace root with:\n\n    \
             cargo run -p jets3-crds --features kube --bin crdgen > crds/yaml/jets3.io_crds.yaml\n"
        );
    }
}

#[test]
fn generated_yaml_parses_back_into_the_crds() {
    let docs: Vec<CustomResourceDefinition> = crds_yaml()
        .split("\n---\n")
        .skip(1)
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect();
    assert_eq!(docs, crds());
    assert_eq!(
        docs.iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["s3buckets.jets3.io", "s3credentials.jets3.io"]
    );
}

/// `crds()` only unwraps the derived CRDs' descriptions.
#[test]
fn crds_differ_from_the_derived_ones_only_in_description_line_breaks() {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("description");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let derived = [S3Bucket::crd(), S3Credential::crd()];
    for (installed, derived) in crds().iter().zip(derived.iter()) {
        let (mut a, mut b) = (crd_json(installed), crd_json(derived));
        let text = a["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["grants"]["description"]
            .clone();
        assert!(text.is_null() || !text.as_str().unwrap().contains('\n'));
        strip(&mut a);
        strip(&mut b);
        assert_eq!(a, b);
    }
    let bucket_name =
        &schema_of(&bucket_crd())["properties"]["spec"]["properties"]["bucketName"]["description"];
    assert!(bucket_name
        .as_str()
        .unwrap()
        .starts_with("The S3 bucket name clients use; defaults to metadata.name. 3 to 63"));
}

// ---------------------------------------------------------------------------------------------
// Names, printer columns, subresources

#[test]
fn names_scope_and_status_subresource() {
    for (crd, kind, plural, short) in [
        (bucket_crd(), "S3Bucket", "s3buckets", "s3b"),
        (credential_crd(), "S3Credential", "s3credentials", "s3c"),
    ] {
        let c = crd_json(&crd);
        assert_eq!(c["spec"]["group"], GROUP);
        assert_eq!(c["spec"]["scope"], "Namespaced");
        assert_eq!(c["spec"]["names"]["kind"], kind);
        assert_eq!(c["spec"]["names"]["plural"], plural);
        assert_eq!(c["spec"]["names"]["shortNames"], json!([short]));
        assert_eq!(c["spec"]["names"]["categories"], json!(["jets3"]));
        let v = &c["spec"]["versions"][0];
        assert_eq!(v["name"], VERSION);
        assert_eq!(v["served"], true);
        assert_eq!(v["storage"], true);
        assert_eq!(v["subresources"]["status"], json!({}));
    }
}

fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, String, i64)> {
    crd_json(crd)["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn printer_columns() {
    let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
    let age = ("Age", "date", ".metadata.creationTimestamp");
    for (crd, default_view, wide) in [
        (
            bucket_crd(),
            [
                ("Ready", "string", ready),
                ("Bucket", "string", ".status.bucketName"),
                ("Size", "string", ".status.size"),
                age,
            ],
            &["Objects", "Access", "Endpoint"][..],
        ),
        (
            credential_crd(),
            [
                ("Ready", "string", ready),
                ("Access Key", "string", ".status.accessKeyId"),
                ("Buckets", "string", ".status.buckets"),
                age,
            ],
            &["Secret", "Key Age"][..],
        ),
    ] {
        let cols = columns(&crd);
        let shown: Vec<_> = cols
            .iter()
            .filter(|c| c.3 == 0)
            .map(|c| (c.0.as_str(), c.1.as_str(), c.2.as_str()))
            .collect();
        assert_eq!(shown, default_view, "{}", crd.spec.names.kind);
        let extra: Vec<_> = cols
            .iter()
            .filter(|c| c.3 == 1)
            .map(|c| c.0.as_str())
            .collect();
        assert_eq!(extra, wide, "{}", crd.spec.names.kind);
    }
}

#[test]
fn printer_column_paths_exist_in_the_schema() {
    let filters = regex::Regex::new(r"\[[^\]]*\]").unwrap();
    for crd in crds() {
        let schema = schema_of(&crd);
        for (name, _, path, _) in columns(&crd) {
            if path.starts_with(".metadata.") {
                continue;
            }
            let path = filters.replace_all(&path, "[]");
            let mut node = &schema;
            for part in path.trim_start_matches('.').split('.') {
                let field = part.split('[').next().unwrap();
                node = &node["properties"][field];
                if part.contains('[') {
                    node = &node["items"];
                }
                assert!(node.is_object(), "column {name}: {path} not in schema");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Schema content: documentation, defaults, bounds, rules

/// Every property of the schema has a description, so `kubectl explain` reads well.
#[test]
fn every_field_is_documented() {
    fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_object() {
            for (name, prop) in props {
                let p = format!("{path}.{name}");
                if prop["description"].as_str().is_none_or(|d| d.is_empty()) {
                    missing.push(p.clone());
                }
                walk(prop, &p, missing);
            }
        }
        if node["items"].is_object() {
            walk(&node["items"], &format!("{path}[]"), missing);
        }
    }
    for crd in crds() {
        let mut missing = Vec::new();
        walk(&schema_of(&crd), "", &mut missing);
        assert!(missing.is_empty(), "undocumented fields: {missing:?}");
    }
}

#[test]
fn schema_defaults() {
    let b = schema_of(&bucket_crd());
    let spec = &b["properties"]["spec"]["properties"];
    // No default: unset means 3 on a NATS cluster and 1 on a single server, which only the
    // operator knows.
    assert!(
        spec["replicas"].get("default").is_none(),
        "{}",
        spec["replicas"]
    );
    assert_eq!(spec["storage"]["default"], "file");
    assert_eq!(spec["access"]["default"], "private");
    assert_eq!(spec["deletionPolicy"]["default"], "Retain");
    assert_eq!(spec["readOnly"]["default"], false);
    assert_eq!(spec["compression"]["default"], false);
    assert_eq!(spec["adopt"]["default"], false);
    assert!(spec["bucketName"].get("default").is_none());

    let c = schema_of(&credential_crd());
    let spec = &c["properties"]["spec"]["properties"];
    assert_eq!(spec["keySource"]["default"], json!({"type": "Generated"}));
    assert_eq!(
        spec["keySource"]["properties"]["type"]["default"],
        "Generated"
    );
    let overlap = &spec["rotation"]["properties"]["overlap"]["default"];
    let overlap: Duration = serde_json::from_value(overlap.clone()).unwrap();
    assert_eq!(overlap, std::time::Duration::from_secs(3600));
    let secret_ref = &spec["keySource"]["properties"]["secretRef"]["properties"];
    assert_eq!(secret_ref["accessKeyIdKey"]["default"], "AWS_ACCESS_KEY_ID");
    assert_eq!(
        secret_ref["secretAccessKeyKey"]["default"],
        "AWS_SECRET_ACCESS_KEY"
    );
}

#[test]
fn serde_defaults_match_the_issue() {
    let spec: S3BucketSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(spec.bucket_name, None);
    assert_eq!(spec.replicas, None);
    assert_eq!(spec.storage, StorageType::File);
    assert_eq!(spec.access, BucketAccess::Private);
    assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
    assert!(!spec.read_only && !spec.adopt && !spec.compression);

    let spec: S3CredentialSpec =
        serde_json::from_value(json!({"grants": [{"bucket": "logs", "permission": "read"}]}))
            .unwrap();
    assert_eq!(spec.key_source.r#type, KeySourceType::Generated);
    assert_eq!(spec.key_source.secret_ref, None);
    assert_eq!(spec.secret_name, None);
    assert_eq!(spec.rotation.interval, None);
    assert_eq!(spec.rotation.overlap, std::time::Duration::from_secs(3600));
}

#[test]
fn bucket_schema_bounds_and_patterns() {
    let b = schema_of(&bucket_crd());
    let spec = &b["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["minimum"], 1.0);
    assert_eq!(spec["replicas"]["maximum"], 5.0);
    assert_eq!(spec["bucketName"]["minLength"], 3);
    assert_eq!(spec["bucketName"]["maxLength"], 63);
    assert_eq!(spec["bucketName"]["pattern"], S3_BUCKET_NAME_PATTERN);
    assert_eq!(
        spec["storage"]["enum"],
        json!(["file", "memory"]),
        "storage values"
    );
    assert_eq!(spec["access"]["enum"], json!(["private", "public-read"]));
    assert_eq!(spec["deletionPolicy"]["enum"], json!(["Retain", "Delete"]));
    assert_eq!(
        b["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-type"],
        "map"
    );
    assert_eq!(
        b["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-map-keys"],
        json!(["type"])
    );
}

#[test]
fn schema_contains_the_cel_rules() {
    let b = schema_of(&bucket_crd());
    let spec = &b["properties"]["spec"];
    assert!(rules_at(&spec["properties"]["storage"]).contains(&"self == oldSelf".to_string()));
    assert!(rules_at(&spec["properties"]["natsBucket"]).contains(&"self == oldSelf".to_string()));
    let bucket_name_rules = rules_at(&spec["properties"]["bucketName"]);
    assert_eq!(
        bucket_name_rules,
        s3_name_rules("self")
            .into_iter()
            .map(|r| r.0)
            .collect::<Vec<_>>()
    );
    assert!(rules_at(spec)
        .iter()
        .any(|r| r.contains("self.maxObjectBytes <= self.maxBytes")));
    assert!(rules_at(&spec["properties"]["metadata"])
        .iter()
        .any(|r| r.contains("startsWith('jets3.')")));
    let root = rules_at(&b);
    assert!(root.iter().any(|r| r.contains("oldSelf.metadata.name")));
    assert_eq!(
        root.iter()
            .filter(|r| r.starts_with("has(self.spec.bucketName) ||"))
            .count(),
        4
    );

    let c = schema_of(&credential_crd());
    let spec = &c["properties"]["spec"];
    assert!(rules_at(&spec["properties"]["rotation"])
        .iter()
        .any(|r| r.contains("duration(self.overlap) < duration(self.interval)")));
    assert!(rules_at(&spec["properties"]["keySource"])
        .iter()
        .any(|r| r.contains("has(self.secretRef)")));
    assert!(rules_at(&spec["properties"]["grants"])
        .iter()
        .any(|r| r.contains("exists_one")));
    assert!(!rules_at(&c).is_empty());
}

/// Every rule compiles as CEL (a syntax error would make the apiserver refuse the CRD).
#[test]
fn every_cel_rule_compiles() {
    fn walk(node: &CompiledSchema, path: &str, errors: &mut Vec<String>, count: &mut usize) {
        *count += node.validations.len();
        for e in node.compilation_errors() {
            errors.push(format!("{path}: {e}"));
        }
        for (name, child) in &node.properties {
            walk(child, &format!("{path}.{name}"), errors, count);
        }
        if let Some(items) = &node.items {
            walk(items, &format!("{path}[]"), errors, count);
        }
        if let Some(add) = &node.additional_properties {
            walk(add, &format!("{path}{{}}"), errors, count);
        }
    }
    for crd in crds() {
        let (mut errors, mut count) = (Vec::new(), 0);
        walk(
            &compile_schema(&schema_of(&crd)),
            "",
            &mut errors,
            &mut count,
        );
        assert!(errors.is_empty(), "CEL compilation errors: {errors:?}");
        assert!(count >= 6, "too few rules found: {count}");
    }
}

// ---------------------------------------------------------------------------------------------
// S3 bucket names: schema pattern + length + CEL == validate_s3_bucket_name

/// Deterministic pseudo-random names over the characters that matter, plus the edge cases.
fn name_corpus() -> Vec<String> {
    let mut names: Vec<String> = [
        "abc",
        "ab",
        "a",
        "my.bucket-1",
        "logs.example.com",
        "a--b",
        "a..b",
        "a.-b",
        "a-.b",
        "-ab",
        "ab-",
        ".ab",
        "ab.",
        "Abc",
        "a_b",
        "a b",
        "1.2.3.4",
        "192.168.1.1",
        "255.255.255.255",
        "256.1.1.1",
        "001.002.003.004",
        "0000.0.0.0",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.a",
        "a.1.2.3",
        "xn--abc",
        "xn-abc",
        "sthree-x",
        "sthree",
        "amzn-s3-demo-x",
        "amzn-s3-demo",
        "x-s3alias",
        "x--ol-s3",
        "x--x-s3",
        "x--table-s3",
        "x.mrap",
        "mrap",
        "s3alias",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("a".repeat(63));
    names.push("a".repeat(64));
    names.push(format!("{}.{}", "a".repeat(31), "b".repeat(31)));
    names.push(format!("{}.{}", "a".repeat(31), "b".repeat(32)));
    let alphabet = b"a0159.-2x";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = 1 + (next() % 16) as usize;
        let name: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
            .collect();
        names.push(name);
    }
    names
}

/// What the apiserver does with `spec.bucketName`: OpenAPI length + pattern, then CEL.
fn schema_accepts_bucket_name(cel: &Cel, field: &Value, pattern: &regex::Regex, n: &str) -> bool {
    let len_ok = (field["minLength"].as_u64().unwrap() as usize
        ..=field["maxLength"].as_u64().unwrap() as usize)
        .contains(&n.len());
    len_ok
        && pattern.is_match(n)
        && cel
            .errors(&bucket("b", json!({"bucketName": n})), None)
            .is_empty()
}

#[test]
fn bucket_name_schema_agrees_with_validate_s3_bucket_name() {
    let crd = bucket_crd();
    let cel = Cel::new(&crd);
    let field = schema_of(&crd)["properties"]["spec"]["properties"]["bucketName"].clone();
    let pattern = regex::Regex::new(field["pattern"].as_str().unwrap()).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for n in name_corpus() {
        let expected = validate_s3_bucket_name(&n).is_ok();
        assert_eq!(
            schema_accepts_bucket_name(&cel, &field, &pattern, &n),
            expected,
            "bucketName {n:?}: schema and validate_s3_bucket_name disagree"
        );
        if expected {
            valid += 1
        } else {
            invalid += 1
        }
    }
    assert!(
        valid > 100 && invalid > 100,
        "{valid} valid, {invalid} invalid"
    );
}

/// With `bucketName` unset, `metadata.name` (already a DNS subdomain for the apiserver) is the
/// S3 name and the root rules must refuse exactly what `validate_s3_bucket_name` refuses.
#[test]
fn default_bucket_name_rules_agree_with_validate_s3_bucket_name() {
    let cel = Cel::new(&bucket_crd());
    let k8s_name = regex::Regex::new(DNS_SUBDOMAIN_PATTERN).unwrap();
    let mut checked = 0;
    for n in name_corpus() {
        if !k8s_name.is_match(&n) || n.len() > 253 {
            continue; // the apiserver refuses it as an object name before CEL runs
        }
        let errors = cel.errors(&bucket(&n, json!({})), None);
        assert_eq!(
            errors.is_empty(),
            validate_s3_bucket_name(&n).is_ok(),
            "metadata.name {n:?}: {errors:?}"
        );
        if !errors.is_empty() {
            assert!(errors[0].contains("metadata.name is used as the S3 bucket name"));
        }
        checked += 1;
    }
    assert!(checked > 100);
}

#[test]
fn explicit_bucket_name_lifts_the_metadata_name_rules() {
    let cel = Cel::new(&bucket_crd());
    cel.assert_ok(&bucket("x", json!({"bucketName": "logs"})), None);
    cel.assert_refused(&bucket("x", json!({})), None, "between 3 and 63 characters");
}

// ---------------------------------------------------------------------------------------------
// S3Bucket CEL rules

#[test]
fn bucket_name_is_immutable() {
    let cel = Cel::new(&bucket_crd());
    let old = bucket("media", json!({}));
    // Spelling out the default is no change.
    cel.assert_ok(&bucket("media", json!({"bucketName": "media"})), Some(&old));
    cel.assert_refused(
        &bucket("media", json!({"bucketName": "other"})),
        Some(&old),
        "is immutable",
    );
    let old = bucket("media", json!({"bucketName": "media.example"}));
    cel.assert_refused(&bucket("media", json!({})), Some(&old), "is immutable");
    cel.assert_refused(
        &bucket("media", json!({"bucketName": "media.example2"})),
        Some(&old),
        "is immutable",
    );
    cel.assert_ok(
        &bucket(
            "media",
            json!({"bucketName": "media.example", "replicas": 3}),
        ),
        Some(&old),
    );
}

#[test]
fn storage_is_immutable() {
    let cel = Cel::new(&bucket_crd());
    let old = bucket("media", json!({}));
    cel.assert_ok(&bucket("media", json!({"storage": "file"})), Some(&old));
    cel.assert_refused(
        &bucket("media", json!({"storage": "memory"})),
        Some(&old),
        "storage is immutable",
    );
    let old = bucket("media", json!({"storage": "memory"}));
    cel.assert_refused(
        &bucket("media", json!({})),
        Some(&old),
        "storage is immutable",
    );
}

#[test]
fn nats_bucket_is_immutable() {
    let cel = Cel::new(&bucket_crd());
    let plain = bucket("media", json!({}));
    let named = bucket("media", json!({"natsBucket": "MEDIA"}));
    cel.assert_ok(&named, None);
    cel.assert_ok(&named, Some(&named));
    cel.assert_refused(&named, Some(&plain), "cannot be added or removed");
    cel.assert_refused(&plain, Some(&named), "cannot be added or removed");
    cel.assert_refused(
        &bucket("media", json!({"natsBucket": "OTHER"})),
        Some(&named),
        "natsBucket is immutable",
    );
}

#[test]
fn bucket_cross_field_rules() {
    let cel = Cel::new(&bucket_crd());
    cel.assert_ok(
        &bucket("media", json!({"maxBytes": 1000, "maxObjectBytes": 1000})),
        None,
    );
    cel.assert_ok(&bucket("media", json!({"maxObjectBytes": 1000})), None);
    cel.assert_refused(
        &bucket("media", json!({"maxBytes": 1000, "maxObjectBytes": 1001})),
        None,
        "maxObjectBytes must not be larger than maxBytes",
    );
    cel.assert_ok(&bucket("media", json!({"ttl": "24h"})), None);
    cel.assert_refused(
        &bucket("media", json!({"ttl": "0s"})),
        None,
        "ttl must be longer than 0s",
    );
    cel.assert_ok(
        &bucket("media", json!({"placement": {"tags": ["ssd"]}})),
        None,
    );
    cel.assert_ok(
        &bucket("media", json!({"placement": {"cluster": "east"}})),
        None,
    );
    cel.assert_refused(
        &bucket("media", json!({"placement": {}})),
        None,
        "placement needs a cluster or at least one tag",
    );
    let cors = |origin: &str| {
        bucket(
            "media",
            json!({"cors": [{"allowedOrigins": [origin], "allowedMethods": ["GET"]}]}),
        )
    };
    cel.assert_ok(&cors("https://*.example.com"), None);
    cel.assert_refused(&cors("https://*.*.com"), None, "at most one '*'");
    cel.assert_ok(
        &bucket("media", json!({"metadata": {"team": "a", "jets3": "x"}})),
        None,
    );
    for key in ["jets3.owner", "_nats.level"] {
        cel.assert_refused(
            &bucket("media", json!({"metadata": {key: "x"}})),
            None,
            "are reserved",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// S3Credential CEL rules

fn grants() -> Value {
    json!([{"bucket": "media", "permission": "read-write"}])
}

#[test]
fn grants_are_unique() {
    let cel = Cel::new(&credential_crd());
    cel.assert_ok(
        &credential(
            "app",
            json!({"grants": [
                {"bucket": "media", "permission": "read"},
                {"bucket": "media", "namespace": "team-b", "permission": "read"},
                {"bucket": "logs", "permission": "write"},
            ]}),
        ),
        None,
    );
    cel.assert_refused(
        &credential(
            "app",
            json!({"grants": [
                {"bucket": "media", "permission": "read"},
                {"bucket": "media", "permission": "write"},
            ]}),
        ),
        None,
        "granted only once",
    );
    cel.assert_refused(
        &credential(
            "app",
            json!({"grants": [
                {"bucket": "media", "namespace": "team-b", "permission": "read"},
                {"bucket": "media", "namespace": "team-b", "permission": "write"},
            ]}),
        ),
        None,
        "granted only once",
    );
}

#[test]
fn key_source_rules() {
    let cel = Cel::new(&credential_crd());
    let from_secret = |secret: &str, extra: Value| {
        let mut spec = json!({
            "grants": grants(),
            "keySource": {"type": "Secret", "secretRef": {"name": secret}},
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        credential("app", spec)
    };
    cel.assert_ok(&credential("app", json!({"grants": grants()})), None);
    cel.assert_ok(&from_secret("keys", json!({})), None);
    cel.assert_refused(
        &credential(
            "app",
            json!({"grants": grants(), "keySource": {"type": "Secret"}}),
        ),
        None,
        "secretRef is required when type is Secret",
    );
    cel.assert_refused(
        &credential(
            "app",
            json!({"grants": grants(), "keySource": {"secretRef": {"name": "keys"}}}),
        ),
        None,
        "secretRef is required when type is Secret",
    );
    // The app Secret (default: the credential's name) must not be the source Secret.
    cel.assert_refused(
        &from_secret("app", json!({})),
        None,
        "must not be the keySource Secret",
    );
    cel.assert_refused(
        &from_secret("keys", json!({"secretName": "keys"})),
        None,
        "must not be the keySource Secret",
    );
    cel.assert_ok(&from_secret("app", json!({"secretName": "app-s3"})), None);
    // Keys from a Secret are not rotated by the operator.
    cel.assert_refused(
        &from_secret("keys", json!({"rotation": {"interval": "720h"}})),
        None,
        "applies only to generated keys",
    );
}

#[test]
fn rotation_rules() {
    let cel = Cel::new(&credential_crd());
    let rotating =
        |rotation: Value| credential("app", json!({"grants": grants(), "rotation": rotation}));
    cel.assert_ok(&rotating(json!({"interval": "720h"})), None);
    cel.assert_ok(
        &rotating(json!({"interval": "720h", "overlap": "24h"})),
        None,
    );
    cel.assert_ok(&rotating(json!({"overlap": "0s"})), None);
    cel.assert_ok(
        &rotating(json!({"interval": "10m", "overlap": "9m59s"})),
        None,
    );
    cel.assert_refused(
        &rotating(json!({"interval": "10m", "overlap": "10m"})),
        None,
        "must be shorter than rotation.interval",
    );
    // The default overlap is one hour.
    cel.assert_refused(
        &rotating(json!({"interval": "30m"})),
        None,
        "must be shorter than rotation.interval",
    );
    cel.assert_refused(
        &rotating(json!({"interval": "0s", "overlap": "0s"})),
        None,
        "rotation.interval must be longer than 0s",
    );
}

#[test]
fn duration_pattern_accepts_go_durations_only() {
    let re = regex::Regex::new(DURATION_PATTERN).unwrap();
    for ok in ["1h", "90m", "1h30m", "1.5h", "300ms", "0s", "720h", "3600s"] {
        assert!(re.is_match(ok), "{ok}");
        assert!(ok.parse::<Duration>().is_ok(), "{ok}");
    }
    for bad in ["", "1", "-1h", "1d", "h", "1 h", "1h-", "P1D"] {
        assert!(!re.is_match(bad), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Example manifests

#[test]
fn bucket_example_deserializes() {
    let b: S3Bucket = serde_yaml::from_str(BUCKET_EXAMPLE).unwrap();
    assert_eq!(b.metadata.name.as_deref(), Some("media"));
    assert_eq!(b.s3_bucket_name(), "media.example");
    assert_eq!(b.nats_bucket_name(), "media_example");
    let s = &b.spec;
    assert_eq!(s.storage, StorageType::File);
    assert_eq!(s.replicas, Some(3));
    assert_eq!(s.max_bytes, Some(10 << 30));
    assert_eq!(s.max_object_bytes, Some(1 << 30));
    assert_eq!(s.ttl, Some("720h".parse().unwrap()));
    assert!(s.compression);
    assert_eq!(
        s.placement.as_ref().unwrap().tags,
        ["ssd".to_string()].to_vec()
    );
    assert_eq!(s.metadata.get("team").map(String::as_str), Some("media"));
    assert_eq!(s.access, BucketAccess::PublicRead);
    assert!(!s.read_only);
    assert_eq!(s.cors.len(), 1);
    assert_eq!(
        s.cors[0].allowed_methods,
        [CorsMethod::Get, CorsMethod::Head]
    );
    assert_eq!(s.allowed_namespaces, ["team-b".to_string()]);
    assert_eq!(s.deletion_policy, DeletionPolicy::Retain);
    assert!(!s.adopt);
    assert!(b.status.is_none());
}

#[test]
fn credential_example_deserializes() {
    let c: S3Credential = serde_yaml::from_str(CREDENTIAL_EXAMPLE).unwrap();
    assert_eq!(c.metadata.name.as_deref(), Some("media-app"));
    assert_eq!(c.secret_name(), "media-app-s3");
    let s = &c.spec;
    assert_eq!(s.grants.len(), 2);
    assert_eq!(s.grants[0].bucket, "media");
    assert_eq!(s.grants[0].namespace, None);
    assert_eq!(s.grants[0].permission, GrantPermission::ReadWrite);
    assert_eq!(s.grants[1].namespace.as_deref(), Some("shared"));
    assert_eq!(s.grants[1].permission, GrantPermission::Read);
    assert_eq!(s.key_source.r#type, KeySourceType::Generated);
    assert_eq!(s.rotation.interval, Some("720h".parse().unwrap()));
    assert_eq!(
        s.rotation.overlap,
        std::time::Duration::from_secs(24 * 3600)
    );
    assert_eq!(s.buckets_summary(), "media, shared/assets");
}

#[test]
fn examples_round_trip_and_pass_the_cel_rules() {
    let b: S3Bucket = serde_yaml::from_str(BUCKET_EXAMPLE).unwrap();
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(serde_json::from_value::<S3Bucket>(json.clone()).unwrap(), b);
    let yaml = serde_yaml::to_string(&b).unwrap();
    assert_eq!(serde_yaml::from_str::<S3Bucket>(&yaml).unwrap(), b);
    let raw: Value = serde_yaml::from_str(BUCKET_EXAMPLE).unwrap();
    let cel = Cel::new(&bucket_crd());
    cel.assert_ok(&raw, None);
    cel.assert_ok(&json, Some(&raw));

    let c: S3Credential = serde_yaml::from_str(CREDENTIAL_EXAMPLE).unwrap();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        serde_json::from_value::<S3Credential>(json.clone()).unwrap(),
        c
    );
    let raw: Value = serde_yaml::from_str(CREDENTIAL_EXAMPLE).unwrap();
    let cel = Cel::new(&credential_crd());
    cel.assert_ok(&raw, None);
    cel.assert_ok(&json, Some(&raw));
}

#[test]
fn status_round_trips_with_conditions() {
    let mut b: S3Bucket = serde_yaml::from_str(BUCKET_EXAMPLE).unwrap();
    b.status = Some(S3BucketStatus {
        observed_generation: Some(2),
        conditions: vec![Condition {
            type_: conditions::READY.into(),
            status: "False".into(),
            reason: conditions::REASON_NAME_CONFLICT.into(),
            message: "team-b/media already serves media.example".into(),
            last_transition_time: Time("2026-01-02T03:04:05Z".parse().expect("an RFC 3339 time")),
            observed_generation: Some(2),
        }],
        bucket_name: Some("media.example".into()),
        nats_bucket: Some("media_example".into()),
        endpoint: Some("http://jets3.jets3-system.svc:8080".into()),
        size_bytes: Some(1536),
        size: Some(human_size(1536)),
        object_count: Some(3),
        stats_updated_at: None,
    });
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(json["status"]["size"], "1.5 KiB");
    assert_eq!(serde_json::from_value::<S3Bucket>(json).unwrap(), b);
}

// ---------------------------------------------------------------------------------------------
// Helpers

#[test]
fn conversions_to_gateway_config_types() {
    assert_eq!(
        crate::StorageKind::from(StorageType::Memory),
        crate::StorageKind::Memory
    );
    assert_eq!(
        crate::Access::from(BucketAccess::PublicRead),
        crate::Access::PublicRead
    );
    assert_eq!(
        crate::Permission::from(GrantPermission::ReadWrite),
        crate::Permission::ReadWrite
    );
    let b: S3Bucket = serde_yaml::from_str(BUCKET_EXAMPLE).unwrap();
    let rule = crate::CorsRule::from(&b.spec.cors[0]);
    assert_eq!(rule.allowed_methods, ["GET", "HEAD"]);
    assert_eq!(rule.max_age_seconds, Some(3600));
    // A config built from the example validates.
    let jwt = b.spec.jwt.as_ref().unwrap();
    let key = jwt.keys[0].resolve(&[7u8; 32]).unwrap();
    assert_eq!(
        key.secret_base64.as_deref(),
        Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")
    );
    assert_eq!(jwt.keys[0].source().unwrap().name, "media-jwt");
    let entry = b.gateway_bucket(vec![key]);
    assert_eq!(entry.name, "media.example");
    let gw = entry.jwt.as_ref().unwrap();
    assert_eq!(gw.sources.len(), 2);
    assert_eq!(gw.permission, crate::Permission::ReadWrite);
    assert_eq!(gw.keys.len(), 1);
    assert_eq!(gw.jwks_refresh_seconds, 300, "the gateway default");
    assert_eq!(gw.claims[0].value, serde_json::json!("uploader"));
    assert_eq!(entry.ip_filter.as_ref().unwrap().deny, ["10.66.0.0/16"]);
    assert_eq!(
        entry.cache,
        Some(crate::BucketCache {
            enabled: true,
            max_object_bytes: 262144
        })
    );
    assert_eq!(entry.rate_limit.unwrap().capacity(), 400.0);
    assert_eq!(entry.nats_name(), "media_example");
    assert_eq!(entry.max_object_size, Some(1 << 30));
    assert_eq!(entry.access, crate::Access::PublicRead);
    assert_eq!(entry.cors, vec![rule]);
    let config = crate::GatewayConfig {
        buckets: vec![entry],
        ..Default::default()
    };
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn human_sizes() {
    assert_eq!(human_size(0), "0 B");
    assert_eq!(human_size(1023), "1023 B");
    assert_eq!(human_size(1024), "1.0 KiB");
    assert_eq!(human_size(1536), "1.5 KiB");
    assert_eq!(human_size(10 << 30), "10.0 GiB");
    assert_eq!(human_size(u64::MAX), "16.0 EiB");
}

#[test]
fn bucket_jwt_rules() {
    let cel = Cel::new(&bucket_crd());
    let hs = json!({"algorithm": "HS256", "secretRef": {"name": "k", "key": "hmac"}});
    let rs = json!({"algorithm": "RS256", "publicKeyRef": {"name": "k", "key": "pem"}});
    let ok = |jwt: serde_json::Value| bucket("media", json!({ "jwt": jwt }));
    cel.assert_ok(&ok(json!({"keys": [hs, rs]})), None);
    cel.assert_ok(&ok(json!({"jwksUrl": "https://idp/certs"})), None);
    cel.assert_refused(
        &ok(json!({})),
        None,
        "needs keys (from Secrets) or a jwksUrl",
    );
    cel.assert_refused(
        &ok(json!({"keys": [{"algorithm": "HS256", "publicKeyRef": {"name": "k", "key": "pem"}}]})),
        None,
        "keys need secretRef",
    );
    cel.assert_refused(
        &ok(json!({"keys": [{"algorithm": "ES256", "secretRef": {"name": "k", "key": "x"}}]})),
        None,
        "keys need publicKeyRef",
    );
    cel.assert_refused(
        &ok(json!({"keys": [
            {"kid": "a", "algorithm": "HS256", "secretRef": {"name": "k", "key": "x"}},
            {"kid": "a", "algorithm": "HS512", "secretRef": {"name": "k", "key": "y"}}
        ]})),
        None,
        "kid must be unique",
    );
    cel.assert_refused(
        &ok(json!({"jwksUrl": "https://idp/certs", "sources": [{"kind": "bearer", "name": "x"}]})),
        None,
        "a bearer source takes no name",
    );
    cel.assert_refused(
        &ok(json!({"jwksUrl": "https://idp/certs", "sources": [{"kind": "header"}]})),
        None,
        "needs one",
    );
    cel.assert_refused(
        &ok(json!({"jwksUrl": "https://idp/certs", "sources": [{"kind": "header", "name": "Authorization"}]})),
        None,
        "use a bearer source",
    );
    cel.assert_refused(
        &ok(json!({"jwksUrl": "https://idp/certs", "jwksRefreshSeconds": 60, "jwksMinRefreshSeconds": 61})),
        None,
        "must not exceed jwksRefreshSeconds",
    );
    cel.assert_refused(
        &bucket("media", json!({"rateLimit": {"requestsPerSecond": 0.0}})),
        None,
        "requestsPerSecond must be above 0",
    );
}
