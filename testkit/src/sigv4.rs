//! SigV4's building blocks for tests that sign by hand (POST policies, aws-chunked bodies,
//! benchmarks): the date formats and the signing key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

/// HMAC-SHA256 of `data` with `key`.
pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` (`X-Amz-Date`); its first eight characters are the scope's date.
pub fn amz_date(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The signing key of `secret` for the scope `day` (`YYYYMMDD`) / `region` / `service`.
pub fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's SigV4 documentation ("Deriving the signing key").
    #[test]
    fn signing_key_of_the_aws_example() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        let t = OffsetDateTime::from_unix_timestamp(1_329_264_000).unwrap();
        assert_eq!(amz_date(t), "20120215T000000Z");
    }
}
