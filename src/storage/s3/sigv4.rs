//! AWS Signature Version 4 for S3 requests (the `Authorization` header form), with HMAC-SHA256
//! built on the `sha2` crate.
//!
//! The caller gives the request as it will be sent: the path already percent-encoded (S3 signs
//! it encoded once, as sent), the query as encoded pairs, and every header it wants signed
//! (`host`, `x-amz-date` and `x-amz-content-sha256` among them).

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SHA-256 of an empty payload, as S3 wants it for requests without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A request to sign.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoded (`/bucket/a%20b.tgz`).
    pub path: &'a str,
    /// Query parameters, percent-encoded (RFC 3986), in any order.
    pub query: &'a [(String, String)],
    /// Headers to sign: names in any case, values as sent.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body (the value of `x-amz-content-sha256`).
    pub payload_hash: &'a str,
}

/// The canonical query string: pairs sorted by name, then value.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<&(String, String)> = query.iter().collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Canonical headers and the list of signed header names.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    h.sort();
    let canonical = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = h
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

/// The `Authorization` header value for `req`, signed at `amz_date` (`20130524T000000Z`, the
/// same value as the request's `x-amz-date`).
pub fn authorization(
    access_key: &str,
    secret_key: &str,
    region: &str,
    amz_date: &str,
    req: &Request<'_>,
) -> String {
    let (headers, signed) = canonical_headers(req.headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{headers}\n{signed}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        req.payload_hash
    );
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
}

/// `x-amz-date` for a time in nanoseconds since the epoch (`20130524T000000Z`).
pub fn amz_date(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000) * 1_000_000_000;
    crate::timefmt::rfc3339(secs, false).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hmac_rfc4231() {
        // RFC 4231 test cases 2 (short key) and 6 (key longer than a block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// An empty-bodied GET of the documentation's bucket, signed at its date.
    fn example_get(path: &str, query: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
        let date = "20130524T000000Z";
        let mut headers = vec![
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", date),
        ];
        headers.extend_from_slice(extra);
        let req = Request {
            method: "GET",
            path,
            query: &pairs(query),
            headers: &pairs(&headers),
            payload_hash: EMPTY_SHA256,
        };
        authorization(AK, SK, "us-east-1", date, &req)
    }

    /// The examples of AWS's "Signature Calculations for the Authorization Header" page.
    #[test]
    fn aws_documented_examples() {
        assert_eq!(
            example_get("/test.txt", &[], &[("Range", "bytes=0-9")]),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let list = example_get("/", &[("prefix", "J"), ("max-keys", "2")], &[]);
        assert!(
            list.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{list}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(1_369_353_600_999_999_999), "20130524T000000Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }
}
