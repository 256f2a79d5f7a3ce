//! Claim rules: `equals`, `in`, `contains`, `gt`, `lt` on dotted claim paths.

use jets3_crds::{ClaimOp, ClaimRule};
use serde_json::Value;

/// A claim rule with its path split once.
pub struct Rule {
    path: Vec<String>,
    op: ClaimOp,
    value: Value,
}

impl From<&ClaimRule> for Rule {
    fn from(r: &ClaimRule) -> Self {
        Rule {
            path: r.claim.split('.').map(str::to_string).collect(),
            op: r.op,
            value: r.value.clone(),
        }
    }
}

/// The claim at a dotted path (`realm.roles`), if present.
pub fn lookup<'c>(claims: &'c Value, path: &[String]) -> Option<&'c Value> {
    path.iter().try_fold(claims, |v, seg| v.get(seg.as_str()))
}

impl Rule {
    /// Whether the claims satisfy the rule; a missing claim never does.
    pub fn holds(&self, claims: &Value) -> bool {
        let Some(claim) = lookup(claims, &self.path) else {
            return false;
        };
        match self.op {
            ClaimOp::Equals => claim == &self.value,
            ClaimOp::In => self
                .value
                .as_array()
                .is_some_and(|options| options.contains(claim)),
            ClaimOp::Contains => match (claim, &self.value) {
                (Value::Array(items), v) => items.contains(v),
                (Value::String(s), Value::String(v)) => s.split(' ').any(|w| w == v),
                _ => false,
            },
            ClaimOp::Gt | ClaimOp::Lt => match (claim.as_f64(), self.value.as_f64()) {
                (Some(c), Some(v)) if self.op == ClaimOp::Gt => c > v,
                (Some(c), Some(v)) => c < v,
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(claim: &str, op: ClaimOp, value: Value) -> Rule {
        Rule::from(&ClaimRule {
            claim: claim.into(),
            op,
            value,
        })
    }

    #[test]
    fn operators_on_nested_claims() {
        let c = json!({
            "sub": "u1",
            "realm": {"roles": ["reader", "writer"], "level": 3},
            "scope": "openid s3:read profile",
            "tier": "gold",
        });
        assert!(rule("sub", ClaimOp::Equals, json!("u1")).holds(&c));
        assert!(!rule("sub", ClaimOp::Equals, json!("u2")).holds(&c));
        assert!(rule("realm.roles", ClaimOp::Contains, json!("writer")).holds(&c));
        assert!(!rule("realm.roles", ClaimOp::Contains, json!("admin")).holds(&c));
        assert!(rule("scope", ClaimOp::Contains, json!("s3:read")).holds(&c));
        assert!(!rule("scope", ClaimOp::Contains, json!("s3")).holds(&c));
        assert!(rule("tier", ClaimOp::In, json!(["gold", "silver"])).holds(&c));
        assert!(!rule("tier", ClaimOp::In, json!(["bronze"])).holds(&c));
        assert!(rule("realm.level", ClaimOp::Gt, json!(2)).holds(&c));
        assert!(!rule("realm.level", ClaimOp::Gt, json!(3)).holds(&c));
        assert!(rule("realm.level", ClaimOp::Lt, json!(3.5)).holds(&c));
        assert!(!rule("realm.level", ClaimOp::Lt, json!(1)).holds(&c));
        assert!(
            !rule("tier", ClaimOp::Gt, json!(1)).holds(&c),
            "not a number"
        );
        assert!(!rule("realm.missing", ClaimOp::Equals, json!(null)).holds(&c));
        assert!(!rule("sub.deeper", ClaimOp::Equals, json!("u1")).holds(&c));
    }
}
