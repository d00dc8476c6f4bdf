//! `curves.html`: a run's training curves from its `history.csv` (and, for SemanticGAN,
//! `encoder_history.csv`), one plot per column. GAN losses are noisy step to step, so each
//! plot shows a windowed mean with the window's 10-90% range as a band, and the page
//! states the training time the histories record.

use crate::checkpoint::SegRun;
use crate::error::{Result, SegError};
use crate::semanticgan::encoder_train::ENCODER_HISTORY_FILE;
use radlens_eval::html::Page;
use radlens_eval::plot::{self, Axes, BandSeries, Estimate};
use std::path::{Path, PathBuf};

/// The page's file name in a run folder.
pub const CURVES_FILE: &str = "curves.html";

/// The column every history records each row's wall-clock time in.
const SECONDS: &str = "seconds";

/// Points per curve: windows of consecutive rows are summarised into about this many.
const POINTS: usize = 100;

/// One history file: its first column (step or epoch) and its other numeric columns.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryTable {
    pub file: PathBuf,
    pub x_name: String,
    pub x: Vec<f64>,
    /// Column name and values; an empty or non-numeric cell is NaN (left out of plots).
    pub columns: Vec<(String, Vec<f64>)>,
}

impl HistoryTable {
    /// Reads `path`, a CSV with a header whose first column is the x axis.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |reason: String| SegError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let Some((x_name, names)) = header.split_first() else {
            return Err(bad("no header row".into()));
        };
        let mut x = Vec::new();
        let mut columns: Vec<(String, Vec<f64>)> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for (row, record) in rdr.records().enumerate() {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let step = record.get(0).and_then(|v| v.trim().parse::<f64>().ok());
            let Some(step) = step.filter(|s| s.is_finite()) else {
                return Err(bad(format!(
                    "row {}: first column is not a number",
                    row + 2
                )));
            };
            x.push(step);
            for (i, (_, values)) in columns.iter_mut().enumerate() {
                let v = record.get(i + 1).and_then(|v| v.trim().parse().ok());
                values.push(v.unwrap_or(f64::NAN));
            }
        }
        if x.is_empty() {
            return Err(bad("no rows".into()));
        }
        Ok(Self {
            file: path.to_path_buf(),
            x_name: x_name.clone(),
            x,
            columns,
        })
    }

    /// Total wall-clock seconds of the rows, when the history records them.
    pub fn seconds(&self) -> Option<f64> {
        let (_, s) = self.columns.iter().find(|(n, _)| n == SECONDS)?;
        Some(s.iter().filter(|v| v.is_finite()).sum())
    }
}

/// `values` against `x` in consecutive windows of `window` rows: each window's mean x and
/// the mean of its finite values with their 10th and 90th percentiles (nearest rank).
/// Windows without a finite value are left out.
pub fn windowed(x: &[f64], values: &[f64], window: usize) -> BandSeries {
    let window = window.max(1);
    let points = x
        .chunks(window)
        .zip(values.chunks(window))
        .filter_map(|(xs, vs)| {
            let mut finite: Vec<f64> = vs.iter().copied().filter(|v| v.is_finite()).collect();
            if finite.is_empty() {
                return None;
            }
            finite.sort_by(f64::total_cmp);
            let rank = |q: f64| finite[((q * finite.len() as f64).ceil() as usize).max(1) - 1];
            let mean = finite.iter().sum::<f64>() / finite.len() as f64;
            let x_mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let band = Estimate {
                value: mean,
                low: rank(0.1),
                high: rank(0.9),
            };
            Some((x_mean, band))
        })
        .collect();
    BandSeries {
        name: String::new(),
        points,
    }
}

/// The curves page of the run in `run`: every history it holds, one plot per column.
pub fn curves_report(run: &Path) -> Result<String> {
    // the histories a run may hold, in the order they are trained
    let files = [SegRun::at(run).history(), run.join(ENCODER_HISTORY_FILE)];
    let histories = files
        .iter()
        .filter(|p| p.is_file())
        .map(|p| HistoryTable::read(p))
        .collect::<Result<Vec<_>>>()?;
    if histories.is_empty() {
        return Err(SegError::Config {
            path: files[0].clone(),
            reason: "not found: not a training run folder".into(),
        });
    }
    let mut page = Page::new(&format!("Training curves: {}", run.display()));
    let hours = |s: f64| format!("{s:.0} s ({:.2} h)", s / 3600.0);
    let total: f64 = histories.iter().filter_map(HistoryTable::seconds).sum();
    page.paragraph(&format!(
        "Training time recorded in the histories: {}.",
        hours(total)
    ));
    for h in &histories {
        let name = h.file.file_name().unwrap_or_default().to_string_lossy();
        page.heading(&name);
        let window = h.x.len().div_ceil(POINTS);
        page.note(&format!(
            "{} rows, {} {} to {}; {}. Each point is the mean of {window} consecutive rows, \
             the band their 10-90% range.",
            h.x.len(),
            h.x_name,
            h.x[0],
            h.x[h.x.len() - 1],
            h.seconds().map_or("no time recorded".into(), hours),
        ));
        let figures = h
            .columns
            .iter()
            .filter(|(n, _)| n != SECONDS)
            .map(|(n, v)| {
                let series = BandSeries {
                    name: n.clone(),
                    ..windowed(&h.x, v, window)
                };
                let caption = match series.points.last() {
                    Some((_, e)) => format!("{n}: {:.4} in the last window", e.value),
                    None => format!("{n}: no values"),
                };
                let axes = Axes {
                    title: n,
                    x: &h.x_name,
                    y: n,
                };
                Ok((plot::lines_with_bands(axes, &[series])?, caption))
            })
            .collect::<Result<Vec<_>>>()?;
        page.figures(&figures);
    }
    Ok(page.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_summarise_by_hand() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let v = [10.0, f64::NAN, 30.0, 1.0, 2.0];
        let s = windowed(&x, &v, 2);
        // windows {1, 2}: only 10 is finite; {3, 4}: 30 and 1; {5}: 2
        let got: Vec<(f64, f64, f64, f64)> = s
            .points
            .iter()
            .map(|(x, e)| (*x, e.value, e.low, e.high))
            .collect();
        assert_eq!(
            got,
            [
                (1.5, 10.0, 10.0, 10.0),
                (3.5, 15.5, 1.0, 30.0),
                (5.0, 2.0, 2.0, 2.0)
            ]
        );
        // ten values 1..=10: nearest-rank 10th percentile 1, 90th 9
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = windowed(&x, &x, 10);
        let (_, e) = s.points[0];
        assert_eq!((e.value, e.low, e.high), (5.5, 1.0, 9.0));
        // a window with no finite value is left out
        assert!(windowed(&[1.0], &[f64::NAN], 1).points.is_empty());
    }

    #[test]
    fn a_run_page_has_every_column_and_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("step,seconds,d_loss,g_loss\n");
        for s in 1..=250 {
            text.push_str(&format!("{s},2.5,{},{}\n", 1.0 / s as f64, s % 7));
        }
        std::fs::write(dir.path().join("history.csv"), text).unwrap();
        std::fs::write(
            dir.path().join("encoder_history.csv"),
            "step,seconds,mse\n1,4.0,0.5\n2,4.0,0.25\n",
        )
        .unwrap();
        let html = curves_report(dir.path()).unwrap();
        // 250 x 2.5 s + 2 x 4 s
        assert!(html.contains("633 s (0.18 h)"), "{html}");
        assert_eq!(html.matches("<svg").count(), 3);
        for name in ["d_loss", "g_loss", "mse", "encoder_history.csv"] {
            assert!(html.contains(name), "{name}");
        }
        assert!(html.contains("mean of 3 consecutive rows"));
        // the last window of mse is row 2 alone
        assert!(html.contains("mse: 0.2500 in the last window"), "{html}");
    }

    #[test]
    fn bad_histories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = curves_report(dir.path()).unwrap_err().to_string();
        assert!(e.contains("history.csv") && e.contains("not found"), "{e}");
        let p = dir.path().join("history.csv");
        std::fs::write(&p, "step,loss\n").unwrap();
        let e = curves_report(dir.path()).unwrap_err().to_string();
        assert!(e.contains("history.csv") && e.contains("no rows"), "{e}");
        std::fs::write(&p, "step,loss\n1,0.5\nten,0.4\n").unwrap();
        let e = curves_report(dir.path()).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("not a number"), "{e}");
    }
}
