//! Raw Amazon review data as downloaded from McAuley's pages: reviews and
//! metadata JSON lines, gzipped or not, in the 2014 shape (`reviewerID`,
//! `asin`, `overall`, `unixReviewTime`; metadata `categories` as a list of
//! paths, often as Python literals) and the 2018 shape (same review keys,
//! metadata `category` as a flat list).

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::attrs::{ItemAttrs, non_blank};
use crate::error::{DataError, Result};
use crate::formats::lenient_json::to_strict_json;
use crate::formats::lines::for_each_line;
use crate::raw::{RawInteraction, RawItemTable, RawLog};

#[derive(Deserialize)]
struct Review {
    #[serde(rename = "reviewerID")]
    reviewer: String,
    asin: String,
    overall: Option<f32>,
    #[serde(rename = "unixReviewTime")]
    time: Option<f64>,
}

#[derive(Deserialize)]
struct Meta {
    asin: String,
    title: Option<String>,
    brand: Option<String>,
    /// 2014: a list of category paths.
    #[serde(default)]
    categories: Vec<Vec<String>>,
    /// 2018: one flat path.
    #[serde(default)]
    category: Vec<String>,
}

pub fn read_reviews(path: &Path) -> Result<RawLog> {
    let mut log = RawLog::default();
    for_each_line(path, |n, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let r: Review = serde_json::from_str(&to_strict_json(line)).map_err(|e| {
            DataError::malformed(path, n, format!("not an Amazon review record: {e}"))
        })?;
        log.interactions.push(RawInteraction {
            user: r.reviewer,
            item: r.asin,
            time: r.time,
            rating: r.overall,
        });
        Ok(())
    })?;
    Ok(log)
}

pub fn read_meta(path: &Path) -> Result<RawItemTable> {
    let mut table = RawItemTable::new();
    for_each_line(path, |n, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let m: Meta = serde_json::from_str(&to_strict_json(line)).map_err(|e| {
            DataError::malformed(path, n, format!("not an Amazon metadata record: {e}"))
        })?;
        let mut seen = HashSet::new();
        let categories = m
            .categories
            .into_iter()
            .flatten()
            .chain(m.category)
            .filter_map(|c| non_blank(&c))
            .filter(|c| seen.insert(c.clone()))
            .collect();
        table.insert(
            m.asin,
            ItemAttrs {
                title: m.title.as_deref().and_then(non_blank),
                brand: m.brand.as_deref().and_then(non_blank),
                categories,
                ..Default::default()
            },
        );
        Ok(())
    })?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    // Hand-written records in the two public shapes.
    const REVIEWS_2014: &str = r#"{"reviewerID": "A1", "asin": "B01", "reviewerName": "J", "helpful": [0, 0], "reviewText": "ok", "overall": 5.0, "summary": "s", "unixReviewTime": 1300000000, "reviewTime": "03 13, 2011"}
{"reviewerID": "A1", "asin": "B02", "overall": 2.0, "unixReviewTime": 1200000000}
"#;
    const REVIEWS_2018: &str = r#"{"overall": 4.0, "verified": true, "reviewTime": "01 1, 2018", "reviewerID": "A2", "asin": "B03", "style": {"Size:": " M"}, "reviewerName": "K", "reviewText": "fine", "summary": "x", "unixReviewTime": 1514764800, "vote": "2"}
"#;
    const META_2014: &str = r#"{'asin': 'B01', 'title': "Nature's Gate Shampoo", 'categories': [['Beauty', 'Hair Care'], ['Beauty', 'Shampoo']], 'brand': 'NG', 'salesRank': {'Beauty': 10}}
"#;
    const META_2018: &str = r#"{"category": ["Clothing", "Women"], "title": "Dress", "brand": "", "asin": "B03", "description": ["d"]}
"#;

    fn file(body: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), body).unwrap();
        f
    }

    fn gz_file(body: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(f.path()).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(body.as_bytes()).unwrap();
        enc.finish().unwrap();
        f
    }

    #[test]
    fn reviews_2014_and_2018_gzipped_or_not() {
        let log = read_reviews(file(REVIEWS_2014).path()).unwrap();
        assert_eq!(log.interactions.len(), 2);
        assert_eq!(log.interactions[1].time, Some(1.2e9));
        assert_eq!(log.interactions[1].rating, Some(2.0));
        let log = read_reviews(gz_file(REVIEWS_2018).path()).unwrap();
        assert_eq!(log.interactions[0].user, "A2");
        assert_eq!(log.interactions[0].item, "B03");
    }

    #[test]
    fn meta_2014_python_literals_and_2018_json() {
        let t = read_meta(gz_file(META_2014).path()).unwrap();
        let a = &t["B01"];
        assert_eq!(a.title.as_deref(), Some("Nature's Gate Shampoo"));
        assert_eq!(a.categories, vec!["Beauty", "Hair Care", "Shampoo"]);
        assert_eq!(a.brand.as_deref(), Some("NG"));
        let t = read_meta(file(META_2018).path()).unwrap();
        assert_eq!(t["B03"].categories, vec!["Clothing", "Women"]);
        assert_eq!(t["B03"].brand, None);
    }

    #[test]
    fn a_broken_record_names_its_line() {
        let f = file(&format!("{REVIEWS_2014}{{\"asin\": \"B9\"}}\n"));
        let err = read_reviews(f.path()).unwrap_err().to_string();
        assert!(err.contains(":3: not an Amazon review record"), "{err}");
        assert!(err.contains("reviewerID"), "{err}");
    }
}
