//! The contract every storage backend keeps, written once and run for each backend: local
//! storage (one test per case), OpenStack Swift (a real one-node Swift from
//! `tests/swift/swift-harness.sh`), S3 (a real SeaweedFS from `tests/s3/harness.rs`) and Azure
//! Blob (Azurite, `tests/azure/harness.rs`), Google Cloud Storage (fake-gcs-server,
//! `tests/gcs/harness.rs`) and etcd (`tests/etcd/harness.rs`); on Swift, S3 and Azure all cases run in one test, against one server, each case under its own object
//! prefix. Listing pages are 5 names long there, so paging is exercised.

#[path = "azure/harness.rs"]
mod azure_harness;
#[path = "etcd/harness.rs"]
mod etcd_harness;
#[path = "gcs/harness.rs"]
mod gcs_harness;
#[path = "s3/harness.rs"]
mod s3_harness;
#[path = "swift/harness.rs"]
mod swift_harness;

use std::collections::BTreeSet;
use std::sync::Arc;

use azure_harness::AzureHarness;
use bytes::Bytes;
use chartroom::storage::{LocalStorage, ObjectMeta, Storage, StorageError};
use etcd_harness::EtcdHarness;
use futures_util::StreamExt;
use gcs_harness::GcsHarness;
use s3_harness::S3Harness;
use swift_harness::SwiftHarness;

type Factory = Box<dyn Fn(&str) -> Arc<dyn Storage> + Send + Sync>;

struct Backend {
    name: &'static str,
    /// `put_if_absent` races have exactly one winner (local). On Swift, overlapping PUTs can
    /// both pass `If-None-Match: *`; then every caller told "created" wrote bytes that were
    /// at some point the object, and what stays is one of them.
    strict_create: bool,
    make: Factory,
    _keep: Option<tempfile::TempDir>,
}

impl Backend {
    /// A fresh, empty storage for one case.
    fn fresh(&self, case: &str) -> Arc<dyn Storage> {
        let unique = format!("{case}-{:08x}", rand::random::<u32>());
        (self.make)(&unique)
    }
}

fn local_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    Backend {
        name: "local",
        strict_create: true,
        make: Box::new(move |unique| Arc::new(LocalStorage::new(root.join(unique)).unwrap())),
        _keep: Some(dir),
    }
}

fn swift_backend(h: &SwiftHarness) -> Backend {
    let base = h.settings("");
    Backend {
        name: "swift",
        strict_create: false,
        make: Box::new(move |unique| {
            let mut s = base.clone();
            s.prefix = format!("contract/{unique}");
            s.page_size = 5;
            Arc::new(chartroom::storage::swift::SwiftStorage::new(s).unwrap())
        }),
        _keep: None,
    }
}

fn s3_backend(h: &S3Harness) -> Backend {
    let base = h.settings("");
    Backend {
        name: "s3",
        // Conditional PUTs that overlap may both pass on SeaweedFS, as on Swift.
        strict_create: false,
        make: Box::new(move |unique| {
            let mut s = base.clone();
            s.prefix = format!("contract/{unique}");
            s.page_size = 5;
            Arc::new(chartroom::storage::s3::S3Storage::new(s).unwrap())
        }),
        _keep: None,
    }
}

fn azure_backend(h: &AzureHarness) -> Backend {
    let base = h.settings("");
    Backend {
        name: "azure",
        // Put Blob with `If-None-Match: *` is atomic on Azure and on Azurite.
        strict_create: true,
        make: Box::new(move |unique| {
            let mut s = base.clone();
            s.prefix = format!("contract/{unique}");
            s.page_size = 5;
            Arc::new(chartroom::storage::azure::AzureStorage::new(s).unwrap())
        }),
        _keep: None,
    }
}

fn etcd_backend(h: &EtcdHarness) -> Backend {
    let base = h.settings("");
    Backend {
        name: "etcd",
        // A txn comparing the metadata key's create_revision with 0 is atomic.
        strict_create: true,
        make: Box::new(move |unique| {
            let mut s = base.clone();
            s.prefix = format!("contract/{unique}");
            s.page_size = 5;
            Arc::new(chartroom::storage::etcd::EtcdStorage::new(s).unwrap())
        }),
        _keep: None,
    }
}

fn gcs_backend(h: &GcsHarness) -> Backend {
    let base = h.settings("");
    Backend {
        name: "gcs",
        // A multipart upload with `ifGenerationMatch=0` is atomic on GCS and on fake-gcs-server.
        strict_create: true,
        make: Box::new(move |unique| {
            let mut s = base.clone();
            s.prefix = format!("contract/{unique}");
            s.page_size = 5;
            Arc::new(chartroom::storage::google::GoogleStorage::new(s).unwrap())
        }),
        _keep: None,
    }
}

fn names(list: &[ObjectMeta]) -> Vec<&str> {
    list.iter().map(|o| o.name.as_str()).collect()
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

async fn collect(s: &dyn Storage, path: &str) -> (u64, Vec<u8>) {
    let mut o = s.get_stream(path).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = o.stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    (o.size, out)
}

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

async fn empty_storage_lists_nothing(be: &Backend) {
    let s = be.fresh("empty");
    s.check().await.unwrap();
    assert!(s.list("").await.unwrap().is_empty());
    assert!(s.list("no/such/dir").await.unwrap().is_empty());
    assert!(matches!(
        s.get("a.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        s.stat("a.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        s.get_stream("a.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        s.delete("a.tgz").await,
        Err(StorageError::NotFound(_))
    ));
}

async fn put_then_list_agree_exactly(be: &Backend) {
    let s = be.fresh("agree");
    let meta = s.put("a-1.0.0.tgz", b("hello")).await.unwrap();
    assert_eq!(meta.name, "a-1.0.0.tgz");
    assert_eq!(meta.size, 5);
    assert!(meta.modified_ns > 1_600_000_000_000_000_000, "{meta:?}");
    let listed = s.list("").await.unwrap();
    assert_eq!(
        listed,
        vec![meta.clone()],
        "{}: put and list disagree",
        be.name
    );
    assert_eq!(s.stat("a-1.0.0.tgz").await.unwrap(), meta);
    assert_eq!(s.get("a-1.0.0.tgz").await.unwrap(), b("hello"));
    // Listing again without changes gives the very same (size, modified_ns).
    assert_eq!(s.list("").await.unwrap(), listed);
    let created = s.put_if_absent("b-1.0.0.tgz", b("x")).await.unwrap();
    let listed = s.list("").await.unwrap();
    assert_eq!(listed[1], created);
}

async fn put_replaces_whole(be: &Backend) {
    let s = be.fresh("replace");
    let first = s.put("state.json", b("{\"v\":1}")).await.unwrap();
    let second = s
        .put("state.json", b("{\"v\":2,\"more\":true}"))
        .await
        .unwrap();
    assert_eq!(
        s.get("state.json").await.unwrap(),
        b("{\"v\":2,\"more\":true}")
    );
    assert_eq!(second.size, 19);
    assert!(second.modified_ns >= first.modified_ns);
    assert_eq!(s.list("").await.unwrap(), vec![second]);
}

async fn put_if_absent_refuses_existing(be: &Backend) {
    let s = be.fresh("absent");
    s.put_if_absent("c.tgz", b("one")).await.unwrap();
    let e = s.put_if_absent("c.tgz", b("two")).await.unwrap_err();
    assert!(matches!(e, StorageError::AlreadyExists(_)), "{e}");
    assert_eq!(s.get("c.tgz").await.unwrap(), b("one"));
    // A plain put still replaces.
    s.put("c.tgz", b("three")).await.unwrap();
    assert_eq!(s.get("c.tgz").await.unwrap(), b("three"));
}

async fn concurrent_creates_keep_one_whole(be: &Backend) {
    let s = be.fresh("race");
    for round in 0..3 {
        let path = format!("race-{round}.tgz");
        let bodies: Vec<Bytes> = (0..6)
            .map(|i| Bytes::from(format!("writer {i} ").repeat(2000 + i * 10)))
            .collect();
        let tasks: Vec<_> = bodies
            .iter()
            .cloned()
            .map(|data| {
                let s = s.clone();
                let path = path.clone();
                tokio::spawn(async move { s.put_if_absent(&path, data).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(meta) => winners.push((i, meta)),
                Err(StorageError::AlreadyExists(_)) => {}
                Err(e) => panic!("{}: unexpected error {e}", be.name),
            }
        }
        assert!(!winners.is_empty(), "{}: nobody created {path}", be.name);
        if be.strict_create {
            assert_eq!(winners.len(), 1, "{}: {} winners", be.name, winners.len());
        }
        let stored = s.get(&path).await.unwrap();
        let kept: Vec<usize> = winners
            .iter()
            .filter(|(i, _)| bodies[*i] == stored)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(kept.len(), 1, "{}: stored bytes are no winner's", be.name);
        // The winner whose bytes stayed reported the object exactly as the listing shows it.
        let listed = s.list("").await.unwrap();
        let entry = listed.iter().find(|o| o.name == path).unwrap();
        let (_, meta) = winners.iter().find(|(i, _)| *i == kept[0]).unwrap();
        assert_eq!(entry, meta, "{}", be.name);
        if winners.len() > 1 {
            eprintln!(
                "{}: {} writers of {path} were told they created it",
                be.name,
                winners.len()
            );
        }
    }
}

async fn delete_removes(be: &Backend) {
    let s = be.fresh("delete");
    s.put("d.tgz", b("d")).await.unwrap();
    s.put("e.tgz", b("e")).await.unwrap();
    s.delete("d.tgz").await.unwrap();
    assert!(matches!(
        s.get("d.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(names(&s.list("").await.unwrap()), ["e.tgz"]);
    assert!(matches!(
        s.delete("d.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    // Gone objects can be created again.
    s.put_if_absent("d.tgz", b("d2")).await.unwrap();
    assert_eq!(s.get("d.tgz").await.unwrap(), b("d2"));
}

async fn listing_is_one_level(be: &Backend) {
    let s = be.fresh("levels");
    for p in [
        "top.tgz",
        "org/mid.tgz",
        "org/team/deep.tgz",
        "org/team/deeper/x.tgz",
        "orgx/other.tgz",
        "org-sibling.tgz",
    ] {
        s.put(p, b(p)).await.unwrap();
    }
    assert_eq!(
        names(&s.list("").await.unwrap()),
        ["org-sibling.tgz", "top.tgz"]
    );
    assert_eq!(names(&s.list("org").await.unwrap()), ["mid.tgz"]);
    assert_eq!(names(&s.list("org/team").await.unwrap()), ["deep.tgz"]);
    assert!(s.list("org/te").await.unwrap().is_empty());
    assert_eq!(
        s.get("org/team/deep.tgz").await.unwrap(),
        b("org/team/deep.tgz")
    );
}

async fn many_objects_page_through(be: &Backend) {
    let s = be.fresh("paging");
    let mut expect = BTreeSet::new();
    let mut tasks = Vec::new();
    for i in 0..23 {
        let name = format!("chart-{i:03}.tgz");
        expect.insert(name.clone());
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.put(&name, b("x")).await.unwrap() },
        ));
    }
    // Deeper names interleave with the page boundaries.
    for d in ["chart-005", "chart-010x", "zz"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put(&format!("{d}/inner.tgz"), b("y")).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let listed = s.list("").await.unwrap();
    let got: BTreeSet<String> = listed.iter().map(|o| o.name.clone()).collect();
    assert_eq!(got, expect);
    assert_eq!(listed.len(), 23, "no duplicates");
}

async fn unusual_names_round_trip(be: &Backend) {
    let s = be.fresh("names");
    let odd = [
        "chart-1.0.0+build.1.tgz",
        "with space-1.0.0.tgz",
        "ünïcødé-1.0.0.tgz",
        "per%cent&amp=1.tgz",
        "q?mark#hash.tgz",
    ];
    for n in odd {
        let m = s.put(n, b(n)).await.unwrap();
        assert_eq!(m.name, n);
    }
    let listed = s.list("").await.unwrap();
    let mut want: Vec<&str> = odd.to_vec();
    want.sort();
    assert_eq!(names(&listed), want);
    for n in odd {
        assert_eq!(s.get(n).await.unwrap(), b(n), "{}: {n}", be.name);
        assert_eq!(s.stat(n).await.unwrap().size, n.len() as u64);
    }
    // A `+` must not turn into a space in a listing prefix.
    s.put("a+b/x.tgz", b("plus")).await.unwrap();
    s.put("a b/y.tgz", b("space")).await.unwrap();
    assert_eq!(names(&s.list("a+b").await.unwrap()), ["x.tgz"]);
    assert_eq!(names(&s.list("a b").await.unwrap()), ["y.tgz"]);
}

/// Every file name an upload can store comes back from a listing exactly as it went in (a name
/// a listing drops or changes would be a chart accepted, then lost at the next refresh):
/// hidden (dot) names, the longest names a file system keeps (255 bytes), and characters
/// that XML, JSON or URL handling could alter (noncharacters, separators, a BOM, astral
/// characters, decomposed accents, markup and YAML punctuation, spaces at either end).
async fn listing_shows_every_name_an_upload_accepts(be: &Backend) {
    let s = be.fresh("accepted");
    let longest = format!("{}-1.0.0.tgz", "l".repeat(245));
    assert_eq!(longest.len(), 255);
    let odd = [
        ".hid-1.0.0.tgz",
        "..two-1.0.0.tgz",
        longest.as_str(),
        "nonchar\u{fffe}\u{ffff}-1.0.0.tgz",
        "sep\u{2028}\u{2029}x-1.0.0.tgz",
        "bom\u{feff}-1.0.0.tgz",
        "astral\u{1f600}\u{1d11e}-1.0.0.tgz",
        "u\u{308}mlaut-1.0.0.tgz",
        "quote\"'<>&amp;-1.0.0.tgz",
        "yaml: #~ yes-1.0.0.tgz",
        "glob*?[]{}-1.0.0.tgz",
        " lead-1.0.0.tgz",
        "trail -1.0.0.tgz",
        "p-1.0.0.tgz.prov",
    ];
    // Azure lists names XML cannot carry (U+FFFE, U+FFFF) only in its own encoding: the
    // backend refuses them at upload instead, so that no upload is accepted and then lost.
    let refused = |n: &str| be.name == "azure" && n.contains(['\u{fffe}', '\u{ffff}']);
    for n in odd {
        if refused(n) {
            let e = s.put_if_absent(n, b(n)).await.unwrap_err();
            assert!(matches!(e, StorageError::InvalidPath(_)), "{n:?}: {e}");
            continue;
        }
        let m = s
            .put_if_absent(n, b(n))
            .await
            .unwrap_or_else(|e| panic!("{}: put {n:?}: {e}", be.name));
        assert_eq!(m.name, n);
    }
    let listed = s.list("").await.unwrap();
    let mut want: Vec<&str> = odd.iter().copied().filter(|n| !refused(n)).collect();
    want.sort();
    assert_eq!(names(&listed), want, "{}", be.name);
    for n in want {
        assert_eq!(s.get(n).await.unwrap(), b(n), "{}: {n:?}", be.name);
        assert_eq!(s.stat(n).await.unwrap().name, n);
    }
}

async fn bad_paths_are_refused(be: &Backend) {
    let s = be.fresh("badpaths");
    for bad in [
        "",
        "../a.tgz",
        "a/../../b",
        "/abs.tgz",
        "a//b.tgz",
        "./a",
        "a\\b",
        "a/",
    ] {
        assert!(
            matches!(s.put(bad, b("x")).await, Err(StorageError::InvalidPath(_))),
            "{}: put {bad:?}",
            be.name
        );
        assert!(
            matches!(s.get(bad).await, Err(StorageError::InvalidPath(_))),
            "get {bad:?}"
        );
        assert!(
            matches!(s.delete(bad).await, Err(StorageError::InvalidPath(_))),
            "delete {bad:?}"
        );
        assert!(
            matches!(s.stat(bad).await, Err(StorageError::InvalidPath(_))),
            "stat {bad:?}"
        );
    }
    assert!(matches!(
        s.list("../up").await,
        Err(StorageError::InvalidPath(_))
    ));
    assert!(s.list("").await.unwrap().is_empty());
}

async fn empty_and_large_objects(be: &Backend) {
    let s = be.fresh("sizes");
    let m = s.put("empty.tgz", Bytes::new()).await.unwrap();
    assert_eq!(m.size, 0);
    assert_eq!(s.get("empty.tgz").await.unwrap().len(), 0);
    assert_eq!(collect(s.as_ref(), "empty.tgz").await, (0, vec![]));
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let m = s
        .put_if_absent("big.tgz", Bytes::from(big.clone()))
        .await
        .unwrap();
    assert_eq!(m.size, big.len() as u64);
    assert_eq!(s.get("big.tgz").await.unwrap(), big);
    let (size, streamed) = collect(s.as_ref(), "big.tgz").await;
    assert_eq!(size, big.len() as u64);
    assert!(streamed == big, "{}: streamed bytes differ", be.name);
    assert_eq!(
        s.list("")
            .await
            .unwrap()
            .iter()
            .find(|o| o.name == "big.tgz")
            .unwrap(),
        &m
    );
}

async fn describe_names_the_backend(be: &Backend) {
    let s = be.fresh("describe");
    let d = s.describe();
    let want = match be.name {
        "swift" => "openstack:",
        "s3" => "amazon:",
        "azure" => "microsoft:",
        "gcs" => "google:",
        "etcd" => "etcd:",
        _ => "local:",
    };
    assert!(d.starts_with(want), "{d}");
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let be = super::local_backend();
                    super::$case(&be).await;
                }
            )*
        }

        /// Every case against a real Swift (one Swift for all; each case in its own prefix).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn swift_backend_keeps_the_contract() {
            if !swift_harness::available() {
                return;
            }
            let h = SwiftHarness::start(86_400);
            eprintln!("swift started in {:.1} s", h.start_time.as_secs_f64());
            let be = swift_backend(&h);
            $(
                let t = std::time::Instant::now();
                $case(&be).await;
                eprintln!("swift: {} ok ({:.2} s)", stringify!($case), t.elapsed().as_secs_f64());
            )*
        }

        /// Every case against a real S3 server (SeaweedFS; each case in its own prefix).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn s3_backend_keeps_the_contract() {
            if !s3_harness::available() {
                return;
            }
            let h = S3Harness::start().await;
            eprintln!("seaweedfs started in {:.1} s", h.start_time.as_secs_f64());
            let be = s3_backend(&h);
            $(
                let t = std::time::Instant::now();
                $case(&be).await;
                eprintln!("s3: {} ok ({:.2} s)", stringify!($case), t.elapsed().as_secs_f64());
            )*
        }

        /// Every case against Azurite (each case in its own prefix).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn azure_backend_keeps_the_contract() {
            if !azure_harness::available() {
                return;
            }
            let h = AzureHarness::start().await;
            eprintln!("azurite started in {:.1} s", h.start_time.as_secs_f64());
            let be = azure_backend(&h);
            $(
                let t = std::time::Instant::now();
                $case(&be).await;
                eprintln!("azure: {} ok ({:.2} s)", stringify!($case), t.elapsed().as_secs_f64());
            )*
        }

        /// Every case against a real etcd (each case in its own prefix).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn etcd_backend_keeps_the_contract() {
            if !etcd_harness::available() {
                return;
            }
            let h = EtcdHarness::start().await;
            eprintln!("etcd started in {:.1} s", h.start_time.as_secs_f64());
            let be = etcd_backend(&h);
            $(
                let t = std::time::Instant::now();
                $case(&be).await;
                eprintln!("etcd: {} ok ({:.2} s)", stringify!($case), t.elapsed().as_secs_f64());
            )*
        }

        /// Every case against fake-gcs-server (each case in its own prefix).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn gcs_backend_keeps_the_contract() {
            if !gcs_harness::available() {
                return;
            }
            let h = GcsHarness::start().await;
            eprintln!("fake-gcs-server started in {:.2} s", h.start_time.as_secs_f64());
            let be = gcs_backend(&h);
            $(
                let t = std::time::Instant::now();
                $case(&be).await;
                eprintln!("gcs: {} ok ({:.2} s)", stringify!($case), t.elapsed().as_secs_f64());
            )*
        }
    };
}

contract!(
    empty_storage_lists_nothing,
    put_then_list_agree_exactly,
    put_replaces_whole,
    put_if_absent_refuses_existing,
    concurrent_creates_keep_one_whole,
    delete_removes,
    listing_is_one_level,
    many_objects_page_through,
    unusual_names_round_trip,
    listing_shows_every_name_an_upload_accepts,
    bad_paths_are_refused,
    empty_and_large_objects,
    describe_names_the_backend,
);
