//! UCSD's Steam reviews (`steam_reviews.json.gz`, "Version 2: Review
//! Data", Kang & McAuley): one Python dict literal per line, e.g.
//! `{'username': 'Chaos Syren', 'hours': 0.1, 'product_id': '725280',
//! 'date': '2017-12-17', 'text': '…', 'early_access': False, …}`.
//!
//! The user is `username`, as SASRec's Steam preprocessing has it (most
//! records carry no numeric `user_id`); the item is `product_id`, the
//! Steam app id that `steam_games.json.gz` keys its rows by; the time is
//! `date` at midnight UTC, in unix seconds, so reviews of one day keep
//! their file order.

use std::path::Path;

use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::formats::lenient_json::to_strict_json;
use crate::formats::lines::for_each_line;
use crate::raw::{RawInteraction, RawLog};

#[derive(Deserialize)]
struct Review {
    username: Option<String>,
    product_id: Option<serde_json::Value>,
    date: Option<String>,
}

/// What the file held besides the reviews it yields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewReport {
    pub rows: usize,
    /// Reviews without a `username` or `product_id`, which no sequence can hold.
    pub anonymous: usize,
}

pub fn read(path: &Path) -> Result<(RawLog, ReviewReport)> {
    let mut log = RawLog::default();
    let mut report = ReviewReport::default();
    for_each_line(path, |n, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        report.rows += 1;
        let r: Review = serde_json::from_str(&to_strict_json(line)).map_err(|e| {
            DataError::malformed(path, n, format!("not a Steam review record: {e}"))
        })?;
        let item = match r.product_id {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(x)) => Some(x.to_string()),
            _ => None,
        };
        let user = r.username.filter(|u| !u.trim().is_empty());
        let (Some(user), Some(item)) = (user, item.filter(|i| !i.trim().is_empty())) else {
            report.anonymous += 1;
            return Ok(());
        };
        let time = match r.date.as_deref() {
            Some(d) => Some(unix_day(d).ok_or_else(|| {
                DataError::malformed(path, n, format!("date {d:?} is not YYYY-MM-DD"))
            })?),
            None => None,
        };
        log.interactions.push(RawInteraction {
            user,
            item: item.trim().to_string(),
            time,
            rating: None,
        });
        Ok(())
    })?;
    if report.anonymous > 0 {
        tracing::warn!(
            file = %path.display(),
            skipped = report.anonymous,
            of = report.rows,
            "Steam reviews without a username or product_id were skipped"
        );
    }
    Ok((log, report))
}

/// `YYYY-MM-DD` as unix seconds at midnight UTC (days from the civil
/// calendar, Howard Hinnant's algorithm), or `None` when it is not a date.
fn unix_day(date: &str) -> Option<f64> {
    let mut parts = date.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_midnight_utc() {
        assert_eq!(unix_day("1970-01-01"), Some(0.0));
        // `date -u -d 2017-12-17 +%s`
        assert_eq!(unix_day("2017-12-17"), Some(1_513_468_800.0));
        assert_eq!(unix_day("2000-03-01"), Some(951_868_800.0));
        assert_eq!(unix_day("2017-13-01"), None);
        assert_eq!(unix_day("yesterday"), None);
    }

    #[test]
    fn python_literal_reviews_are_read_and_anonymous_ones_counted() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "{'username': 'Chaos Syren', 'hours': 0.1, 'products': 41, 'product_id': '725280', 'page_order': 0, 'date': '2017-12-17', 'text': 'It\\'s \"fine\"', 'early_access': False, 'page': 1}\n\
             {'username': 'freakfantom', 'hours': 0.1, 'product_id': '725280', 'date': '2018-01-04', 'text': 'ok', 'compensation': 'Product received for free', 'early_access': True}\n\
             {'hours': 2.0, 'product_id': '328100', 'date': '2017-10-16', 'text': 'no name'}\n",
        )
        .unwrap();
        let (log, report) = read(f.path()).unwrap();
        assert_eq!(
            report,
            ReviewReport {
                rows: 3,
                anonymous: 1
            }
        );
        assert_eq!(log.interactions.len(), 2);
        assert_eq!(log.interactions[0].user, "Chaos Syren");
        assert_eq!(log.interactions[1].item, "725280");
        assert_eq!(log.interactions[0].time, Some(1_513_468_800.0));
    }

    #[test]
    fn a_bad_date_names_its_line() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "{'username': 'a', 'product_id': '1', 'date': '2017-12-17'}\n{'username': 'a', 'product_id': '2', 'date': 'Dec 17'}\n",
        )
        .unwrap();
        let e = read(f.path()).unwrap_err().to_string();
        assert!(e.contains(":2: date \"Dec 17\" is not YYYY-MM-DD"), "{e}");
    }
}
