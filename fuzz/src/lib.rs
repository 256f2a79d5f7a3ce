//! Helpers shared by the fuzz targets: a known credential, input splitting, S3 encodings.

use jets3_gateway::auth::SecretLookup;
use jets3_gateway::error::{S3Code, S3Error};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The one access key the targets sign with.
pub const ACCESS_KEY: &str = "AKIAFUZZFUZZFUZZFUZZ";
/// Its secret.
pub const SECRET_KEY: &str = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz";
/// The region requests are signed for.
pub const REGION: &str = "us-east-1";

/// Looks up [`ACCESS_KEY`].
pub struct Keys;

impl SecretLookup for Keys {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (access_key_id == ACCESS_KEY).then(|| SECRET_KEY.to_owned())
    }
}

/// What the SDKs leave unencoded in an object key path.
pub const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// What the SDKs leave unencoded in a query name or value.
pub const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` encoded as a key path.
pub fn encode_key(s: &str) -> String {
    utf8_percent_encode(s, KEY_SET).to_string()
}

/// `s` encoded as a query component.
pub fn encode_query(s: &str) -> String {
    utf8_percent_encode(s, QUERY_SET).to_string()
}

/// The input as text split into `n` lines (missing lines are empty; the last holds the rest).
pub fn lines(data: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut out: Vec<String> = text.splitn(n, '\n').map(str::to_owned).collect();
    out.resize(n, String::new());
    out
}

/// Fails the run when a refusal of client input is a server error: bad input must get a
/// 4xx S3 error (or 501 for what the gateway does not implement), never a 500.
pub fn client_error(e: &S3Error, what: &str) {
    assert!(
        e.code == S3Code::NotImplemented || e.code.status().as_u16() < 500,
        "{what}: input refused with a server error {:?}: {}",
        e.code,
        e.message
    );
}
