//! Blind PUTs (no condition) of new keys commit without looking the key up first; a bucket
//! whose blind PUTs replace keys looks them up again; either way every version ends where it
//! belongs, also when two gateways create the same key at once.

use aws_sdk_s3::types::BucketVersioningStatus;
use jets3_gateway::store::meta::meta_subject;

use crate::common::*;
use crate::netfault::env_behind_proxy;

/// The subject of a Direct Get of `key`'s current version.
fn lookup_of(bucket: &str, key: &str) -> String {
    format!(
        "$JS.API.DIRECT.GET.OBJ_{bucket}.{}",
        meta_subject(bucket, key)
    )
}

/// New keys cost no lookup; overwrites of one key guess wrong at most twice before they look
/// the key up first, and each still replaces the version before it (nothing left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_skip_the_lookup_and_overwrites_go_back_to_it() {
    let b = unique_bucket("newkeys");
    let (env, proxy) = env_behind_proxy(&b, |_| {}).await;
    let s3 = env.client();

    let keys: Vec<String> = (0..20).map(|i| format!("new-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        put(&s3, &b, key, &data(4096, i as u64)).await;
    }
    let count = |subject: fn(&str, &str) -> String| -> usize {
        keys.iter()
            .map(|k| proxy.publishes_to(&subject(&b, k)))
            .sum()
    };
    assert_eq!(count(lookup_of), 0, "PUTs of new keys look nothing up");
    assert_eq!(count(meta_subject), 20, "one commit per new key");

    let mut last = Vec::new();
    for i in 0..20 {
        last = data(3000 + i as usize, 100 + i);
        put(&s3, &b, "hot", &last).await;
    }
    // The first PUT creates the key; a wrong guess is a refused commit and a second one.
    let wrong = env.metric("jets3_put_guesses_wrong_total").await;
    assert_eq!(
        env.metric("jets3_put_lookups_skipped_total").await,
        Some(21.0),
        "the new keys and the first PUT of \"hot\" guessed right"
    );
    assert!(
        wrong.is_some_and(|w| (1.0..=2.0).contains(&w)),
        "{wrong:?} overwrites guessed the key was new: the bucket should look keys up by now"
    );
    assert!(
        proxy.publishes_to(&meta_subject(&b, "hot")) >= 21,
        "a wrong guess is a refused commit and a second one"
    );
    assert!(get_bytes(&s3, &b, "hot").await == last, "the last PUT wins");
    for i in 0..20 {
        assert!(
            get_bytes(&s3, &b, &format!("new-{i}")).await == data(4096, i),
            "new-{i} reads back"
        );
    }
    env.wait_holds_only_live(&b, 30).await;
}

/// With versioning, a PUT that guessed wrong still keeps the version it replaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_guess_keeps_the_replaced_version() {
    let b = unique_bucket("newkeys-v");
    let (env, proxy) = env_behind_proxy(&b, |_| {}).await;
    let s3 = env.client();
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let commits = meta_subject(&b, "k");
    let before = proxy.publishes_to(&commits);
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| data(5000 + i, i as u64)).collect();
    for body in &bodies {
        put(&s3, &b, "k", body).await;
    }
    assert!(
        proxy.publishes_to(&commits) - before > bodies.len(),
        "at least one PUT guessed the key was new and was refused"
    );
    let listed = ok(
        s3.list_object_versions().bucket(&b).send().await,
        "ListObjectVersions",
    );
    let versions = listed.versions();
    assert_eq!(versions.len(), 3, "every PUT kept a version");
    // Newest first.
    for (v, body) in versions.iter().zip(bodies.iter().rev()) {
        let id = v.version_id().unwrap_or_default();
        assert!(
            get_version_bytes(&s3, &b, "k", id).await == *body,
            "{id} holds its body"
        );
    }
    env.wait_holds_only_live(&b, 30).await;
}

/// Two gateways create the same new key at the same moment, both guessing it new: one
/// commit is refused, looks the key up and replaces the other; one version stays, whole,
/// and the replaced one's chunks go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_creating_one_key_leave_one_whole_version() {
    let b = unique_bucket("newkeys-race");
    let (env, _proxy) = env_behind_proxy(&b, |_| {}).await;
    let (s3, peer) = (env.client(), env.peer().await);
    let other = peer.client();
    for round in 0..10u64 {
        let key = format!("k{round}");
        let (ours, theirs) = (data(70_000, 2 * round), data(90_000, 2 * round + 1));
        let (a, c) = tokio::join!(
            s3.put_object()
                .bucket(&b)
                .key(&key)
                .body(ours.clone().into())
                .send(),
            other
                .put_object()
                .bucket(&b)
                .key(&key)
                .body(theirs.clone().into())
                .send()
        );
        ok(a, "PUT through one gateway");
        ok(c, "PUT through the other");
        let got = get_bytes(&s3, &b, &key).await;
        assert!(
            got == ours || got == theirs,
            "{key} is one of the two, whole"
        );
        assert!(
            get_bytes(&other, &b, &key).await == got,
            "both gateways read the same version of {key}"
        );
    }
    env.wait_holds_only_live(&b, 30).await;
}
