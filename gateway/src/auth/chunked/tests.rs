use std::convert::Infallible;
use std::time::SystemTime;

use aws_sigv4::sign::v4;
use base64::Engine as _;
use futures::StreamExt;

use super::*;
use crate::auth::sigv4::{parse_amz_date, signing_key};
use crate::auth::tests::doc_streaming_body;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// The seed (request) signature of the AWS sigv4-streaming.html example.
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

fn signer() -> ChunkSigner {
    ChunkSigner::for_test(
        signing_key(SK, "20130524", "us-east-1", "s3"),
        SEED,
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
    )
}

fn signed(trailer: bool) -> Payload {
    Payload::SignedChunks {
        signer: signer(),
        trailer,
    }
}

/// The decoded bytes or the first error, and the trailers.
type Decoded = (Result<Vec<u8>, S3Error>, Vec<(String, String)>);

/// Runs the decoder over `pieces`.
fn run(pieces: Vec<Bytes>, payload: &Payload) -> Decoded {
    let input = futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
    let (body, slot) = decode_chunked(input, payload);
    let items: Vec<Result<Bytes, S3Error>> = futures::executor::block_on(body.collect());
    let mut data = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(bytes) => data.extend_from_slice(bytes),
            Err(e) => {
                assert_eq!(i + 1, items.len(), "items after an error");
                assert!(slot.get().is_empty(), "trailers set despite an error");
                return (Err(e.clone()), slot.get());
            }
        }
    }
    (Ok(data), slot.get())
}

fn whole(body: &[u8]) -> Vec<Bytes> {
    vec![Bytes::copy_from_slice(body)]
}

fn bytewise(body: &[u8]) -> Vec<Bytes> {
    body.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect()
}

/// Splits at pseudo-random points (sizes 0..=400, sometimes large).
fn random_splits(body: &[u8], seed: u64) -> Vec<Bytes> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (state >> 33) as usize;
        let size = if r.is_multiple_of(10) {
            r % 70_000
        } else {
            r % 401
        };
        let end = (at + size).min(body.len());
        out.push(Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    out
}

fn splits(body: &[u8]) -> Vec<Vec<Bytes>> {
    let mut all = vec![whole(body), bytewise(body)];
    all.extend((0..12).map(|seed| random_splits(body, seed)));
    all
}

fn code(result: &Result<Vec<u8>, S3Error>) -> S3Code {
    match result {
        Err(e) => e.code,
        Ok(data) => panic!("expected an error, decoded {} bytes", data.len()),
    }
}

/// An independent encoder: signs with aws-sigv4's `sign_chunk` / `sign_trailer`.
fn encode_signed(chunks: &[&[u8]], trailers: &[(&str, &str)], with_trailer_sig: bool) -> Vec<u8> {
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "test").into();
    let time = SystemTime::from(parse_amz_date("20130524T000000Z").unwrap());
    let params = v4::SigningParams::<()>::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(())
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut previous = SEED.to_owned();
    for chunk in chunks.iter().copied().chain([&b""[..]]) {
        let sig = v4::sign_chunk(&Bytes::copy_from_slice(chunk), &previous, &params)
            .unwrap()
            .signature()
            .to_owned();
        out.extend_from_slice(format!("{:X};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
        if !chunk.is_empty() {
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        previous = sig;
    }
    if !trailers.is_empty() {
        let mut map = http::HeaderMap::new();
        for (name, value) in trailers {
            out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        if with_trailer_sig {
            let sig = v4::sign_trailer(&map.try_into().unwrap(), &previous, &params)
                .unwrap()
                .signature()
                .to_owned();
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn encode_unsigned(chunks: &[&[u8]], trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn crc32_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(data).to_be_bytes())
}

#[test]
fn doc_example_matches_the_aws_sigv4_encoder() {
    let a = vec![b'a'; 66560];
    assert_eq!(
        encode_signed(&[&a[..65536], &a[65536..]], &[], false),
        doc_streaming_body()
    );
}

#[test]
fn doc_example_decodes_with_any_split() {
    let body = doc_streaming_body();
    for pieces in splits(&body) {
        let n = pieces.len();
        let (data, trailers) = run(pieces, &signed(false));
        assert_eq!(data.unwrap(), vec![b'a'; 66560], "{n} pieces");
        assert!(trailers.is_empty());
    }
}

#[test]
fn doc_example_fails_when_any_byte_changes() {
    let body = doc_streaming_body();
    let data_ranges = [(88, 88 + 65536), (65626 + 86, 65626 + 86 + 1024)];
    let in_data = |i: usize| data_ranges.iter().any(|&(s, e)| (s..e).contains(&i));
    let positions: Vec<usize> = (0..body.len())
        .filter(|&i| {
            !in_data(i)
                || data_ranges.iter().any(|&(s, e)| {
                    (s..e).contains(&i) && (i == s || i + 1 == e || (i - s) % 997 == 0)
                })
        })
        .collect();
    assert!(positions.len() > 250);
    for i in positions {
        let mut changed = body.clone();
        changed[i] ^= 0x01;
        let (result, _) = run(whole(&changed), &signed(false));
        assert!(result.is_err(), "byte {i} changed but accepted");
        if in_data(i) {
            assert_eq!(code(&result), S3Code::SignatureDoesNotMatch, "byte {i}");
        }
    }
    // A byte removed or added anywhere in the framing also fails.
    for i in [
        0,
        5,
        20,
        87,
        88 + 65536,
        88 + 65537,
        65626 + 3,
        body.len() - 3,
        body.len() - 1,
    ] {
        let mut shorter = body.clone();
        shorter.remove(i);
        assert!(
            run(whole(&shorter), &signed(false)).0.is_err(),
            "removed {i}"
        );
        let mut longer = body.clone();
        longer.insert(i, b'1');
        assert!(
            run(whole(&longer), &signed(false)).0.is_err(),
            "inserted at {i}"
        );
    }
    // The signature chain matters: a wrong seed fails on the first chunk.
    let other = Payload::SignedChunks {
        signer: ChunkSigner::for_test(
            signing_key(SK, "20130524", "us-east-1", "s3"),
            &"0".repeat(64),
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
        ),
        trailer: false,
    };
    assert_eq!(
        code(&run(whole(&body), &other).0),
        S3Code::SignatureDoesNotMatch
    );
}

#[test]
fn truncated_bodies_are_incomplete() {
    let small = encode_signed(
        &[b"hello ", b"world"],
        &[("x-amz-checksum-crc32", "AAAAAA==")],
        true,
    );
    for len in 0..small.len() {
        let (result, _) = run(whole(&small[..len]), &signed(true));
        assert_eq!(code(&result), S3Code::IncompleteBody, "prefix {len}");
    }
    assert_eq!(run(whole(&small), &signed(true)).0.unwrap(), b"hello world");

    let unsigned = encode_unsigned(
        &[b"hello ", b"world"],
        &[("x-amz-checksum-crc32", "AAAAAA==")],
    );
    for len in 0..unsigned.len() {
        let (result, _) = run(whole(&unsigned[..len]), &Payload::UnsignedChunksWithTrailer);
        assert_eq!(code(&result), S3Code::IncompleteBody, "prefix {len}");
    }

    let doc = doc_streaming_body();
    for len in [1, 87, 88, 1000, 65624, 65626, 66000, 66737, 66822, 66823] {
        let (result, _) = run(bytewise(&doc[..len]).into_iter().collect(), &signed(false));
        assert_eq!(code(&result), S3Code::IncompleteBody, "prefix {len}");
    }
}

#[test]
fn signed_trailer_is_verified_and_returned() {
    let data = b"The quick brown fox jumps over the lazy dog".repeat(100);
    let crc = crc32_b64(&data);
    let body = encode_signed(
        &[&data[..1000], &data[1000..]],
        &[("x-amz-checksum-crc32", &crc)],
        true,
    );
    for pieces in splits(&body) {
        let (decoded, trailers) = run(pieces, &signed(true));
        assert_eq!(decoded.unwrap(), data);
        assert_eq!(
            trailers,
            vec![("x-amz-checksum-crc32".to_owned(), crc.clone())]
        );
    }

    // Several trailers: signed over the sorted lines.
    let two = encode_signed(
        &[&data],
        &[
            ("x-amz-checksum-sha256", "c2hh"),
            ("x-amz-checksum-crc32", &crc),
        ],
        true,
    );
    let (decoded, trailers) = run(whole(&two), &signed(true));
    assert_eq!(decoded.unwrap(), data);
    assert_eq!(trailers.len(), 2);

    // No trailers at all is fine too.
    let none = encode_signed(&[&data], &[], true);
    assert_eq!(run(whole(&none), &signed(true)).0.unwrap(), data);

    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace(&format!("crc32:{crc}"), "crc32:AAAAAA==");
    assert_eq!(
        code(&run(whole(tampered.as_bytes()), &signed(true)).0),
        S3Code::SignatureDoesNotMatch
    );
    let unsigned_trailer = encode_signed(&[&data], &[("x-amz-checksum-crc32", &crc)], false);
    assert_eq!(
        code(&run(whole(&unsigned_trailer), &signed(true)).0),
        S3Code::SignatureDoesNotMatch
    );
    // Trailers are refused when the request did not announce them.
    assert_eq!(
        code(&run(whole(&body), &signed(false)).0),
        S3Code::InvalidRequest
    );
}

#[test]
fn unsigned_chunks_with_trailer() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let crc = crc32_b64(&data);
    let body = encode_unsigned(
        &[&data[..65536], &data[65536..65537], &data[65537..]],
        &[("x-amz-checksum-crc32", &crc)],
    );
    for pieces in splits(&body) {
        let (decoded, trailers) = run(pieces, &Payload::UnsignedChunksWithTrailer);
        assert_eq!(decoded.unwrap(), data);
        assert_eq!(
            trailers,
            vec![("x-amz-checksum-crc32".to_owned(), crc.clone())]
        );
    }
    let lower = String::from_utf8(encode_unsigned(&[&[b'x'; 171]], &[])).unwrap();
    assert!(lower.starts_with("AB\r\n"));
    let lower = lower.replacen("AB", "ab", 1);
    assert_eq!(
        run(whole(lower.as_bytes()), &Payload::UnsignedChunksWithTrailer)
            .0
            .unwrap(),
        vec![b'x'; 171]
    );
    let empty = encode_unsigned(&[], &[]);
    assert_eq!(empty, b"0\r\n\r\n");
    let (decoded, trailers) = run(whole(&empty), &Payload::UnsignedChunksWithTrailer);
    assert!(decoded.unwrap().is_empty());
    assert!(trailers.is_empty());
}

#[test]
fn malformed_bodies_are_refused() {
    let unsigned = Payload::UnsignedChunksWithTrailer;
    let cases: &[(&[u8], &Payload)] = &[
        (b"5\r\nhelloXX0\r\n\r\n", &unsigned),
        (b"5\r\nhello\n0\r\n\r\n", &unsigned),
        (b"5\nhello\r\n0\r\n\r\n", &unsigned),
        (b"zz\r\nhello\r\n0\r\n\r\n", &unsigned),
        (b"\r\nhello\r\n0\r\n\r\n", &unsigned),
        (b" 5\r\nhello\r\n0\r\n\r\n", &unsigned),
        (b"1000001\r\n", &unsigned),
        (b"FFFFFFFFFFFFFFFFFF\r\n", &unsigned),
        (b"0\r\n\r\nextra", &unsigned),
        (b"0\r\nno-colon\r\n\r\n", &unsigned),
        (b"0\r\n:v\r\n\r\n", &unsigned),
    ];
    for (body, payload) in cases {
        let (result, _) = run(whole(body), payload);
        assert_eq!(
            code(&result),
            S3Code::InvalidRequest,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let long_line = format!("5;{}\r\n", "x".repeat(5000));
    assert_eq!(
        code(&run(whole(long_line.as_bytes()), &unsigned).0),
        S3Code::InvalidRequest
    );
    // Signed mode needs a chunk signature on every chunk.
    let (result, _) = run(whole(b"5\r\nhello\r\n"), &signed(false));
    assert_eq!(code(&result), S3Code::InvalidRequest);
    let (result, _) = run(whole(b"5;chunk-signature=xyz\r\nhello\r\n"), &signed(false));
    assert_eq!(code(&result), S3Code::SignatureDoesNotMatch);
    // An oversized chunk is refused from its header, before any data.
    let huge = format!("1000001;chunk-signature={}\r\n", "0".repeat(64));
    assert_eq!(
        code(&run(whole(huge.as_bytes()), &signed(false)).0),
        S3Code::InvalidRequest
    );
}

#[test]
fn read_errors_are_incomplete_body() {
    let input = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"5\r\nhel")),
        Err("connection reset"),
    ]);
    let (body, slot) = decode_chunked(input, &Payload::UnsignedChunksWithTrailer);
    let items: Vec<_> = futures::executor::block_on(body.collect());
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().as_ref(), b"hel");
    assert_eq!(
        items[1].as_ref().err().unwrap().code,
        S3Code::IncompleteBody
    );
    assert!(slot.get().is_empty());
}

#[test]
fn other_payloads_pass_through() {
    for payload in [Payload::Unsigned, Payload::Sha256([0; 32])] {
        let (data, trailers) = run(
            vec![
                Bytes::from_static(b"5\r\nhe"),
                Bytes::new(),
                Bytes::from_static(b"llo"),
            ],
            &payload,
        );
        assert_eq!(data.unwrap(), b"5\r\nhello");
        assert!(trailers.is_empty());
    }
}

#[test]
fn data_is_released_chunk_by_chunk() {
    let a = vec![b'a'; 66560];
    let body = Bytes::from(encode_signed(&[&a[..65536], &a[65536..]], &[], false));
    let mut decoder = Decoder::new(&signed(false));
    let mut out = VecDeque::new();
    // All of chunk one but its last byte: nothing is released before verification.
    decoder.feed(body.slice(..88 + 65535), &mut out).unwrap();
    assert!(out.is_empty());
    decoder
        .feed(body.slice(88 + 65535..88 + 65536), &mut out)
        .unwrap();
    assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), 65536);
    out.clear();
    decoder.feed(body.slice(88 + 65536..), &mut out).unwrap();
    assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), 1024);
    assert!(decoder.finish().unwrap().is_empty());

    // Unsigned chunks are released as they arrive.
    let mut decoder = Decoder::new(&Payload::UnsignedChunksWithTrailer);
    let mut out = VecDeque::new();
    decoder
        .feed(Bytes::from_static(b"10000\r\nabc"), &mut out)
        .unwrap();
    assert_eq!(out.pop_front().unwrap().as_ref(), b"abc");
    assert_eq!(decoder.finish().unwrap_err().code, S3Code::IncompleteBody);
}

#[test]
fn public_types_are_send_sync_unpin() {
    fn body<T: Stream<Item = Result<Bytes, S3Error>> + Send + Unpin>(_: &T) {}
    fn shared<T: Clone + Send + Sync + 'static>() {}
    shared::<ChunkSigner>();
    shared::<TrailerSlot>();
    shared::<Payload>();
    let input = futures::stream::empty::<Result<Bytes, std::io::Error>>();
    let (decoded, _) = decode_chunked(input, &signed(true));
    body(&decoded);
}
