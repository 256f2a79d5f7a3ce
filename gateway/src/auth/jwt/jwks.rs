//! JWKS documents: fetched on first use, refreshed when stale (in the background) and when
//! a token names an unknown `kid` (at most once per `jwksMinRefreshSeconds`), shared by
//! every bucket that names the same URL. A failed fetch keeps the keys held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::Key;

/// Largest JWKS document read.
const MAX_DOCUMENT: usize = 1 << 20;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys of one JWKS URL.
pub struct Jwks {
    url: String,
    /// The bucket's `jwksAllowInsecure`.
    allow_insecure: bool,
    refresh: Duration,
    min_refresh: Duration,
    state: RwLock<State>,
    /// Held while fetching: one fetch at a time per URL.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

type Registry = Mutex<HashMap<(String, u64, u64, bool), Weak<Jwks>>>;

impl Jwks {
    /// The shared key set of `url` (one per URL and settings in the process).
    pub fn shared(
        url: &str,
        refresh: Duration,
        min_refresh: Duration,
        allow_insecure: bool,
    ) -> Arc<Jwks> {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        let mut reg = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        let id = (
            url.to_string(),
            refresh.as_secs(),
            min_refresh.as_secs(),
            allow_insecure,
        );
        if let Some(j) = reg.get(&id).and_then(Weak::upgrade) {
            return j;
        }
        let j = Arc::new(Jwks {
            url: url.to_string(),
            allow_insecure,
            refresh,
            min_refresh,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        });
        reg.insert(id, Arc::downgrade(&j));
        j
    }

    fn snapshot(&self) -> (Arc<Vec<Key>>, Option<Instant>, Option<Instant>) {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        (s.keys.clone(), s.fetched, s.attempted)
    }

    /// The keys to try for a token with this `kid`: fetches first when nothing is held or
    /// the `kid` is unknown (rate-bounded), refreshes in the background when stale.
    pub async fn keys(self: &Arc<Self>, kid: Option<&str>) -> Arc<Vec<Key>> {
        let (keys, fetched, attempted) = self.snapshot();
        let unknown = match kid {
            Some(k) => !keys.iter().any(|key| key.kid.as_deref() == Some(k)),
            None => keys.is_empty(),
        };
        let may_fetch = attempted.is_none_or(|t| t.elapsed() >= self.min_refresh);
        if unknown && may_fetch {
            self.fetch(attempted).await;
            return self.snapshot().0;
        }
        if fetched.is_none_or(|t| t.elapsed() >= self.refresh) && may_fetch {
            let me = self.clone();
            tokio::spawn(async move { me.fetch(attempted).await });
        }
        keys
    }

    /// Fetches now, unless another fetch ran since `seen` (the attempt time read before).
    pub async fn fetch(&self, seen: Option<Instant>) {
        let _one = self.fetching.lock().await;
        if self.snapshot().2 != seen {
            return;
        }
        let result = super::fetch::get(&self.url, MAX_DOCUMENT, FETCH_TIMEOUT, self.allow_insecure)
            .await
            .and_then(|body| parse(&body));
        let now = Instant::now();
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.attempted = Some(now);
        match result {
            Ok(keys) => {
                tracing::debug!(url = %jets3_crds::jwks_url_shown(&self.url), keys = keys.len(), "JWKS fetched");
                s.keys = Arc::new(keys);
                s.fetched = Some(now);
            }
            Err(e) => {
                tracing::warn!(url = %jets3_crds::jwks_url_shown(&self.url), error = %e, "cannot fetch JWKS; keeping the keys held")
            }
        }
    }
}

/// The signature algorithm a JWK names, if it is one.
fn algorithm(k: KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The public signing keys of a JWKS document. Keys for encryption, symmetric keys and
/// keys this gateway cannot use are skipped.
fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if matches!(
            jwk.algorithm,
            AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
        ) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            Some(k) => match algorithm(k) {
                Some(a) => Some(a),
                None => continue,
            },
            None => None,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A fetch that fails logs where it went, but not the URL's user info or query, which
    /// may hold a secret.
    #[tokio::test]
    async fn a_failed_fetch_logs_no_secret_of_its_url() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let url = "http://reader:s3cret@127.0.0.1:1/certs?token=t0k3n";
        let jwks = Jwks::shared(url, Duration::from_secs(60), Duration::ZERO, false);
        jwks.fetch(None).await;
        let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).to_string();
        assert!(text.contains("cannot fetch JWKS"), "{text}");
        assert!(text.contains("http://127.0.0.1:1/certs?…"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("t0k3n"),
            "{text}"
        );
    }
}
