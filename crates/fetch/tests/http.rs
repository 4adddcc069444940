//! The download path end to end against an HTTP server on 127.0.0.1 that
//! drops, stalls, refuses ranges or answers 404 ([`hsuga_fetch::testing`]).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hsuga_fetch::http::{HttpOptions, download, part_path};
use hsuga_fetch::testing::Server;
use hsuga_fetch::{FetchError, sha256_file};

/// 100 kB of bytes that are not all alike.
fn fixture() -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A server holding `data.txt`, and where to download it.
struct Case {
    server: Server,
    _dir: tempfile::TempDir,
    dest: PathBuf,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    Case {
        server: Server::start(HashMap::from([("data.txt".to_string(), fixture())])),
        dest: dir.path().join("data.txt"),
        _dir: dir,
    }
}

/// Downloads `path` into `dest`, which must then hold the whole fixture.
fn fetch_whole(server: &Server, path: &str, dest: &Path) {
    download(&server.url(path), dest, Some(&fixture_sha()), &opts()).unwrap();
    assert_complete(dest);
}

fn opts() -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        retries: 2,
        backoff: Duration::from_millis(10),
        progress: false,
    }
}

fn fixture_sha() -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, fixture()).unwrap();
    sha256_file(&p).unwrap()
}

fn assert_complete(dest: &Path) {
    assert_eq!(std::fs::read(dest).unwrap(), fixture());
    assert!(
        !part_path(dest).exists(),
        "no .part left beside a finished file"
    );
}

#[test]
fn a_file_lands_checked_and_whole() {
    let Case { server, dest, .. } = &case();
    // A folder that does not exist yet is created.
    let dest = dest.with_file_name("sub").join("data.txt");
    let sha = fixture_sha();
    let got = download(&server.url("/data.txt"), &dest, Some(&sha), &opts()).unwrap();
    assert_eq!(got, sha);
    assert_complete(&dest);
}

#[test]
fn a_dropped_connection_is_resumed_with_a_range_request() {
    let Case { server, dest, .. } = &case();
    fetch_whole(server, "/drop-first/data.txt", dest);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].1, None);
    assert_eq!(
        reqs[1].1.as_deref(),
        Some(format!("bytes={}-", fixture().len() / 3).as_str())
    );
}

#[test]
fn a_part_left_by_an_earlier_process_is_resumed_not_refetched() {
    let Case { server, dest, .. } = &case();
    std::fs::write(part_path(dest), &fixture()[..1000]).unwrap();
    fetch_whole(server, "/data.txt", dest);
    assert_eq!(server.requests()[0].1.as_deref(), Some("bytes=1000-"));
}

#[test]
fn a_server_that_ignores_ranges_replaces_the_part() {
    let Case { server, dest, .. } = &case();
    // A stale part with wrong bytes: appending to it would corrupt the file.
    std::fs::write(part_path(dest), vec![0u8; 5000]).unwrap();
    fetch_whole(server, "/no-range/data.txt", dest);
}

#[test]
fn a_part_as_long_as_the_file_starts_over_after_416() {
    let Case { server, dest, .. } = &case();
    std::fs::write(part_path(dest), vec![7u8; fixture().len()]).unwrap();
    fetch_whole(server, "/data.txt", dest);
}

#[test]
fn a_wrong_checksum_is_refused_and_nothing_is_left() {
    let Case { server, dest, .. } = &case();
    let want = "0".repeat(64);
    let e = download(&server.url("/data.txt"), dest, Some(&want), &opts()).unwrap_err();
    match &e {
        FetchError::Checksum {
            what,
            expected,
            got,
        } => {
            assert!(what.contains("/data.txt"), "{e}");
            assert_eq!(expected, &want);
            assert_eq!(got, &fixture_sha());
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(!dest.exists() && !part_path(dest).exists());
}

#[test]
fn a_404_is_final_and_names_the_url() {
    let Case { server, dest, .. } = &case();
    let url = server.url("/missing");
    let e = download(&url, dest, None, &opts()).unwrap_err().to_string();
    assert!(e.contains(&url) && e.contains("404"), "{e}");
    assert_eq!(server.requests().len(), 1, "a 404 is not retried");
    assert!(!dest.exists());
}

#[test]
fn a_503_is_retried() {
    let Case { server, dest, .. } = &case();
    fetch_whole(server, "/busy-once/data.txt", dest);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_stalled_server_times_out_with_a_clear_message() {
    let Case { server, dest, .. } = &case();
    let url = server.url("/stall");
    let o = HttpOptions {
        read_timeout: Duration::from_millis(300),
        retries: 1,
        ..opts()
    };
    let e = download(&url, dest, None, &o).unwrap_err().to_string();
    assert!(
        e.contains(&url) && e.contains("timed out") && e.contains("2 attempts"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 2);
    assert!(!dest.exists());
}

#[test]
fn nothing_listening_is_a_connect_error() {
    // Bind and drop: the port is then (almost surely) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/data.txt");
    let o = HttpOptions {
        retries: 0,
        ..opts()
    };
    let e = download(&url, &dir.path().join("d"), None, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&url) && e.contains("cannot connect"), "{e}");
}
