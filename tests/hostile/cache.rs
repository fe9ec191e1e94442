//! The download cache (issue 14): what it serves always matches what storage holds, after a
//! replace, a delete, or (for changes made directly in storage) a refresh.

use crate::common::{Server, chart, tgz};
use http::StatusCode;

fn other_chart(name: &str, version: &str, filler: &str) -> Vec<u8> {
    let chart_yaml = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
    tgz(&[
        (&format!("{name}/Chart.yaml"), &chart_yaml),
        (&format!("{name}/values.yaml"), filler),
    ])
}

#[tokio::test]
async fn replace_and_delete_drop_the_cached_package() {
    let s = Server::new(&[]).await;
    let first = chart("a", "1.0.0");
    assert_eq!(
        s.post("/api/charts", first.clone()).await.status,
        StatusCode::CREATED
    );
    for _ in 0..2 {
        let r = s.get("/charts/a-1.0.0.tgz").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, first);
    }
    let second = other_chart("a", "1.0.0", "replaced: true\n");
    let r = s.post("/api/charts?force", second.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get("/charts/a-1.0.0.tgz").await;
    assert_eq!(r.body, second, "the replaced package is served");
    assert_eq!(
        r.header("content-length").unwrap(),
        second.len().to_string()
    );
    assert_eq!(s.delete("/api/charts/a/1.0.0").await.status, StatusCode::OK);
    assert_eq!(
        s.get("/charts/a-1.0.0.tgz").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn overwrite_without_force_drops_the_cached_package() {
    let s = Server::new(&["--allow-overwrite"]).await;
    assert_eq!(
        s.post("/api/charts", chart("b", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(s.get("/charts/b-1.0.0.tgz").await.status, StatusCode::OK);
    let second = other_chart("b", "1.0.0", "x: 2\n");
    assert_eq!(
        s.post("/api/charts", second.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(s.get("/charts/b-1.0.0.tgz").await.body, second);
}

#[tokio::test]
async fn changes_made_directly_in_storage_show_after_a_refresh() {
    let s = Server::new(&[]).await;
    let gone = chart("gone", "1.0.0");
    let kept = chart("kept", "1.0.0");
    assert_eq!(
        s.post("/api/charts", gone).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/charts", kept).await.status,
        StatusCode::CREATED
    );
    assert_eq!(s.get("/charts/gone-1.0.0.tgz").await.status, StatusCode::OK);
    assert_eq!(s.get("/charts/kept-1.0.0.tgz").await.status, StatusCode::OK);
    s.refresh().await;
    std::fs::remove_file(s.root.join("gone-1.0.0.tgz")).unwrap();
    let other = other_chart("kept", "1.0.0", "changed: by hand\n");
    std::fs::write(s.root.join("kept-1.0.0.tgz"), &other).unwrap();
    s.refresh().await;
    assert_eq!(
        s.get("/charts/gone-1.0.0.tgz").await.status,
        StatusCode::NOT_FOUND,
        "served from the cache after storage lost it"
    );
    assert_eq!(s.get("/charts/kept-1.0.0.tgz").await.body, other);
}

#[tokio::test]
async fn packages_over_the_object_limit_are_streamed_and_a_zero_size_turns_it_off() {
    for size in ["0", "800"] {
        let s = Server::new(&["--download-cache-bytes", size]).await;
        let p = chart("c", "1.0.0");
        assert_eq!(
            s.post("/api/charts", p.clone()).await.status,
            StatusCode::CREATED
        );
        assert_eq!(s.get("/charts/c-1.0.0.tgz").await.body, p);
        std::fs::remove_file(s.root.join("c-1.0.0.tgz")).unwrap();
        // Not cached (too large for an 800-byte cache, or no cache): storage answers at once.
        assert_eq!(
            s.get("/charts/c-1.0.0.tgz").await.status,
            StatusCode::NOT_FOUND
        );
    }
}
