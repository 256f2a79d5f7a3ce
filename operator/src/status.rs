//! Status conditions and writing status by server-side apply (field manager
//! [`crate::FIELD_MANAGER`]).

use std::fmt::Debug;

use jets3_crds::k8s::{conditions, Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::hub::Serving;
use crate::model::reasons;
use crate::Result;

/// The time now in whole seconds, which is what Kubernetes keeps of a time: a status
/// written with it reads back equal, so an unchanged status is never written again.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// A condition of `type_`, keeping the last transition time of `old` when the status is the
/// same as before.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    old: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(now()));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The `Served` condition for a serving state.
pub fn served(serving: &Serving, generation: Option<i64>, old: &[Condition]) -> Condition {
    let (ok, reason, message) = match serving {
        Serving::Served { generation } => (
            true,
            reasons::SERVED,
            format!("the gateways serve it (gateway config generation {generation})"),
        ),
        Serving::Delivering { generation } => (
            false,
            reasons::DELIVERING,
            format!("in gateway config generation {generation}, not yet delivered to every gateway"),
        ),
        Serving::AwaitingPush { generation } => (
            false,
            reasons::AWAITING_PUSH,
            format!(
                "in gateway config generation {generation}, but nothing delivers the config to gateways (no config push or config file is set up)"
            ),
        ),
        Serving::NoGateways { generation } => (
            false,
            reasons::NO_GATEWAYS,
            format!(
                "in gateway config generation {generation}, but the config push finds no gateway pod (--gateway-selector in --gateway-namespace)"
            ),
        ),
        Serving::Excluded { reason, message } => (false, *reason, message.clone()),
        Serving::Unknown => (
            false,
            reasons::PENDING,
            "the gateway config has not been built yet".to_string(),
        ),
    };
    condition(conditions::SERVED, ok, reason, message, generation, old)
}

/// `Ready`: True when every condition in `parts` is, else the first False one's reason and
/// message.
pub fn ready(
    parts: &[&Condition],
    ok_message: &str,
    generation: Option<i64>,
    old: &[Condition],
) -> Condition {
    match parts.iter().find(|c| c.status != "True") {
        None => condition(
            conditions::READY,
            true,
            reasons::OK,
            ok_message,
            generation,
            old,
        ),
        Some(bad) => condition(
            conditions::READY,
            false,
            &bad.reason,
            bad.message.clone(),
            generation,
            old,
        ),
    }
}

/// Whether `new` has a reason that the same condition in `old` did not: the moment to tell a
/// person with an Event.
pub fn newly(new: &Condition, old: &[Condition]) -> bool {
    !old.iter()
        .any(|c| c.type_ == new.type_ && c.status == new.status && c.reason == new.reason)
}

/// Writes `status` on `obj` by server-side apply.
pub async fn apply<K>(api: &Api<K>, obj: &K, status: &impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(crate::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_the_status_stays() {
        let mut first = condition("Ready", false, "A", "a", Some(1), &[]);
        first.last_transition_time = Time(Timestamp::from_second(1_000_000).unwrap());
        let later = condition(
            "Ready",
            false,
            "B",
            "b",
            Some(2),
            std::slice::from_ref(&first),
        );
        assert_eq!(later.last_transition_time, first.last_transition_time);
        assert_eq!(
            (later.reason.as_str(), later.observed_generation),
            ("B", Some(2))
        );
        let flipped = condition("Ready", true, "Ok", "", Some(2), &[later]);
        assert_ne!(flipped.last_transition_time, first.last_transition_time);
        assert_eq!(
            flipped.last_transition_time.0.subsec_nanosecond(),
            0,
            "whole seconds, as stored"
        );
        assert_eq!(flipped.status, "True");
    }

    #[test]
    fn ready_takes_the_first_false_part() {
        let yes = condition("BucketProvisioned", true, "Ok", "fine", None, &[]);
        let no = condition("Served", false, "AwaitingPush", "no push", None, &[]);
        let r = ready(&[&yes, &no], "all good", None, &[]);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.message.as_str()),
            ("False", "AwaitingPush", "no push")
        );
        let r = ready(&[&yes], "all good", None, &[]);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.message.as_str()),
            ("True", "Ok", "all good")
        );
    }

    #[test]
    fn newly_spots_a_new_reason() {
        let old = vec![condition("Ready", false, "NatsUnavailable", "", None, &[])];
        assert!(!newly(
            &condition("Ready", false, "NatsUnavailable", "other text", None, &[]),
            &old
        ));
        assert!(newly(
            &condition("Ready", false, "NameConflict", "", None, &[]),
            &old
        ));
        assert!(newly(&condition("Ready", true, "Ok", "", None, &[]), &old));
    }

    #[test]
    fn served_conditions_say_why() {
        let c = served(&Serving::AwaitingPush { generation: 3 }, Some(1), &[]);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "AwaitingPush")
        );
        assert!(c.message.contains("generation 3"));
        let c = served(&Serving::Served { generation: 4 }, Some(1), &[]);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Served"));
        let c = served(
            &Serving::Excluded {
                reason: "InvalidConfig",
                message: "credentials[0].secretAccessKey: too short".into(),
            },
            None,
            &[],
        );
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("InvalidConfig", "credentials[0].secretAccessKey: too short")
        );
    }
}
