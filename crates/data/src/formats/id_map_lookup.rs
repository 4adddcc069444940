//! Item titles joined through an id map: a JSON object `{raw id: int}` and a
//! CSV whose `global_product_id` column holds that int and `name` the title
//! (the layout of the Beauty title files we use).

use std::collections::HashMap;
use std::path::Path;

use crate::attrs::{ItemAttrs, non_blank};
use crate::error::{DataError, Result};
use crate::formats::lines::open;
use crate::raw::RawItemTable;

pub fn read(id_map: &Path, lookup: &Path) -> Result<RawItemTable> {
    let map: HashMap<String, u64> = serde_json::from_reader(open(id_map)?).map_err(|e| {
        DataError::malformed(
            id_map,
            e.line(),
            format!("expected a JSON object of raw id → integer: {e}"),
        )
    })?;
    let mut reader = csv::Reader::from_reader(open(lookup)?);
    let headers = reader
        .headers()
        .map_err(|e| DataError::malformed(lookup, 1, e.to_string()))?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            DataError::malformed(lookup, 1, format!("header has no `{name}` column"))
        })
    };
    let (id_col, name_col) = (col("global_product_id")?, col("name")?);
    let mut titles: HashMap<u64, Option<String>> = HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| DataError::malformed(lookup, line, e.to_string()))?;
        let id = record.get(id_col).unwrap_or("");
        let id: u64 = id.trim().parse().map_err(|_| {
            DataError::malformed(
                lookup,
                line,
                format!("global_product_id {id:?} is not an integer"),
            )
        })?;
        titles.insert(id, record.get(name_col).and_then(non_blank));
    }
    Ok(map
        .into_iter()
        .map(|(raw, int)| {
            let attrs = ItemAttrs {
                title: titles.get(&int).cloned().flatten(),
                ..Default::default()
            };
            (raw, attrs)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_raw_ids_to_titles() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.json");
        let l = dir.path().join("l.csv");
        std::fs::write(&m, r#"{"B01": 0, "B02": 1, "B03": 2}"#).unwrap();
        std::fs::write(
            &l,
            ",global_product_id,name\n0,1,\"Gel, 1oz\"\n1,0,Palette\n2,2,\n",
        )
        .unwrap();
        let t = read(&m, &l).unwrap();
        assert_eq!(t["B01"].title.as_deref(), Some("Palette"));
        assert_eq!(t["B02"].title.as_deref(), Some("Gel, 1oz"));
        assert_eq!(t["B03"].title, None);
    }

    #[test]
    fn bad_id_names_the_csv_line() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.json");
        let l = dir.path().join("l.csv");
        std::fs::write(&m, r#"{"B01": 0}"#).unwrap();
        std::fs::write(&l, ",global_product_id,name\n0,zero,X\n").unwrap();
        let err = read(&m, &l).unwrap_err().to_string();
        assert!(err.contains("l.csv:2: global_product_id \"zero\""), "{err}");
    }
}
