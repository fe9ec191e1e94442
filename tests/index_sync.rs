//! The index follows storage: changes made directly in the storage directory, restarts from
//! the state file, and concurrent uploads of the same version.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{Server, chart, tgz};
use http::StatusCode;

fn set_mtime(path: &std::path::Path, t: SystemTime) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

#[tokio::test]
async fn out_of_band_add_replace_remove() {
    let s = Server::new(&[]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    // Added by another process, under a name that is not <name>-<version>.tgz.
    std::fs::write(s.root.join("from-elsewhere.tgz"), chart("b", "2.0.0")).unwrap();
    // Not a chart: ignored, remembered, never breaks the index.
    std::fs::write(s.root.join("broken.tgz"), b"garbage").unwrap();
    std::fs::write(s.root.join("notes.txt"), b"not a package").unwrap();
    s.refresh().await;
    let mut got = s.index_versions("/index.yaml").await;
    got.sort();
    assert_eq!(got, ["a-1.0.0", "b-2.0.0"]);
    let idx = s.get("/index.yaml").await.yaml();
    assert_eq!(
        idx["entries"]["b"][0]["urls"][0],
        "charts/from-elsewhere.tgz"
    );

    // Replaced in place: new content, new mtime.
    let replacement = tgz(&[(
        "b/Chart.yaml",
        "name: b\nversion: 2.0.0\ndescription: replaced\n",
    )]);
    let p = s.root.join("from-elsewhere.tgz");
    std::fs::write(&p, &replacement).unwrap();
    set_mtime(&p, SystemTime::now() + Duration::from_secs(5));
    s.refresh().await;
    let idx = s.get("/index.yaml").await.yaml();
    assert_eq!(idx["entries"]["b"][0]["description"], "replaced");
    assert_eq!(
        idx["entries"]["b"][0]["digest"],
        chartroom::repository::sha256_hex(&replacement).as_str()
    );

    // Removed.
    std::fs::remove_file(s.root.join("a-1.0.0.tgz")).unwrap();
    s.refresh().await;
    assert_eq!(s.index_versions("/index.yaml").await, ["b-2.0.0"]);
    assert_eq!(
        s.get("/api/charts/a/1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unchanged_refresh_reads_nothing() {
    let s = Server::new(&[]).await;
    for v in ["1.0.0", "1.1.0"] {
        assert_eq!(
            s.post("/api/charts", chart("a", v)).await.status,
            StatusCode::CREATED
        );
    }
    let reg = s.app.registry.load_full();
    let repo = reg.repo("").await.unwrap();
    let stats = repo
        .refresh(reg.storage.as_ref(), &reg.settings)
        .await
        .unwrap();
    assert_eq!((stats.listed, stats.fetched, stats.removed), (2, 0, 0));
    std::fs::write(s.root.join("new-1.0.0.tgz"), chart("new", "1.0.0")).unwrap();
    let stats = repo
        .refresh(reg.storage.as_ref(), &reg.settings)
        .await
        .unwrap();
    assert_eq!((stats.listed, stats.fetched, stats.removed), (3, 1, 0));
    // Start-up progress (reported in sd_notify STATUS) counts the packages read.
    let p = &reg.settings.progress;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!((p.to_read.load(Relaxed), p.read.load(Relaxed)), (1, 1));
}

#[tokio::test]
async fn restart_uses_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let s = Server::on(root, &[]).await;
        for v in ["1.0.0", "1.1.0", "2.0.0-beta.1"] {
            assert_eq!(
                s.post("/api/charts", chart("a", v)).await.status,
                StatusCode::CREATED
            );
        }
        s.app.registry.load().save_states().await;
    }
    assert!(root.join("chartroom-state.json").exists());
    // Make every package unreadable: a restart that trusted only storage would lose them.
    // Same size and mtime, so the state file is believed.
    for v in ["1.0.0", "1.1.0"] {
        let p = root.join(format!("a-{v}.tgz"));
        let meta = std::fs::metadata(&p).unwrap();
        let len = meta.len() as usize;
        std::fs::write(&p, vec![0u8; len]).unwrap();
        set_mtime(&p, meta.modified().unwrap());
    }
    let s = Server::on(root, &[]).await;
    let mut got = s.index_versions("/index.yaml").await;
    got.sort();
    assert_eq!(got, ["a-1.0.0", "a-1.1.0", "a-2.0.0-beta.1"]);

    // A corrupt state file is ignored: the index is rebuilt from the packages.
    std::fs::write(root.join("chartroom-state.json"), b"{not json").unwrap();
    let s = Server::on(root, &[]).await;
    assert_eq!(s.index_versions("/index.yaml").await, ["a-2.0.0-beta.1"]);

    // With state files disabled none is read or written.
    let dir2 = tempfile::tempdir().unwrap();
    let s = Server::on(dir2.path(), &["--disable-statefiles"]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    s.app.registry.load().save_states().await;
    assert!(!dir2.path().join("chartroom-state.json").exists());
}

#[tokio::test]
async fn always_regenerate_sees_changes_at_once() {
    let s = Server::new(&["--always-regenerate-chart-index"]).await;
    std::fs::write(s.root.join("x-1.0.0.tgz"), chart("x", "1.0.0")).unwrap();
    assert_eq!(s.index_versions("/index.yaml").await, ["x-1.0.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_same_version_uploads() {
    for round in 0..5 {
        let s = Arc::new(Server::new(&[]).await);
        let a = tgz(&[(
            "c/Chart.yaml",
            "name: c\nversion: 1.0.0\ndescription: from A\n",
        )]);
        let b = tgz(&[(
            "c/Chart.yaml",
            "name: c\nversion: 1.0.0\ndescription: from B\n",
        )]);
        let (ra, rb) = tokio::join!(
            {
                let s = s.clone();
                let a = a.clone();
                async move { s.post("/api/charts", a).await.status }
            },
            {
                let s = s.clone();
                let b = b.clone();
                async move { s.post("/api/charts", b).await.status }
            }
        );
        let mut statuses = [ra.as_u16(), rb.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}");
        let stored = std::fs::read(s.root.join("c-1.0.0.tgz")).unwrap();
        let winner = if ra == StatusCode::CREATED { &a } else { &b };
        assert_eq!(
            &stored, winner,
            "round {round}: stored bytes are not the 201's"
        );
        let idx = s.get("/index.yaml").await.yaml();
        assert_eq!(idx["entries"]["c"].as_array().unwrap().len(), 1);
        assert_eq!(
            idx["entries"]["c"][0]["digest"],
            chartroom::repository::sha256_hex(winner).as_str()
        );
        // No temporary files are left behind (temporary files live in their own directory).
        let temp = chartroom::storage::local::TEMP_DIR;
        let leftovers: Vec<_> = std::fs::read_dir(&s.root)
            .unwrap()
            .chain(std::fs::read_dir(s.root.join(temp)).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.') && n != temp || n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_different_uploads_and_refresh() {
    let s = Arc::new(Server::new(&[]).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.post("/api/charts", chart("many", &format!("1.0.{i}")))
                .await
                .status
        }));
    }
    let refresher = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                s.refresh().await;
            }
        })
    };
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    refresher.await.unwrap();
    s.refresh().await;
    assert_eq!(s.index_versions("/index.yaml").await.len(), 40);
}
