//! The S3-compatible clouds under ChartMuseum's own keys (Alibaba OSS, Tencent COS, Baidu BOS,
//! Oracle Object Storage), mapped onto the S3 backend: for each, the endpoint its S3 API
//! answers on, the region requests are signed for, the addressing style, and the credential
//! variables ChartMuseum documents for it.
//!
//! An endpoint on the provider's own domain is rewritten to its S3-compatible form; any other
//! endpoint (a gateway, a test server) is used as given, path-style, with the region
//! `us-east-1` (as for `storage.amazon.endpoint`).

/// A provider's S3 mapping for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
}

/// Everything the mapping needs to know of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    /// `storage.backend` value and key prefix (`storage.alibaba.*`).
    pub name: &'static str,
    /// ChartMuseum's default endpoint (empty: none, built from other keys).
    pub default_endpoint: &'static str,
    /// The variables holding the access key ID and the secret, in that order.
    pub credentials: [&'static str; 2],
}

pub const ALIBABA: Provider = Provider {
    name: "alibaba",
    default_endpoint: "oss-cn-hangzhou.aliyuncs.com",
    credentials: [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    ],
};

pub const TENCENT: Provider = Provider {
    name: "tencent",
    default_endpoint: "cos.ap-guangzhou.myqcloud.com",
    credentials: [
        "TENCENT_CLOUD_COS_SECRET_ID",
        "TENCENT_CLOUD_COS_SECRET_KEY",
    ],
};

pub const BAIDU: Provider = Provider {
    name: "baidu",
    default_endpoint: "bj.bcebos.com",
    credentials: ["BAIDU_CLOUD_ACCESS_KEY_ID", "BAIDU_CLOUD_ACCESS_KEY_SECRET"],
};

/// Oracle's S3 compatibility API takes a Customer Secret Key, which S3 clients read from the
/// AWS variables.
pub const ORACLE: Provider = Provider {
    name: "oracle",
    default_endpoint: "",
    credentials: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
};

/// Splits `https://host:port/path` into (scheme with `://`, host, rest).
fn split(endpoint: &str) -> (&str, &str, &str) {
    let (scheme, rest) = match endpoint.find("://") {
        Some(i) => endpoint.split_at(i + 3),
        None => ("", endpoint),
    };
    let end = rest.find(['/', ':', '?', '#']).unwrap_or(rest.len());
    (scheme, &rest[..end], &rest[end..])
}

/// `https://` unless the endpoint names its scheme.
fn with_scheme(scheme: &str, host: &str, rest: &str) -> String {
    let scheme = if scheme.is_empty() {
        "https://"
    } else {
        scheme
    };
    format!("{scheme}{host}{rest}")
}

fn custom(endpoint: &str) -> S3Target {
    S3Target {
        endpoint: endpoint.to_string(),
        region: "us-east-1".into(),
        path_style: true,
    }
}

/// A region label: letters, digits and dashes.
fn label(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(s)
}

/// The S3 target of `endpoint` (empty: the provider's default) for Alibaba, Tencent or Baidu.
pub fn map_endpoint(p: Provider, endpoint: &str) -> S3Target {
    let endpoint = if endpoint.is_empty() {
        p.default_endpoint
    } else {
        endpoint
    };
    let (scheme, host, rest) = split(endpoint);
    let host_l = host.to_ascii_lowercase();
    let mapped = match p.name {
        // oss-<region>[-internal].aliyuncs.com, or its S3 form s3.oss-<region>….
        "alibaba" => host_l.strip_suffix(".aliyuncs.com").and_then(|h| {
            let h = h.strip_prefix("s3.").unwrap_or(h);
            let region = h.strip_prefix("oss-")?;
            let region = region.strip_suffix("-internal").unwrap_or(region);
            Some((format!("s3.{h}.aliyuncs.com"), label(region)?.to_string()))
        }),
        // cos.<region>.myqcloud.com answers the S3 API as it is.
        "tencent" => host_l.strip_suffix(".myqcloud.com").and_then(|h| {
            let region = h.strip_prefix("cos.")?;
            Some((host_l.clone(), label(region)?.to_string()))
        }),
        // <region>.bcebos.com; the S3 API is on s3.<region>.bcebos.com.
        "baidu" => host_l.strip_suffix(".bcebos.com").and_then(|h| {
            let region = h.strip_prefix("s3.").unwrap_or(h);
            Some((
                format!("s3.{region}.bcebos.com"),
                label(region)?.to_string(),
            ))
        }),
        _ => None,
    };
    match mapped {
        Some((host, region)) => S3Target {
            endpoint: with_scheme(scheme, &host, rest),
            region,
            path_style: false,
        },
        None => custom(endpoint),
    }
}

/// Oracle's S3 compatibility endpoint for a namespace and region, path-style; an explicit
/// `endpoint` wins.
pub fn oracle(namespace: &str, region: &str, endpoint: &str) -> Result<S3Target, String> {
    if !endpoint.is_empty() {
        let mut t = custom(endpoint);
        if !region.is_empty() {
            t.region = region.to_string();
        }
        return Ok(t);
    }
    let ns = label(namespace).ok_or("storage.oracle.namespace is needed (the tenancy's Object Storage namespace), or storage.oracle.endpoint")?;
    let region = label(region).ok_or("storage.oracle.region is needed (e.g. us-ashburn-1)")?;
    Ok(S3Target {
        endpoint: format!("https://{ns}.compat.objectstorage.{region}.oraclecloud.com"),
        region: region.to_string(),
        path_style: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(endpoint: &str, region: &str, path_style: bool) -> S3Target {
        S3Target {
            endpoint: endpoint.into(),
            region: region.into(),
            path_style,
        }
    }

    #[test]
    fn provider_endpoints() {
        assert_eq!(
            map_endpoint(ALIBABA, ""),
            t(
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                "cn-hangzhou",
                false
            )
        );
        assert_eq!(
            map_endpoint(ALIBABA, "http://oss-eu-central-1-internal.aliyuncs.com"),
            t(
                "http://s3.oss-eu-central-1-internal.aliyuncs.com",
                "eu-central-1",
                false
            )
        );
        assert_eq!(
            map_endpoint(ALIBABA, "s3.oss-cn-beijing.aliyuncs.com"),
            t(
                "https://s3.oss-cn-beijing.aliyuncs.com",
                "cn-beijing",
                false
            )
        );
        assert_eq!(
            map_endpoint(TENCENT, ""),
            t(
                "https://cos.ap-guangzhou.myqcloud.com",
                "ap-guangzhou",
                false
            )
        );
        assert_eq!(
            map_endpoint(BAIDU, ""),
            t("https://s3.bj.bcebos.com", "bj", false)
        );
        assert_eq!(
            map_endpoint(BAIDU, "https://s3.gz.bcebos.com"),
            t("https://s3.gz.bcebos.com", "gz", false)
        );
        // Anything else is a custom endpoint, path-style.
        for p in [ALIBABA, TENCENT, BAIDU] {
            assert_eq!(
                map_endpoint(p, "http://127.0.0.1:8333"),
                t("http://127.0.0.1:8333", "us-east-1", true)
            );
        }
    }

    #[test]
    fn oracle_endpoints() {
        assert_eq!(
            oracle("axaxnpcrorw5", "us-ashburn-1", "").unwrap(),
            t(
                "https://axaxnpcrorw5.compat.objectstorage.us-ashburn-1.oraclecloud.com",
                "us-ashburn-1",
                true
            )
        );
        assert!(oracle("", "us-ashburn-1", "").is_err());
        assert!(oracle("ns", "", "").is_err());
        assert!(oracle("n/s", "r", "").is_err());
        assert_eq!(
            oracle("", "", "http://127.0.0.1:1").unwrap(),
            t("http://127.0.0.1:1", "us-east-1", true)
        );
    }

    fn load(argv: &[&str], env: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let args = crate::config::parse_args(&argv).map_err(|e| e.to_string())?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        crate::config::load(&args, &lookup, None).map_err(|e| e.to_string())
    }

    /// Backend, extra flags, credential variables, and the endpoint, region and path style
    /// expected.
    type Case<'a> = (&'a str, &'a [&'a str], [&'a str; 2], &'a str, &'a str, bool);

    #[test]
    fn providers_configure_the_s3_backend() {
        use crate::config::StorageConfig;
        let cases: [Case; 4] = [
            (
                "alibaba",
                &["--storage-alibaba-sse=KMS"],
                ALIBABA.credentials,
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                "cn-hangzhou",
                false,
            ),
            (
                "tencent",
                &["--storage-tencent-endpoint=cos.ap-shanghai.myqcloud.com"],
                TENCENT.credentials,
                "https://cos.ap-shanghai.myqcloud.com",
                "ap-shanghai",
                false,
            ),
            (
                "baidu",
                &[],
                BAIDU.credentials,
                "https://s3.bj.bcebos.com",
                "bj",
                false,
            ),
            (
                "oracle",
                &[
                    "--storage-oracle-namespace=ns1",
                    "--storage-oracle-region=eu-frankfurt-1",
                    "--storage-oracle-compartmentid=ocid1.compartment.oc1..x",
                ],
                ORACLE.credentials,
                "https://ns1.compat.objectstorage.eu-frankfurt-1.oraclecloud.com",
                "eu-frankfurt-1",
                true,
            ),
        ];
        for (name, extra, [id, secret], endpoint_want, region_want, path_want) in cases {
            let backend = format!("--storage={name}");
            let bucket = format!("--storage-{name}-bucket=charts");
            let mut argv = vec![backend.as_str(), bucket.as_str()];
            argv.extend_from_slice(extra);
            let e = load(&argv, &[]).unwrap_err();
            assert!(e.contains(id) && e.contains(secret), "{name}: {e}");
            let cfg = load(&argv, &[(id, "AK"), (secret, "SK")]).unwrap();
            let StorageConfig::Amazon {
                provider,
                endpoint,
                region,
                force_path_style,
                sse,
                env,
                ..
            } = &cfg.storage
            else {
                panic!("{name}: {:?}", cfg.storage);
            };
            assert_eq!(provider, name);
            assert_eq!(endpoint, endpoint_want, "{name}");
            assert_eq!(region, region_want, "{name}");
            assert_eq!(*force_path_style, path_want, "{name}");
            assert_eq!(env.get("AWS_ACCESS_KEY_ID").as_deref(), Some("AK"));
            assert_eq!(env.get("AWS_SECRET_ACCESS_KEY").as_deref(), Some("SK"));
            if name == "alibaba" {
                assert_eq!(sse, "aws:kms");
            }
            // No bucket: named as ChartMuseum names it.
            let e = load(&[backend.as_str()], &[(id, "AK"), (secret, "SK")]).unwrap_err();
            assert!(e.contains(&format!("--storage-{name}-bucket")), "{e}");
        }
        let e = load(
            &["--storage=oracle", "--storage-oracle-bucket=b"],
            &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
        )
        .unwrap_err();
        assert!(e.contains("storage.oracle.namespace"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Any endpoint maps to something (no panic), and a custom one stays as given.
        #[test]
        fn any_endpoint_maps(e in "\\PC{0,60}") {
            for p in [ALIBABA, TENCENT, BAIDU] {
                let m = map_endpoint(p, &e);
                prop_assert!(!m.endpoint.is_empty());
                if m.path_style {
                    prop_assert_eq!(&m.endpoint, if e.is_empty() { p.default_endpoint } else { &e });
                }
            }
            let _ = oracle(&e, &e, "");
        }
    }
}
