//! MovieLens' own `.dat` files (ML-1M, ML-10M), as GroupLens ships them
//! inside `ml-1m.zip`: fields separated by `::`, no header.
//!
//! - `ratings.dat`: `UserID::MovieID::Rating::Timestamp` (unix seconds).
//! - `movies.dat`: `MovieID::Title::Genres`, the title ending in its year,
//!   `Toy Story (1995)`, the genres separated by `|`. ML-1M writes it in
//!   latin-1 (`Misérables` is byte 0xE9), so it is decoded as such, never
//!   rejected as invalid UTF-8.

use std::path::Path;

use crate::attrs::{ItemAttrs, non_blank};
use crate::error::{DataError, Result};
use crate::formats::lines::{for_each_line, for_each_raw_line};
use crate::raw::{RawInteraction, RawItemTable, RawLog};

/// Reads `ratings.dat`; every rating is kept (thresholds are
/// `preprocess.min_rating`'s business).
pub fn read_ratings(path: &Path) -> Result<RawLog> {
    let mut log = RawLog::default();
    for_each_line(path, |n, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = line.split("::").collect();
        let [user, item, rating, time] = fields[..] else {
            return Err(DataError::malformed(
                path,
                n,
                format!(
                    "expected `UserID::MovieID::Rating::Timestamp`, found {} field(s)",
                    fields.len()
                ),
            ));
        };
        let number = |what: &str, s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    DataError::malformed(path, n, format!("{what} {s:?} is not a number"))
                })
        };
        let rating = number("rating", rating)? as f32;
        let time = number("timestamp", time)?;
        log.interactions.push(RawInteraction {
            user: user.trim().to_string(),
            item: item.trim().to_string(),
            time: Some(time),
            rating: Some(rating),
        });
        Ok(())
    })?;
    Ok(log)
}

/// Reads `movies.dat`: the title without its trailing `(year)`, the year,
/// and the genres.
pub fn read_movies(path: &Path) -> Result<RawItemTable> {
    let mut table = RawItemTable::new();
    for_each_raw_line(path, |n, bytes| {
        // Latin-1: every byte is the code point of the same value.
        let line: String = bytes.iter().map(|&b| b as char).collect();
        if line.trim().is_empty() {
            return Ok(());
        }
        let mut fields = line.splitn(3, "::");
        let (Some(id), Some(title), Some(genres)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(DataError::malformed(
                path,
                n,
                "expected `MovieID::Title::Genres`",
            ));
        };
        let id = id.trim();
        if id.is_empty() {
            return Err(DataError::malformed(path, n, "empty MovieID"));
        }
        let (title, year) = split_year(title.trim());
        table.insert(
            id.to_string(),
            ItemAttrs {
                title: non_blank(title),
                year: year.map(str::to_string),
                genres: genres
                    .split('|')
                    .filter_map(non_blank)
                    .filter(|g| g != "(no genres listed)")
                    .collect(),
                ..Default::default()
            },
        );
        Ok(())
    })?;
    Ok(table)
}

/// `"Heat (1995)"` → (`"Heat"`, `Some("1995")`); a title without a
/// trailing four-digit year is returned whole.
fn split_year(title: &str) -> (&str, Option<&str>) {
    let Some(open) = title.strip_suffix(')').and_then(|t| t.rfind('(')) else {
        return (title, None);
    };
    let year = &title[open + 1..title.len() - 1];
    if year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()) {
        (title[..open].trim_end(), Some(year))
    } else {
        (title, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(body: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), body).unwrap();
        f
    }

    #[test]
    fn ratings_are_read_with_time_and_rating() {
        let f = file(b"1::1193::5::978300760\r\n1::661::3::978302109\n\n2::1357::5::978298709\n");
        let log = read_ratings(f.path()).unwrap();
        assert_eq!(log.interactions.len(), 3);
        let r = &log.interactions[1];
        assert_eq!((r.user.as_str(), r.item.as_str()), ("1", "661"));
        assert_eq!((r.time, r.rating), (Some(978302109.0), Some(3.0)));
    }

    #[test]
    fn a_short_or_non_numeric_rating_line_names_its_line() {
        let f = file(b"1::1193::5::978300760\n1::661::3\n");
        let e = read_ratings(f.path()).unwrap_err().to_string();
        assert!(
            e.contains(":2: expected `UserID::MovieID::Rating::Timestamp`, found 3"),
            "{e}"
        );
        let f = file(b"1::661::three::978302109\n");
        let e = read_ratings(f.path()).unwrap_err().to_string();
        assert!(e.contains(":1: rating \"three\" is not a number"), "{e}");
    }

    #[test]
    fn movies_are_latin1_with_year_and_genres() {
        // 0xE9 is `é` in latin-1 and invalid as UTF-8.
        let f = file(
            b"1::Toy Story (1995)::Animation|Children's|Comedy\n\
              73::Mis\xe9rables, Les (1995)::Drama|War\n\
              9::Untitled::Drama\n",
        );
        let t = read_movies(f.path()).unwrap();
        assert_eq!(t["1"].title.as_deref(), Some("Toy Story"));
        assert_eq!(t["1"].year.as_deref(), Some("1995"));
        assert_eq!(t["1"].genres, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(t["73"].title.as_deref(), Some("Misérables, Les"));
        assert_eq!(t["9"].title.as_deref(), Some("Untitled"));
        assert_eq!(t["9"].year, None);
        let f = file(b"1::Toy Story (1995)\n");
        let e = read_movies(f.path()).unwrap_err().to_string();
        assert!(e.contains(":1: expected `MovieID::Title::Genres`"), "{e}");
    }
}
