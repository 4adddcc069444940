//! The publishers' raw files, fetched the way the shipped configs
//! (`ml-1m.toml`, `amazon2014-*.toml`, `steam-reviews.toml`, …) fetch them,
//! but from a local server serving tiny fixtures built here: a zip archive
//! with MovieLens' `::` files, gzipped Amazon reviews and Python-literal
//! metadata. Each test goes fetch → read → preprocess and checks counts
//! worked out by hand, or checks that a bad download is refused and named.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hsuga_data::{DatasetConfig, HttpOptions, RECORDED, fetch_missing, prepare};
use hsuga_fetch::http::part_path;
use hsuga_fetch::testing::Server;
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Four users' ratings (user 3 has only two) and five movies, one title
/// in latin-1, zipped under `ml-1m/` as GroupLens does.
fn ml_zip() -> Vec<u8> {
    let ratings = "1::10::5::5\n1::20::3::3\n1::30::4::4\n\
                   2::10::4::1\n2::20::2::2\n2::40::5::3\n2::10::1::9\n\
                   3::30::3::2\n3::10::4::1\n\
                   4::20::5::1\n4::30::5::2\n4::40::5::3\n";
    let movies: &[u8] = b"10::Toy Story (1995)::Animation|Comedy\n\
                          20::Mis\xe9rables, Les (1995)::Drama\n\
                          30::Heat (1995)::Action\n\
                          40::No Year::Drama\n\
                          50::Unused (2000)::Drama\n";
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, body) in [
        ("ml-1m/README", b"tiny".as_slice()),
        ("ml-1m/ratings.dat", ratings.as_bytes()),
        ("ml-1m/movies.dat", movies),
    ] {
        z.start_file(name, opts).unwrap();
        z.write_all(body).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// A config `root/<name>.toml` reading from the empty folder `root/d`.
fn config(root: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(root.join("d")).unwrap();
    let p = root.join(format!("{name}.toml"));
    std::fs::write(&p, format!("name = \"{name}\"\ndata_dir = \"d\"\n{body}")).unwrap();
    p
}

fn ml_config(root: &Path, url: &str, sha256: &str) -> PathBuf {
    config(
        root,
        "ml",
        &format!(
            "[interactions]\nformat = \"movielens\"\npath = \"ratings.dat\"\n\
             [items]\nformat = \"movielens\"\npath = \"movies.dat\"\n\
             [source]\nhomepage = \"https://grouplens.org/datasets/movielens/1m/\"\n\
             archives = [{{ url = \"{url}\", sha256 = \"{sha256}\" }}]\n\
             files = [\n\
               {{ path = \"ratings.dat\", url = \"{url}\", member = \"ml-1m/ratings.dat\" }},\n\
               {{ path = \"movies.dat\", url = \"{url}\", member = \"ml-1m/movies.dat\" }},\n\
             ]\n"
        ),
    )
}

fn ml_server() -> Server {
    Server::start(HashMap::from([("ml-1m.zip".to_string(), ml_zip())]))
}

#[test]
fn movielens_members_come_out_of_the_fetched_zip_and_preprocess_as_counted() {
    let server = ml_server();
    let root = tempfile::tempdir().unwrap();
    let path = ml_config(root.path(), &server.url("/ml-1m.zip"), &sha(&ml_zip()));
    let cfg = DatasetConfig::load(&path).unwrap();
    let d = root.path().join("d");
    assert!(d.join("ratings.dat").is_file() && d.join("movies.dat").is_file());
    // The checked archive is kept beside its members, and nothing else.
    assert_eq!(std::fs::read(d.join("ml-1m.zip")).unwrap(), ml_zip());
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ml-1m.zip", "movies.dat", "ratings.dat"]);

    let p = prepare(&cfg, &root.path().join("cache")).unwrap();
    let ds = &p.dataset;
    // User 3 has 2 ratings (< 3) and goes; items keep numeric order
    // 10, 20, 30, 40 → 1..4; each user's items are in timestamp order.
    assert_eq!(ds.user_ids, ["1", "2", "4"]);
    assert_eq!(ds.item_ids, ["10", "20", "30", "40"]);
    assert_eq!(
        ds.sequences,
        vec![vec![2, 3, 1], vec![1, 2, 4, 1], vec![2, 3, 4]]
    );
    assert_eq!(ds.num_interactions(), 10);
    assert_eq!(ds.report.raw_interactions, 12);
    assert_eq!(ds.report.dropped_users, 1);
    let title = |i: u32| ds.attrs(i).unwrap().title.clone();
    assert_eq!(title(2).as_deref(), Some("Misérables, Les"));
    assert_eq!(ds.attrs(1).unwrap().year.as_deref(), Some("1995"));
    assert_eq!(ds.attrs(1).unwrap().genres, ["Animation", "Comedy"]);
    assert_eq!(title(4).as_deref(), Some("No Year"));
    // One request: the archive, once, for both members.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_half_downloaded_archive_is_resumed() {
    let server = ml_server();
    let root = tempfile::tempdir().unwrap();
    let path = ml_config(root.path(), &server.url("/ml-1m.zip"), &sha(&ml_zip()));
    let zip = root.path().join("d/ml-1m.zip");
    std::fs::write(part_path(&zip), &ml_zip()[..100]).unwrap();
    DatasetConfig::load(&path).unwrap();
    assert_eq!(server.requests()[0].1.as_deref(), Some("bytes=100-"));
    assert_eq!(std::fs::read(&zip).unwrap(), ml_zip());
    assert!(!part_path(&zip).exists());
}

#[test]
fn an_archive_with_the_wrong_checksum_is_refused_and_removed() {
    let server = ml_server();
    let root = tempfile::tempdir().unwrap();
    let url = server.url("/ml-1m.zip");
    let path = ml_config(root.path(), &url, &"b".repeat(64));
    let e = DatasetConfig::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("dataset ml: fetching ml-1m.zip")
            && e.contains(&url)
            && e.contains(&"b".repeat(64))
            && e.contains(&sha(&ml_zip())),
        "{e}"
    );
    assert!(e.contains("put ratings.dat, movies.dat into"), "{e}");
    let d = root.path().join("d");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing is left");
}

#[test]
fn a_missing_archive_and_a_stalled_server_are_reported_by_dataset_and_url() {
    let server = ml_server();
    let root = tempfile::tempdir().unwrap();
    let url = server.url("/ml-1m-gone.zip");
    let path = ml_config(root.path(), &url, &sha(&ml_zip()));
    let e = DatasetConfig::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("dataset ml") && e.contains(&url) && e.contains("404"),
        "{e}"
    );
    assert!(
        e.contains("https://grouplens.org/datasets/movielens/1m/"),
        "{e}"
    );

    // `/stall` accepts the connection and says nothing for 5 s.
    let url = server.url("/stall");
    let path = ml_config(root.path(), &url, &sha(&ml_zip()));
    let cfg = DatasetConfig::read(&path).unwrap();
    let opts = HttpOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        retries: 0,
        backoff: Duration::from_millis(10),
        progress: false,
    };
    let e = fetch_missing(&cfg, &opts).unwrap_err().to_string();
    assert!(
        e.contains("dataset ml") && e.contains(&url) && e.contains("timed out"),
        "{e}"
    );
    assert!(
        e.contains(&root.path().join("d").display().to_string()),
        "{e}"
    );
}

/// Amazon 2014 reviews (strict JSON) and metadata (Python literals), both
/// gzipped. Raw item counts: B1 5, B2 5, B3 3, B9 1; users A1 (B1 B2 B9)
/// and A5 (B3 B3) end below 3 once B9 is gone.
const REVIEWS: &str = r#"{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}
{"reviewerID": "A1", "asin": "B2", "overall": 4.0, "unixReviewTime": 200}
{"reviewerID": "A1", "asin": "B9", "overall": 1.0, "unixReviewTime": 300}
{"reviewerID": "A2", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}
{"reviewerID": "A2", "asin": "B2", "overall": 5.0, "unixReviewTime": 200}
{"reviewerID": "A2", "asin": "B1", "overall": 5.0, "unixReviewTime": 300}
{"reviewerID": "A3", "asin": "B1", "overall": 3.0, "unixReviewTime": 300}
{"reviewerID": "A3", "asin": "B2", "overall": 2.0, "unixReviewTime": 200}
{"reviewerID": "A3", "asin": "B3", "overall": 4.0, "unixReviewTime": 100}
{"reviewerID": "A4", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}
{"reviewerID": "A4", "asin": "B2", "overall": 5.0, "unixReviewTime": 200}
{"reviewerID": "A4", "asin": "B2", "overall": 5.0, "unixReviewTime": 300}
{"reviewerID": "A5", "asin": "B3", "overall": 5.0, "unixReviewTime": 100}
{"reviewerID": "A5", "asin": "B3", "overall": 5.0, "unixReviewTime": 200}
"#;

const META: &str = r#"{'asin': 'B1', 'title': "Nature's Gate Shampoo", 'categories': [['Beauty', 'Hair Care']], 'salesRank': {'Beauty': 10}}
{'asin': 'B2', 'title': 'Lip Gloss', 'brand': 'NYX', 'categories': [['Beauty', 'Makeup']]}
{'asin': 'B3', 'title': 'Brush', 'categories': [['Beauty', 'Tools & Accessories']]}
"#;

fn amazon_config(root: &Path, reviews_url: &str, meta_url: &str) -> PathBuf {
    config(
        root,
        "amz",
        &format!(
            "[interactions]\nformat = \"amazon_reviews\"\npath = \"reviews.json.gz\"\n\
             [items]\nformat = \"amazon_meta\"\npath = \"meta.json.gz\"\n\
             [preprocess]\nmin_user_interactions = 3\nmin_item_interactions = 3\n\
             core_filter = \"one_pass\"\n\
             [source]\nfiles = [\n\
               {{ path = \"reviews.json.gz\", url = \"{reviews_url}\", sha256 = \"unpublished\" }},\n\
               {{ path = \"meta.json.gz\", url = \"{meta_url}\", sha256 = \"unpublished\" }},\n\
             ]\n"
        ),
    )
}

#[test]
fn unpublished_files_are_trusted_once_recorded_and_held_to_it() {
    let server = Server::start(HashMap::from([
        ("reviews.json.gz".to_string(), gz(REVIEWS)),
        ("meta.json.gz".to_string(), gz(META)),
        // The "same" file, changed at its publisher since.
        (
            "reviews-v2.json.gz".to_string(),
            gz(&REVIEWS.replace("B9", "B8")),
        ),
    ]));
    let root = tempfile::tempdir().unwrap();
    let path = amazon_config(
        root.path(),
        &server.url("/reviews.json.gz"),
        &server.url("/meta.json.gz"),
    );
    let cfg = DatasetConfig::read(&path).unwrap();
    let report = fetch_missing(&cfg, &HttpOptions::default()).unwrap();
    let d = root.path().join("d");
    assert_eq!(
        report.recorded,
        [d.join("reviews.json.gz"), d.join("meta.json.gz")]
    );
    // sha256sum's format, sorted by path.
    assert_eq!(
        std::fs::read_to_string(d.join(RECORDED)).unwrap(),
        format!(
            "{}  meta.json.gz\n{}  reviews.json.gz\n",
            sha(&gz(META)),
            sha(&gz(REVIEWS))
        )
    );

    let cfg = DatasetConfig::load(&path).unwrap();
    let p = prepare(&cfg, &root.path().join("cache")).unwrap();
    let ds = &p.dataset;
    // LLM-ESR's one pass: only B9 (1 use) goes; A1 and A5 fall below 3.
    assert_eq!(ds.user_ids, ["A2", "A3", "A4"]);
    assert_eq!(ds.item_ids, ["B1", "B2", "B3"]);
    // A3's reviews in time order: B3 (100), B2 (200), B1 (300).
    assert_eq!(
        ds.sequences,
        vec![vec![1, 2, 1], vec![3, 2, 1], vec![1, 2, 2]]
    );
    assert_eq!(ds.num_interactions(), 9);
    let a = ds.attrs(1).unwrap();
    assert_eq!(a.title.as_deref(), Some("Nature's Gate Shampoo"));
    assert_eq!(a.categories, ["Beauty", "Hair Care"]);
    assert_eq!(ds.attrs(2).unwrap().brand.as_deref(), Some("NYX"));

    // Lost, and fetched again from a host whose copy has changed: refused,
    // naming the record, and not put in place.
    std::fs::remove_file(d.join("reviews.json.gz")).unwrap();
    let moved = amazon_config(
        root.path(),
        &server.url("/reviews-v2.json.gz"),
        &server.url("/meta.json.gz"),
    );
    let e = DatasetConfig::load(&moved).unwrap_err().to_string();
    assert!(
        e.contains("dataset amz: fetching reviews.json.gz")
            && e.contains("recorded at its first download")
            && e.contains(&d.join(RECORDED).display().to_string())
            && e.contains(&sha(&gz(REVIEWS))),
        "{e}"
    );
    assert!(!d.join("reviews.json.gz").exists());
    assert!(!part_path(&d.join("reviews.json.gz")).exists());
    // The original copy still matches its record.
    let path = amazon_config(
        root.path(),
        &server.url("/reviews.json.gz"),
        &server.url("/meta.json.gz"),
    );
    DatasetConfig::load(&path).unwrap();
    assert_eq!(
        std::fs::read(d.join("reviews.json.gz")).unwrap(),
        gz(REVIEWS)
    );
}

/// Steam's files are published without a hash, but a third party lists
/// the sha256 of their decompressed bytes: that is checked before the
/// file is put in place.
#[test]
fn a_decompressed_hash_is_checked_before_the_file_lands() {
    let reviews = "{'username': 'u1', 'product_id': '10', 'date': '2017-01-01'}\n\
                   {'username': 'u1', 'product_id': '20', 'date': '2017-01-03'}\n\
                   {'username': 'u1', 'product_id': '30', 'date': '2017-01-02'}\n";
    let server = Server::start(HashMap::from([(
        "steam_reviews.json.gz".to_string(),
        gz(reviews),
    )]));
    let url = server.url("/steam_reviews.json.gz");
    let body = |inner: &str| {
        format!(
            "[interactions]\nformat = \"steam_reviews\"\npath = \"steam_reviews.json.gz\"\n\
             [source]\nfiles = [{{ path = \"steam_reviews.json.gz\", url = \"{url}\", \
             sha256 = \"unpublished\", gunzipped_sha256 = \"{inner}\" }}]\n"
        )
    };
    let root = tempfile::tempdir().unwrap();
    let wrong = "c".repeat(64);
    let path = config(root.path(), "steam", &body(&wrong));
    let e = DatasetConfig::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("its decompressed bytes")
            && e.contains(&wrong)
            && e.contains(&sha(reviews.as_bytes())),
        "{e}"
    );
    let d = root.path().join("d");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing is left");

    let path = config(root.path(), "steam", &body(&sha(reviews.as_bytes())));
    let cfg = DatasetConfig::load(&path).unwrap();
    let p = prepare(&cfg, &root.path().join("cache")).unwrap();
    // Ordered by date: 10 (Jan 1), 30 (Jan 2), 20 (Jan 3).
    assert_eq!(p.dataset.sequences, vec![vec![1, 3, 2]]);
    assert!(d.join(RECORDED).is_file());
}

#[test]
fn archive_tables_are_checked_before_any_download() {
    let root = tempfile::tempdir().unwrap();
    let head = "[interactions]\nformat = \"movielens\"\npath = \"ratings.dat\"\n[source]\n";
    let z = "https://example.org/ml-1m.zip";
    let cases = [
        (
            format!("files = [{{ path = \"ratings.dat\", url = \"{z}\", member = \"ml-1m/ratings.dat\" }}]"),
            "must be listed in `source.archives`",
        ),
        (
            format!(
                "archives = [{{ url = \"{z}\" }}]\n\
                 files = [{{ path = \"ratings.dat\", url = \"{z}\", member = \"ml-1m/ratings.dat\", sha256 = \"unpublished\" }}]"
            ),
            "covered by its archive's sha256",
        ),
        (
            "archives = [{ url = \"https://example.org/\" }]\n\
             files = [{ path = \"ratings.dat\", url = \"https://example.org/\", member = \"r\" }]"
                .to_string(),
            "does not end in a file name",
        ),
        (
            format!(
                "archives = [{{ url = \"{z}\", sha256 = \"abc\" }}]\n\
                 files = [{{ path = \"ratings.dat\", url = \"{z}\", member = \"r\" }}]"
            ),
            "not 64 hex digits (or \"unpublished\")",
        ),
        (
            format!(
                "archives = [{{ url = \"{z}\" }}]\n\
                 files = [{{ path = \"ml-1m.zip\", url = \"{z}\", member = \"r\" }}, \
                 {{ path = \"ratings.dat\", url = \"{z}\", member = \"r\" }}]"
            ),
            "the name of an archive",
        ),
        (
            "files = [{ path = \"ratings.dat\", url = \"https://x/y.gz\", gunzipped_sha256 = \"unpublished\" }]"
                .to_string(),
            "gunzipped_sha256 \"unpublished\" is not 64 hex digits",
        ),
    ];
    for (body, want) in cases {
        let p = config(root.path(), "c", &format!("{head}{body}\n"));
        let e = DatasetConfig::read(&p).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("c.toml"), "{body}: {e}");
    }
}
