//! RecBole atomic files: tab separated, a header of `name:type` columns
//! (`token`, `token_seq`, `float`, …). `.inter` gives interactions (ordered
//! by `timestamp` when present), `.item` item attributes.

use std::path::Path;

use crate::attrs::{ItemAttrs, non_blank};
use crate::config::RecboleItemFields;
use crate::error::{DataError, Result};
use crate::formats::lines::for_each_line;
use crate::raw::{RawInteraction, RawItemTable, RawLog};

/// Column positions from the header line, by name without the `:type`.
struct Header {
    names: Vec<String>,
}

impl Header {
    fn parse(line: &str) -> Self {
        Self {
            names: line
                .split('\t')
                .map(|c| c.split(':').next().unwrap_or("").trim().to_string())
                .collect(),
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn require(&self, path: &Path, name: &str) -> Result<usize> {
        self.find(name).ok_or_else(|| {
            DataError::malformed(
                path,
                1,
                format!(
                    "header has no `{name}` column (columns: {})",
                    self.names.join(", ")
                ),
            )
        })
    }
}

pub fn read_inter(path: &Path) -> Result<RawLog> {
    let mut log = RawLog::default();
    let mut cols: Option<(usize, usize, Option<usize>, Option<usize>)> = None;
    for_each_line(path, |n, line| {
        if n == 1 {
            let h = Header::parse(line);
            cols = Some((
                h.require(path, "user_id")?,
                h.require(path, "item_id")?,
                h.find("timestamp"),
                h.find("rating"),
            ));
            return Ok(());
        }
        if line.trim().is_empty() {
            return Ok(());
        }
        let (u, i, t, r) = cols.expect("header read on line 1");
        let fields: Vec<&str> = line.split('\t').collect();
        let get = |c: usize| {
            fields.get(c).copied().ok_or_else(|| {
                DataError::malformed(
                    path,
                    n,
                    format!(
                        "expected at least {} tab-separated fields, found {}",
                        c + 1,
                        fields.len()
                    ),
                )
            })
        };
        let number = |c: Option<usize>, what: &str| -> Result<Option<f64>> {
            c.map(|c| {
                let s = get(c)?.trim();
                s.parse::<f64>().map_err(|_| {
                    DataError::malformed(path, n, format!("{what} {s:?} is not a number"))
                })
            })
            .transpose()
        };
        let time = number(t, "timestamp")?;
        let rating = number(r, "rating")?.map(|r| r as f32);
        log.interactions.push(RawInteraction {
            user: get(u)?.trim().to_string(),
            item: get(i)?.trim().to_string(),
            time,
            rating,
        });
        Ok(())
    })?;
    if cols.is_none() {
        return Err(DataError::empty(path, "file is empty (no header line)"));
    }
    Ok(log)
}

pub fn read_items(path: &Path, fields: &RecboleItemFields) -> Result<RawItemTable> {
    let mut table = RawItemTable::new();
    let mut cols = None;
    for_each_line(path, |n, line| {
        if n == 1 {
            let h = Header::parse(line);
            let opt = |name: &Option<String>| -> Result<Option<usize>> {
                name.as_deref().map(|c| h.require(path, c)).transpose()
            };
            cols = Some((
                h.require(path, "item_id")?,
                opt(&fields.title)?,
                opt(&fields.year)?,
                opt(&fields.genres)?,
                opt(&fields.categories)?,
                opt(&fields.brand)?,
            ));
            return Ok(());
        }
        if line.trim().is_empty() {
            return Ok(());
        }
        let (id, title, year, genres, categories, brand) = cols.expect("header read on line 1");
        let f: Vec<&str> = line.split('\t').collect();
        let text = |c: Option<usize>| c.and_then(|c| f.get(c)).and_then(|s| non_blank(s));
        let list = |c: Option<usize>| -> Vec<String> {
            c.and_then(|c| f.get(c))
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let Some(item) = f.get(id).map(|s| s.trim()).filter(|s| !s.is_empty()) else {
            return Err(DataError::malformed(path, n, "missing item_id"));
        };
        table.insert(
            item.to_string(),
            ItemAttrs {
                title: text(title),
                year: text(year),
                brand: text(brand),
                genres: list(genres),
                categories: list(categories),
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

    fn file(body: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), body).unwrap();
        f
    }

    #[test]
    fn inter_reads_typed_columns_in_any_order() {
        let f = file("timestamp:float\titem_id:token\tuser_id:token\n30\t7\t1\n10\t8\t1\n");
        let log = read_inter(f.path()).unwrap();
        assert_eq!(log.interactions[0].item, "7");
        assert_eq!(log.interactions[1].time, Some(10.0));
        assert_eq!(log.interactions[1].rating, None);
    }

    #[test]
    fn inter_bad_number_and_missing_column() {
        let f = file("user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n");
        let err = read_inter(f.path()).unwrap_err().to_string();
        assert!(
            err.contains(":2: timestamp \"soon\" is not a number"),
            "{err}"
        );
        let f = file("user:token\titem_id:token\n");
        let err = read_inter(f.path()).unwrap_err().to_string();
        assert!(err.contains(":1: header has no `user_id` column"), "{err}");
        let f = file("");
        assert!(
            read_inter(f.path())
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn items_map_columns_to_attributes() {
        let f = file(
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
             1\tToy Story\t1995\tAnimation Children's Comedy\n2\tUnknown\t\t\n",
        );
        let t = read_items(f.path(), &RecboleItemFields::default()).unwrap();
        let toy = &t["1"];
        assert_eq!(toy.title.as_deref(), Some("Toy Story"));
        assert_eq!(toy.year.as_deref(), Some("1995"));
        assert_eq!(toy.genres, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(t["2"].year, None);
        assert!(t["2"].genres.is_empty());
    }
}
