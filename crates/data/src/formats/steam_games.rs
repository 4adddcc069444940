//! The Steam game catalogue (`steam_games.json.gz`, UCSD's Steam metadata as
//! written by pandas): JSON lines with bare `NaN`, many all-NaN padding rows,
//! one row per app keyed by the string `id`.

use std::path::Path;

use serde::Deserialize;

use crate::attrs::{ItemAttrs, non_blank};
use crate::error::{DataError, Result};
use crate::formats::lenient_json::to_strict_json;
use crate::formats::lines::for_each_line;
use crate::raw::RawItemTable;

#[derive(Deserialize)]
struct Game {
    id: Option<serde_json::Value>,
    title: Option<String>,
    app_name: Option<String>,
    developer: Option<String>,
    release_date: Option<String>,
    #[serde(default, deserialize_with = "list_or_null")]
    genres: Vec<String>,
    #[serde(default, deserialize_with = "list_or_null")]
    specs: Vec<String>,
    #[serde(default, deserialize_with = "list_or_null")]
    tags: Vec<String>,
}

fn list_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// What the catalogue held besides the games it yields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogueReport {
    pub rows: usize,
    pub padding_rows: usize,
    pub duplicate_ids: usize,
}

/// Reads the catalogue; padding rows (no id) are skipped and counted, a
/// repeated id keeps its first row.
pub fn read(path: &Path) -> Result<(RawItemTable, CatalogueReport)> {
    let mut table = RawItemTable::new();
    let mut report = CatalogueReport::default();
    for_each_line(path, |n, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        report.rows += 1;
        let g: Game = serde_json::from_str(&to_strict_json(line))
            .map_err(|e| DataError::malformed(path, n, format!("not a Steam game record: {e}")))?;
        let id = match g.id {
            None | Some(serde_json::Value::Null) => {
                report.padding_rows += 1;
                return Ok(());
            }
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(x)) => x.to_string(),
            Some(other) => {
                return Err(DataError::malformed(
                    path,
                    n,
                    format!("game id {other} is neither a string nor a number"),
                ));
            }
        };
        if table.contains_key(&id) {
            report.duplicate_ids += 1;
            return Ok(());
        }
        let year = g
            .release_date
            .as_deref()
            .and_then(|d| d.get(..4))
            .filter(|y| y.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string);
        table.insert(
            id,
            ItemAttrs {
                title: g.title.or(g.app_name).as_deref().and_then(non_blank),
                year,
                brand: g.developer.as_deref().and_then(non_blank),
                genres: g.genres,
                specs: g.specs,
                tags: g.tags,
                ..Default::default()
            },
        );
        Ok(())
    })?;
    Ok((table, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_padding_and_reads_lists() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "{\"publisher\": NaN, \"genres\": NaN, \"title\": NaN, \"id\": NaN}\n\
             {\"genres\": [\"Casual\", \"Indie\"], \"app_name\": \"EXIT 2\", \"title\": NaN, \"tags\": [\"Puzzle\"], \"specs\": [\"Single-player\"], \"price\": 4.99, \"id\": \"658870\", \"release_date\": \"2017-09-05\"}\n\
             {\"title\": \"Again\", \"id\": \"658870\"}\n",
        )
        .unwrap();
        let (t, r) = read(f.path()).unwrap();
        assert_eq!(
            r,
            CatalogueReport {
                rows: 3,
                padding_rows: 1,
                duplicate_ids: 1
            }
        );
        let g = &t["658870"];
        assert_eq!(g.title.as_deref(), Some("EXIT 2"));
        assert_eq!(g.genres, vec!["Casual", "Indie"]);
        assert_eq!(g.specs, vec!["Single-player"]);
        assert_eq!(g.year.as_deref(), Some("2017"));
    }
}
