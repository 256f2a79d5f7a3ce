//! How to reach NATS: servers, one way to authenticate, and TLS.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

/// How to reach NATS (the gateway's `server.nats` in its config file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URLs, e.g. `nats://127.0.0.1:4222`.
    pub servers: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// TLS: CA to trust, and a client certificate for mutual TLS.
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Require TLS even if the URL says `nats://`.
    pub tls_required: bool,
}

/// The `--nats-*` flags (each also an environment variable `JETS3_NATS_*`), flattened into
/// the gateway's and the operator's command lines.
#[derive(Debug, Clone, Default, Args)]
pub struct NatsFlags {
    /// NATS server URLs (comma-separated).
    #[arg(long, env = "JETS3_NATS_URL", value_delimiter = ',')]
    pub nats_url: Vec<String>,
    #[arg(long, env = "JETS3_NATS_USER")]
    pub nats_user: Option<String>,
    #[arg(long, env = "JETS3_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    #[arg(long, env = "JETS3_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    #[arg(long, env = "JETS3_NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    #[arg(long, env = "JETS3_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) to trust for NATS TLS.
    #[arg(long, env = "JETS3_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[arg(long, env = "JETS3_NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    #[arg(long, env = "JETS3_NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Require TLS even for `nats://` URLs.
    #[arg(long, env = "JETS3_NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,
}

impl NatsFlags {
    /// Applies the flags given on top of `s` (flags left out keep its values).
    pub fn apply(&self, s: &mut NatsSettings) {
        if !self.nats_url.is_empty() {
            s.servers = self.nats_url.clone();
        }
        for (dst, src) in [
            (&mut s.user, &self.nats_user),
            (&mut s.password, &self.nats_password),
            (&mut s.token, &self.nats_token),
            (&mut s.nkey_seed, &self.nats_nkey_seed),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        for (dst, src) in [
            (&mut s.creds_file, &self.nats_creds),
            (&mut s.tls_ca_file, &self.nats_tls_ca),
            (&mut s.tls_cert_file, &self.nats_tls_cert),
            (&mut s.tls_key_file, &self.nats_tls_key),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        s.tls_required |= self.nats_tls_required;
    }

    /// The settings the flags alone give.
    pub fn settings(&self) -> NatsSettings {
        let mut s = NatsSettings::default();
        self.apply(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsFlags,
    }

    #[test]
    fn flags_override_what_they_name() {
        let cli = Cli::try_parse_from([
            "x",
            "--nats-url",
            "nats://a:4222,nats://b:4222",
            "--nats-token",
            "t",
            "--nats-tls-ca",
            "/ca.pem",
            "--nats-tls-required",
        ])
        .unwrap();
        let mut s = NatsSettings {
            servers: vec!["nats://file:4222".into()],
            user: Some("u".into()),
            tls_cert_file: Some("/cert.pem".into()),
            ..Default::default()
        };
        cli.nats.apply(&mut s);
        assert_eq!(s.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(s.user.as_deref(), Some("u"));
        assert_eq!(s.token.as_deref(), Some("t"));
        assert_eq!(s.tls_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.tls_cert_file, Some(PathBuf::from("/cert.pem")));
        assert!(s.tls_required);

        let none = Cli::try_parse_from(["x"]).unwrap();
        let before = s.clone();
        none.nats.apply(&mut s);
        assert_eq!(s, before);
    }

    #[test]
    fn file_fields_are_camel_case() {
        let s: NatsSettings = serde_json::from_str(
            r#"{"servers":["nats://n:4222"],"nkeySeed":"SU","tlsRequired":true}"#,
        )
        .unwrap();
        assert_eq!(s.nkey_seed.as_deref(), Some("SU"));
        assert!(s.tls_required);
        assert!(serde_json::from_str::<NatsSettings>(r#"{"nkey":"x"}"#).is_err());
    }
}
