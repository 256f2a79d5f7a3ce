//! Command-line flags; each also reads an environment variable (`JETS3_*`, or the Downward
//! API's `POD_NAMESPACE` / `POD_NAME`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use jets3_crds::{GatewayConfig, Limits, PublicAccessBlock};

use std::sync::Arc;

use crate::context::PushSettings;
use crate::push::client::PushClient;
use crate::push::signer::Signer;
use crate::Error;
use jets3_nats::NatsFlags;

/// Where NATS is when `--nats-url` is not given.
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// jets3-operator: reconciles S3Bucket and S3Credential resources into NATS JetStream
/// object-store buckets, Secrets for apps, and the jets3 gateways' config.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    mut_arg("nats_url", |a| a.default_value(DEFAULT_NATS_URL))
)]
pub struct Cli {
    #[command(flatten)]
    pub nats: NatsFlags,

    /// The gateway's S3 Service URL, written to app Secrets (AWS_ENDPOINT_URL) and to
    /// S3Bucket status.endpoint.
    #[arg(long, env = "JETS3_GATEWAY_ENDPOINT")]
    pub gateway_endpoint: String,
    /// The S3 region (AWS_REGION in app Secrets, and the gateways' region).
    #[arg(long, env = "JETS3_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Namespaces to watch (comma-separated); default: all.
    #[arg(long, env = "JETS3_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Namespaces (comma-separated, `*` for all) whose S3Buckets may adopt, with
    /// `spec.adopt`, a NATS bucket owned by another namespace's S3Bucket (one retained after
    /// its S3Bucket was deleted). Default: none; a bucket without a jets3 owner, or owned in
    /// the same namespace, is adoptable without it.
    #[arg(long, env = "JETS3_ADOPT_ACROSS_NAMESPACES", value_delimiter = ',')]
    pub adopt_across_namespaces: Vec<String>,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "JETS3_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Listen address for /config (the config with key material redacted, access key ids and
    /// grants); no authentication of its own, so keep it on loopback (`kubectl
    /// port-forward` reaches it, as the apiserver authorizes).
    #[arg(long, env = "JETS3_DEBUG_LISTEN", default_value = "127.0.0.1:8081")]
    pub debug_listen: SocketAddr,

    /// Run only while holding the leader Lease (for several replicas).
    #[arg(long, env = "JETS3_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader Lease, in the operator's namespace.
    #[arg(long, env = "JETS3_LEASE_NAME", default_value = "jets3-operator")]
    pub lease_name: String,
    /// How long the Lease is valid without renewal (renewed every third of it).
    #[arg(long, env = "JETS3_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,

    /// The operator's namespace (Lease, config state); default: the service account's, or
    /// the kubeconfig context's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name (Lease holder, Events); default: the host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// ConfigMap (in the operator's namespace) holding the config generation and hash.
    #[arg(long, env = "JETS3_CONFIG_STATE", default_value = "jets3-config-state")]
    pub config_state: String,
    /// Also write each published gateway config to this file (YAML, mode 0600, with the
    /// secret keys): the file a standalone `jets3-gateway --config` reloads.
    #[arg(long, env = "JETS3_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// How often every resource is checked again (NATS drift, bucket size, key rotation).
    #[arg(long, env = "JETS3_RESYNC_INTERVAL", default_value = "60s", value_parser = duration)]
    pub resync_interval: Duration,
    /// How long deleting an S3Bucket with deletionPolicy Delete retries while NATS is
    /// unreachable; then the S3Bucket goes and the NATS bucket is left in place.
    #[arg(long, env = "JETS3_DELETE_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub delete_timeout: Duration,

    /// The gateways' request limits, rate limits (global, per client IP, per access key),
    /// timeouts and NATS circuit breaker: the `limits` section of a gateway config file, as
    /// JSON or YAML; fields left out keep the gateway defaults. Pushed with the config.
    #[arg(long, env = "JETS3_GATEWAY_LIMITS", value_parser = gateway_limits)]
    pub gateway_limits: Option<Limits>,
    /// Whether the gateways' audit log records reads too (writes and refusals always are).
    #[arg(long, env = "JETS3_AUDIT_READS", default_value_t = true, action = ArgAction::Set)]
    pub audit_reads: bool,
    /// Block Public Access of buckets whose S3Bucket sets no spec.publicAccessBlock and
    /// that have none set over S3, as JSON or YAML (`{"blockPublicAcls": false, ...}`;
    /// fields left out stay true). Default: everything blocked.
    #[arg(long, env = "JETS3_PUBLIC_ACCESS_BLOCK_DEFAULT", value_parser = public_access_block)]
    pub public_access_block_default: Option<PublicAccessBlock>,

    /// The config push to gateway pods: the ES256 private key (PEM, `EC PRIVATE KEY` or
    /// `PRIVATE KEY`) push tokens are signed with. Turns the push on.
    #[arg(long, env = "JETS3_PUSH_SIGNING_KEY")]
    pub push_signing_key: Option<PathBuf>,
    /// The `iss` of push tokens.
    #[arg(long, env = "JETS3_PUSH_ISSUER", default_value = "jets3-operator")]
    pub push_issuer: String,
    /// The `aud` of push tokens.
    #[arg(long, env = "JETS3_PUSH_AUDIENCE", default_value = "jets3-gateway")]
    pub push_audience: String,
    /// CA certificate(s) (PEM) the gateways' push certificate is checked against.
    #[arg(long, env = "JETS3_PUSH_CA")]
    pub push_ca: Option<PathBuf>,
    /// The name the gateways' push certificate carries (default: the pod IP).
    #[arg(long, env = "JETS3_PUSH_SERVER_NAME")]
    pub push_server_name: Option<String>,
    /// Push over plain HTTP instead of TLS (local tests only; the gateways then need
    /// --push-insecure).
    #[arg(long, env = "JETS3_PUSH_PLAINTEXT")]
    pub push_plaintext: bool,
    /// Label selector of the gateway pods, e.g. `app.kubernetes.io/name=jets3,app.kubernetes.io/component=gateway`.
    #[arg(long, env = "JETS3_GATEWAY_SELECTOR")]
    pub gateway_selector: Option<String>,
    /// Namespace of the gateway pods; default: the operator's.
    #[arg(long, env = "JETS3_GATEWAY_NAMESPACE")]
    pub gateway_namespace: Option<String>,
    /// The gateways' push port.
    #[arg(long, env = "JETS3_GATEWAY_PUSH_PORT", default_value_t = 9443)]
    pub gateway_push_port: u16,
    /// How often each gateway pod is asked again what it holds (notices restarted gateways).
    #[arg(long, env = "JETS3_PUSH_CHECK_INTERVAL", default_value = "30s", value_parser = duration)]
    pub push_check_interval: Duration,

    #[arg(long, env = "JETS3_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `jets3_operator=debug`.
    #[arg(long, env = "JETS3_LOG", default_value = "info")]
    pub log: String,
}

/// A Go-style duration (`90s`, `1h30m`).
fn duration(s: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = s.parse().map_err(|e| format!("{e}"))?;
    if d.is_negative() {
        return Err("must not be negative".into());
    }
    Ok(d.into())
}

/// A `limits` section, checked by the gateway config's validation.
fn public_access_block(s: &str) -> Result<PublicAccessBlock, String> {
    serde_yaml::from_str(s).map_err(|e| e.to_string())
}

fn gateway_limits(s: &str) -> Result<Limits, String> {
    let limits: Limits = serde_yaml::from_str(s).map_err(|e| e.to_string())?;
    let config = GatewayConfig {
        limits,
        ..Default::default()
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config.limits)
}

impl Cli {
    /// The config push settings (`None` without `--push-signing-key`); loads the key and the
    /// CA, so a bad file stops the start with a clear error.
    pub fn push_settings(&self, namespace: &str) -> Result<Option<PushSettings>, Error> {
        let Some(key) = &self.push_signing_key else {
            let given = [
                ("--push-ca", self.push_ca.is_some()),
                ("--push-server-name", self.push_server_name.is_some()),
                ("--push-plaintext", self.push_plaintext),
                ("--gateway-selector", self.gateway_selector.is_some()),
                ("--gateway-namespace", self.gateway_namespace.is_some()),
            ];
            return match given.iter().find(|(_, g)| *g) {
                Some((flag, _)) => Err(Error::Config(format!(
                    "{flag} is a config push flag; the push needs --push-signing-key"
                ))),
                None => Ok(None),
            };
        };
        let selector = self
            .gateway_selector
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| Error::Config("the config push needs --gateway-selector".into()))?;
        let ca =
            match (&self.push_ca, self.push_plaintext) {
                (Some(_), true) => {
                    return Err(Error::Config(
                        "--push-ca and --push-plaintext exclude each other".into(),
                    ))
                }
                (None, false) => return Err(Error::Config(
                    "the config push needs --push-ca (TLS), or --push-plaintext for local tests"
                        .into(),
                )),
                (ca, _) => ca.clone(),
            };
        let signer = Signer::new(key.clone(), &self.push_issuer, &self.push_audience)?;
        let client = PushClient::new(
            signer,
            ca,
            self.push_server_name.as_deref(),
            self.gateway_push_port,
        )?;
        Ok(Some(PushSettings {
            client: Arc::new(client),
            selector,
            namespace: self
                .gateway_namespace
                .clone()
                .unwrap_or_else(|| namespace.to_string()),
            check_interval: self.push_check_interval,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_defaults() {
        let cli = Cli::try_parse_from([
            "jets3-operator",
            "--gateway-endpoint",
            "http://gw:9000",
            "--watch-namespaces",
            "a,b",
            "--resync-interval",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(cli.watch_namespaces, ["a", "b"]);
        assert_eq!(cli.resync_interval, Duration::from_secs(90));
        assert_eq!(cli.delete_timeout, Duration::from_secs(600));
        assert_eq!(cli.metrics_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.debug_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(cli.lease_name, "jets3-operator");
        assert!(!cli.leader_election);
        assert_eq!(cli.nats.settings().servers, ["nats://127.0.0.1:4222"]);
        assert!(Cli::try_parse_from([
            "jets3-operator",
            "--gateway-endpoint",
            "x",
            "--lease-duration",
            "soon"
        ])
        .is_err());
        assert!(cli.push_settings("ns").unwrap().is_none());
        assert!(cli.gateway_limits.is_none() && cli.audit_reads);
        assert!(cli.adopt_across_namespaces.is_empty());
    }

    #[test]
    fn gateway_limits_are_parsed_and_validated() {
        let parse = |v: &str| {
            Cli::try_parse_from([
                "jets3-operator",
                "--gateway-endpoint=x",
                "--audit-reads=false",
                &format!("--gateway-limits={v}"),
            ])
        };
        let cli = parse(r#"{"rateLimits": {"global": {"requestsPerSecond": 100}}, "circuitBreaker": {"failureThreshold": 3}, "timeouts": {"requestSeconds": 60}}"#).unwrap();
        assert_eq!(cli.public_access_block_default, None);
        let l = cli.gateway_limits.unwrap();
        assert_eq!(l.rate_limits.global.unwrap().requests_per_second, 100.0);
        assert_eq!(l.circuit_breaker.failure_threshold, 3);
        assert_eq!(l.circuit_breaker.cooldown_seconds, 5, "default kept");
        assert_eq!(l.timeouts.request_seconds, 60);
        assert!(!cli.audit_reads);
        let err = parse(r#"{"rateLimits": {"global": {"requestsPerSecond": 0}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.rateLimits.global.requestsPerSecond"),
            "{err}"
        );
        assert!(
            parse(r#"{"rateLimit": {}}"#).is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn push_flags_are_checked_together() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
        let key = key.to_str().unwrap();
        let parse = |extra: &[&str]| {
            let mut args = vec!["jets3-operator", "--gateway-endpoint", "x"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().push_settings("own")
        };
        let err = |extra: &[&str]| parse(extra).unwrap_err().to_string();
        assert!(err(&["--gateway-selector", "a=b"]).contains("--push-signing-key"));
        assert!(
            err(&["--push-signing-key", key, "--push-plaintext"]).contains("--gateway-selector")
        );
        assert!(
            err(&["--push-signing-key", key, "--gateway-selector", "a=b"]).contains("--push-ca")
        );
        assert!(err(&[
            "--push-signing-key",
            "/nonexistent",
            "--gateway-selector",
            "a=b",
            "--push-plaintext"
        ])
        .contains("/nonexistent"));
        let p = parse(&[
            "--push-signing-key",
            key,
            "--gateway-selector",
            "a=b",
            "--push-plaintext",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((p.selector.as_str(), p.namespace.as_str()), ("a=b", "own"));
        assert_eq!(p.check_interval, Duration::from_secs(30));
    }
}
