//! The subjects of a replicated stream that match a filter, as the stream's leader holds
//! them. STREAM.INFO lists them, but a replica that has lost its leader answers it too, from
//! what it holds (nats-server's `jsStreamInfoRequest`), and it may be behind: a list that
//! decides a purge takes only the leader's answer. The leader names itself in
//! `cluster.leader` and leaves itself out of `cluster.replicas`; a replica without a leader
//! names none (or the one it lost) and lists itself.

use std::collections::HashMap;

use async_nats::jetstream::context::RequestErrorKind;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::ClusterInfo;
use async_nats::jetstream::Context;
use serde::Deserialize;

use super::NatsError;

/// One page of a STREAM.INFO answer, as far as this reads it.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    total: usize,
    state: PageState,
    cluster: Option<ClusterInfo>,
}

#[derive(Deserialize)]
struct PageState {
    #[serde(default)]
    subjects: Option<HashMap<String, u64>>,
}

/// Whether the server that answered leads the stream's group.
fn from_leader(cluster: Option<&ClusterInfo>) -> bool {
    let Some(c) = cluster else {
        return false;
    };
    match c.leader.as_deref() {
        Some(leader) if !leader.is_empty() => !c.replicas.iter().any(|r| r.name == leader),
        _ => false,
    }
}

/// The subjects of replicated stream `stream` that match `filter`, from its leader. A page
/// another server answered is [`NatsError::NoResponders`] (a leader election: worth another
/// try).
pub(super) async fn leader_subjects(
    js: &Context,
    stream: &str,
    filter: &str,
) -> Result<Vec<String>, NatsError> {
    let mut subjects = Vec::new();
    loop {
        let request = serde_json::json!({"subjects_filter": filter, "offset": subjects.len()});
        let page: Response<Page> = js
            .request(format!("STREAM.INFO.{stream}"), &request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => NatsError::NoResponders,
                RequestErrorKind::TimedOut => NatsError::TimedOut,
                _ => NatsError::other(e),
            })?;
        let page = match page {
            Response::Ok(page) => page,
            Response::Err { error } => return Err(NatsError::other(error)),
        };
        if !from_leader(page.cluster.as_ref()) {
            return Err(NatsError::NoResponders);
        }
        let got = page.state.subjects.unwrap_or_default();
        let more = !got.is_empty();
        subjects.extend(got.into_keys());
        if !more || subjects.len() >= page.total {
            return Ok(subjects);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(leader: Option<&str>, replicas: &[&str]) -> ClusterInfo {
        serde_json::from_value(serde_json::json!({
            "name": "c",
            "leader": leader,
            "replicas": replicas
                .iter()
                .map(|n| serde_json::json!({"name": n, "current": true, "active": 0}))
                .collect::<Vec<_>>(),
        }))
        .expect("cluster info")
    }

    #[test]
    fn only_the_leaders_answer_counts() {
        assert!(from_leader(Some(&cluster(Some("n1"), &["n2", "n3"]))));
        // A replica without a leader, naming none or the one it lost.
        assert!(!from_leader(Some(&cluster(None, &["n1", "n2", "n3"]))));
        assert!(!from_leader(Some(&cluster(Some(""), &["n2", "n3"]))));
        assert!(!from_leader(Some(&cluster(Some("n1"), &["n1", "n3"]))));
        assert!(!from_leader(None));
    }
}
