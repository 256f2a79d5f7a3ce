//! The config: the standalone YAML file and the pushed JSON `GatewayConfig`, `validate()`,
//! and the gateway's `CompiledConfig`.
//!
//! First byte even: the rest is a YAML config file; odd: a pushed JSON config. A config
//! `validate()` accepts must compile into a CompiledConfig (a config the operator accepts must
//! never be refused by a gateway), survive a JSON round trip unchanged, and serve each of
//! its buckets under its own name.
#![no_main]

use jets3_crds::GatewayConfig;
use jets3_gateway::config::compiled::CompiledConfig;
use jets3_gateway::ConfigFile;
use libfuzzer_sys::fuzz_target;

fn check(config: GatewayConfig) {
    let verdict = config.validate();
    let again = config.validate();
    assert_eq!(verdict, again, "validate() is not deterministic");
    if let Err(errors) = &verdict {
        assert!(!errors.0.is_empty(), "an error without problems");
        for e in &errors.0 {
            assert!(
                !e.message.is_empty(),
                "a problem without a message at {}",
                e.path
            );
        }
        assert!(
            CompiledConfig::new(config).is_err(),
            "the gateway compiled an invalid config"
        );
        return;
    }
    let json = serde_json::to_string(&config).expect("a config serializes");
    let back: GatewayConfig = serde_json::from_str(&json).expect("its JSON parses");
    assert_eq!(back, config, "a JSON round trip changes the config: {json}");
    assert_eq!(back.content_hash(), config.content_hash());
    let compiled = match CompiledConfig::new(config) {
        Ok(compiled) => compiled,
        Err(e) => panic!("validate() accepted a config the gateway refuses: {e}\n{json}"),
    };
    for b in &compiled.config.buckets {
        let r = compiled
            .bucket(&b.name)
            .unwrap_or_else(|e| panic!("bucket {} is not served: {e:?}", b.name));
        assert_eq!(r.nats, b.nats_name());
        assert_eq!(
            compiled.s3_name(&r.nats).as_deref(),
            Some(b.name.as_str()),
            "{json}"
        );
        if b.nats_bucket.is_none() {
            assert_eq!(
                jets3_crds::nats_to_s3_bucket(&r.nats).as_deref(),
                Some(b.name.as_str()),
                "the name mapping is not a bijection"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((format, rest)) = data.split_first() else {
        return;
    };
    if format % 2 == 1 {
        if let Ok(config) = serde_json::from_slice::<GatewayConfig>(rest) {
            check(config);
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(file) = ConfigFile::parse(text) {
        check(file.config);
    }
});
