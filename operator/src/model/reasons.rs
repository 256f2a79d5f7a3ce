//! Every condition reason the operator writes, in one place. The two a user may script
//! against ([`NAME_CONFLICT`], [`BUCKET_EXISTS`]) are part of the CRDs' API
//! (`jets3_crds::k8s::conditions`) and re-exported here.

pub use jets3_crds::k8s::conditions::{
    REASON_BUCKET_EXISTS as BUCKET_EXISTS, REASON_NAME_CONFLICT as NAME_CONFLICT,
};

/// A condition that holds.
pub const OK: &str = "Ok";

// `Served` (and `Ready`): where the resource's part of the config is.

/// The gateways serve it.
pub const SERVED: &str = "Served";
/// In the published config, not yet delivered to every gateway.
pub const DELIVERING: &str = "Delivering";
/// In the published config, but no config push or config file delivers it.
pub const AWAITING_PUSH: &str = "AwaitingPush";
/// In the published config, but the config push finds no gateway pod.
pub const NO_GATEWAYS: &str = "NoGateways";
/// The config has not been built yet.
pub const PENDING: &str = "Pending";

// `Served`: why a part is left out of the config.

/// The resource is being deleted.
pub const DELETING: &str = "Deleting";
/// `S3Bucket`: the NATS bucket is not (yet) provisioned for this S3Bucket.
pub const NOT_PROVISIONED: &str = "NotProvisioned";
/// `S3Credential`: its Secret with the key is not written yet.
pub const NO_KEY: &str = "NoKey";
/// `S3Bucket`: a Secret (or a key in it) that spec.jwt.keys names is missing.
pub const JWT_KEY_NOT_FOUND: &str = "JwtKeyNotFound";
/// The part breaks a rule of the gateway config's validation.
pub const INVALID_CONFIG: &str = "InvalidConfig";
/// `S3Credential`: another credential, created first, uses the same access key id.
pub const DUPLICATE_ACCESS_KEY: &str = "DuplicateAccessKey";
/// A grant names an S3Bucket that does not exist.
pub const BUCKET_NOT_FOUND: &str = "BucketNotFound";
/// A grant names an S3Bucket in another namespace that does not allow this one.
pub const GRANT_DENIED: &str = "GrantDenied";
/// A grant names an S3Bucket whose part is not in the config.
pub const BUCKET_NOT_SERVED: &str = "BucketNotServed";

// `BucketProvisioned` (and `Ready`).

pub const NATS_UNAVAILABLE: &str = "NatsUnavailable";
/// The NATS bucket was missing and is created again, empty (Warning, `DataLost`).
pub const BUCKET_RECREATED: &str = "BucketRecreated";
pub const STORAGE_MISMATCH: &str = "StorageMismatch";
pub const CREATE_REFUSED: &str = "CreateRefused";
pub const UPDATE_REFUSED: &str = "UpdateRefused";
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
/// `spec.adopt` names a NATS bucket another namespace's S3Bucket owns.
pub const ADOPTION_REFUSED: &str = "AdoptionRefused";

// `SecretWritten` (and `Ready`).

/// The app Secret's name is taken by a Secret this credential does not own.
pub const SECRET_EXISTS: &str = "SecretExists";
/// The keySource Secret is missing or lacks the keys.
pub const SOURCE_SECRET_INVALID: &str = "SourceSecretInvalid";
