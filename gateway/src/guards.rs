//! What protects each bucket beyond its grants, compiled once per config: JWT settings,
//! address filters, rate limit and cache opt-in.

use std::collections::HashMap;
use std::sync::Arc;

use jets3_crds::{FieldError, GatewayConfig, ValidationErrors};

use crate::auth::jwt::JwtVerifier;

/// One bucket's compiled protection settings.
pub struct BucketGuards {
    pub jwt: Option<JwtVerifier>,
}

impl std::fmt::Debug for BucketGuards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketGuards")
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

/// Compiles the guards of every bucket that has any, reporting keys that do not parse.
pub fn compile(
    config: &GatewayConfig,
) -> Result<HashMap<String, Arc<BucketGuards>>, ValidationErrors> {
    let mut out = HashMap::new();
    let mut errors: Vec<FieldError> = Vec::new();
    for (i, b) in config.buckets.iter().enumerate() {
        let jwt = match &b.jwt {
            Some(j) => match JwtVerifier::compile(j, &format!("buckets[{i}].jwt")) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        if jwt.is_some() {
            out.insert(b.name.clone(), Arc::new(BucketGuards { jwt }));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ValidationErrors(errors))
    }
}
