//! Paired t-test over per-user metric values of two runs on the same users.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// Mean of `a − b`.
    pub mean_diff: f64,
    pub t: f64,
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TTestError {
    #[error("paired t-test needs equally long samples, got {0} and {1}")]
    LengthMismatch(usize, usize),
    #[error("paired t-test needs at least 2 pairs, got {0}")]
    TooFew(usize),
}

/// Student's paired t-test, two-sided. When every difference is equal the
/// statistic is undefined: p = 1 if they are all zero, else p = 0.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TTest, TTestError> {
    if a.len() != b.len() {
        return Err(TTestError::LengthMismatch(a.len(), b.len()));
    }
    let n = a.len();
    if n < 2 {
        return Err(TTestError::TooFew(n));
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let df = (n - 1) as f64;
    if var == 0.0 {
        let (t, p) = if mean == 0.0 {
            (0.0, 1.0)
        } else {
            (f64::INFINITY.copysign(mean), 0.0)
        };
        return Ok(TTest {
            mean_diff: mean,
            t,
            df,
            p,
        });
    }
    let t = mean / (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).expect("df ≥ 1 is valid");
    let p = 2.0 * (1.0 - dist.cdf(t.abs()));
    Ok(TTest {
        mean_diff: mean,
        t,
        df,
        p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_student_sleep_data() {
        // Student (1908) / R's `sleep` data: extra sleep under two drugs for
        // 10 patients. R: t.test(extra ~ group, paired = TRUE) gives
        // t = -4.0621, df = 9, p-value = 0.002833.
        let drug1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
        let drug2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];
        let r = paired_t_test(&drug1, &drug2).unwrap();
        assert!((r.t - -4.0621).abs() < 1e-4, "{r:?}");
        assert_eq!(r.df, 9.0);
        assert!((r.p - 0.002833).abs() < 1e-6, "{r:?}");
        assert!((r.mean_diff - -1.58).abs() < 1e-12);
    }

    #[test]
    fn degenerate_cases() {
        let r = paired_t_test(&[1.0, 2.0], &[1.0, 2.0]).unwrap();
        assert_eq!((r.t, r.p), (0.0, 1.0));
        let r = paired_t_test(&[2.0, 3.0], &[1.0, 2.0]).unwrap();
        assert_eq!(r.p, 0.0);
        assert!(paired_t_test(&[1.0], &[1.0]).is_err());
        assert_eq!(
            paired_t_test(&[1.0, 2.0], &[1.0]).unwrap_err(),
            TTestError::LengthMismatch(2, 1)
        );
    }
}
