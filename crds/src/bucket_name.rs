//! S3 bucket naming rules and the bijection to NATS bucket names.
//!
//! S3 names may contain `.` but never `_`; NATS names may contain `_` but never `.`,
//! so mapping `.` to `_` is a bijection between valid S3 names and their NATS names.

/// Checks `name` against the S3 general-purpose bucket naming rules.
pub fn validate_s3_bucket_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err("must be between 3 and 63 characters long".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lowercase letters, digits, '.' and '-'".into());
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[len - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must begin and end with a letter or digit".into());
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err("must not contain '..', '.-' or '-.'".into());
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err("must not be formatted as an IP address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("must not start with '{prefix}'"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"] {
        if name.ends_with(suffix) {
            return Err(format!("must not end with '{suffix}'"));
        }
    }
    Ok(())
}

/// Maps a valid S3 bucket name to its NATS object-store bucket name.
pub fn s3_to_nats_bucket(s3: &str) -> String {
    s3.replace('.', "_")
}

/// Maps a NATS bucket name back to the S3 name, if it is the image of a valid S3 name.
pub fn nats_to_s3_bucket(nats: &str) -> Option<String> {
    let s3 = nats.replace('_', ".");
    validate_s3_bucket_name(&s3).ok().map(|_| s3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for n in ["abc", "my.bucket-1", "a1b", "0-0", "logs.example.com"] {
            assert_eq!(validate_s3_bucket_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_invalid_names() {
        for n in [
            "ab",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(validate_s3_bucket_name(n).is_err(), "{n}");
        }
    }

    #[test]
    fn mapping_is_a_bijection() {
        for n in ["my.bucket-1", "a.b.c", "plain"] {
            let nats = s3_to_nats_bucket(n);
            assert!(!nats.contains('.'));
            assert_eq!(nats_to_s3_bucket(&nats).as_deref(), Some(n));
        }
        assert_eq!(nats_to_s3_bucket("UPPER"), None);
        assert_eq!(nats_to_s3_bucket("a__b"), None);
    }
}
