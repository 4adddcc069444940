//! Whitespace-separated id files: `user item` lines (the paper's
//! `inter.txt`) and `user item item …` lines (P5 / GRAM `user_sequence.txt`).
//! File order is time order.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::formats::lines::for_each_line;
use crate::raw::{RawInteraction, RawLog};

/// Reads `user item` lines; blank lines are skipped, anything else with
/// other than two fields is an error. With `numeric_ids` (the paper's files
/// hold remapped integers) a non-numeric id is an error too.
pub fn read_user_item(path: &Path, numeric_ids: bool) -> Result<RawLog> {
    let mut log = RawLog::default();
    for_each_line(path, |n, line| {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => Ok(()),
            (Some(u), Some(i), None) => {
                if numeric_ids {
                    for (what, id) in [("user", u), ("item", i)] {
                        if id.parse::<u64>().is_err() {
                            return Err(DataError::malformed(
                                path,
                                n,
                                format!("{what} id {id:?} is not a non-negative integer"),
                            ));
                        }
                    }
                }
                log.interactions.push(interaction(u, i));
                Ok(())
            }
            (Some(_), None, _) => Err(DataError::malformed(
                path,
                n,
                format!("expected `user item`, found one field: {line:?}"),
            )),
            _ => Err(DataError::malformed(
                path,
                n,
                format!("expected `user item`, found more than two fields: {line:?}"),
            )),
        }
    })?;
    Ok(log)
}

/// Reads `user item item …` lines; a user line without items is an error.
pub fn read_user_sequence(path: &Path) -> Result<RawLog> {
    let mut log = RawLog::default();
    for_each_line(path, |n, line| {
        let mut fields = line.split_whitespace();
        let Some(user) = fields.next() else {
            return Ok(());
        };
        let before = log.interactions.len();
        log.interactions
            .extend(fields.map(|item| interaction(user, item)));
        if log.interactions.len() == before {
            return Err(DataError::malformed(
                path,
                n,
                format!("user {user:?} has no items"),
            ));
        }
        Ok(())
    })?;
    Ok(log)
}

fn interaction(user: &str, item: &str) -> RawInteraction {
    RawInteraction {
        user: user.to_string(),
        item: item.to_string(),
        time: None,
        rating: None,
    }
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
    fn user_item_reads_pairs_and_skips_blank_lines() {
        let f = file("1 5\n1 6\n\n2 5\r\n");
        let log = read_user_item(f.path(), true).unwrap();
        let pairs: Vec<(&str, &str)> = log
            .interactions
            .iter()
            .map(|i| (i.user.as_str(), i.item.as_str()))
            .collect();
        assert_eq!(pairs, vec![("1", "5"), ("1", "6"), ("2", "5")]);
    }

    #[test]
    fn user_item_malformed_line_names_line() {
        let f = file("1 5\n1 6 7\n");
        let err = read_user_item(f.path(), true).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: expected `user item`, found more than two fields: \"1 6 7\""),
            "{err}"
        );
        let f = file("1 5\n\n42\n");
        let err = read_user_item(f.path(), true).unwrap_err().to_string();
        assert!(
            err.contains(":3: expected `user item`, found one field"),
            "{err}"
        );
    }

    #[test]
    fn non_numeric_id_is_an_error_when_ids_must_be_numeric() {
        let f = file("1 5\n1 x5\n");
        let err = read_user_item(f.path(), true).unwrap_err().to_string();
        assert!(
            err.contains(":2: item id \"x5\" is not a non-negative integer"),
            "{err}"
        );
        assert_eq!(
            read_user_item(f.path(), false).unwrap().interactions.len(),
            2
        );
    }

    #[test]
    fn user_sequence_expands_lines() {
        let f = file("A x y z\nB y\n");
        let log = read_user_sequence(f.path()).unwrap();
        assert_eq!(log.interactions.len(), 4);
        assert_eq!(log.interactions[3].user, "B");
        let f = file("A x\nB\n");
        let err = read_user_sequence(f.path()).unwrap_err().to_string();
        assert!(err.contains(":2: user \"B\" has no items"), "{err}");
    }

    #[test]
    fn non_utf8_is_an_error_with_line() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"1 2\n1 \xff\n").unwrap();
        let err = read_user_item(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2: not valid UTF-8"), "{err}");
    }

    #[test]
    fn missing_file_names_path() {
        let err = read_user_item(Path::new("/no/such/inter.txt"), true)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/no/such/inter.txt: "), "{err}");
    }
}
