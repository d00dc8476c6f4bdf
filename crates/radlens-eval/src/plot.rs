//! The evaluation reports' plots, each a standalone SVG document (plotters' SVG
//! backend). Text is written as SVG `<text>` and drawn by the browser's own fonts, so
//! nothing here needs a font file. Non-finite values (an undefined interval, say)
//! are left out of a plot rather than drawn at an arbitrary place.

use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::element::{Boxplot, ErrorBar};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt;

/// A plot that could not be drawn.
#[derive(Debug)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not draw a plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Self(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, PlotError>;

/// A plot's title and axis names.
#[derive(Debug, Clone, Copy)]
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// An estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Estimate {
    fn is_finite(&self) -> bool {
        self.value.is_finite() && self.low.is_finite() && self.high.is_finite()
    }
}

/// One line of a [`lines_with_bands`] plot: estimates at x positions.
#[derive(Debug, Clone, PartialEq)]
pub struct BandSeries {
    pub name: String,
    pub points: Vec<(f64, Estimate)>,
}

const SIZE: (u32, u32) = (520, 340);
const FONT: &str = "sans-serif";

fn series_colour(i: usize) -> RGBColor {
    // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
    const OKABE_ITO: [RGBColor; 7] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
    ];
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// The range covering `values` (finite ones), padded by 5%; 0..1 when there are none.
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    lo - pad..hi + pad
}

/// Draws into a fresh SVG document of `size` and returns it.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

/// Lines of estimates against x, each with its interval as a shaded band (e.g. Dice
/// against perturbation severity, one line per model).
pub fn lines_with_bands(axes: Axes, series: &[BandSeries]) -> Result<String> {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, e)| x.is_finite() && e.is_finite())
    };
    let xs = padded_range(finite().map(|(x, _)| *x));
    let ys = padded_range(finite().flat_map(|(_, e)| [e.low, e.high]));
    svg(SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(axes.title, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_desc(axes.x)
            .y_desc(axes.y)
            .light_line_style(WHITE)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let colour = series_colour(i);
            let pts: Vec<(f64, Estimate)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, e)| x.is_finite() && e.is_finite())
                .collect();
            let mut band: Vec<(f64, f64)> = pts.iter().map(|(x, e)| (*x, e.high)).collect();
            band.extend(pts.iter().rev().map(|(x, e)| (*x, e.low)));
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                colour.mix(0.2).filled(),
            )))?;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|(x, e)| (*x, e.value)),
                    colour.stroke_width(2),
                ))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(
                pts.iter()
                    .map(|(x, e)| Circle::new((*x, e.value), 3, colour.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// A table of values as coloured cells (light = low, dark red = high), each cell
/// annotated with its value; `values[r][c]` is row `r`, column `c`. Non-finite
/// cells are grey and blank.
pub fn heatmap(
    title: &str,
    rows: &[String],
    columns: &[String],
    values: &[Vec<f64>],
) -> Result<String> {
    let (label_w, top, cell_w, cell_h) = (150i32, 60i32, 90i32, 24i32);
    let width = (label_w + cell_w * columns.len() as i32 + 10).max(300) as u32;
    let height = (top + cell_h * rows.len() as i32 + 10) as u32;
    let range = padded_range(values.iter().flatten().copied());
    let (lo, hi) = (range.start, range.end);
    svg((width, height), |root| {
        let text = |s: &str, x: i32, y: i32, h: HPos| {
            Text::new(
                s.to_string(),
                (x, y),
                TextStyle::from((FONT, 13).into_font()).pos(Pos::new(h, VPos::Center)),
            )
        };
        root.draw(&Text::new(
            title.to_string(),
            (10, 16),
            TextStyle::from((FONT, 16).into_font()),
        ))?;
        for (c, name) in columns.iter().enumerate() {
            let x = label_w + cell_w * c as i32 + cell_w / 2;
            root.draw(&text(name, x, top - 12, HPos::Center))?;
        }
        for (r, name) in rows.iter().enumerate() {
            let y = top + cell_h * r as i32;
            root.draw(&text(name, label_w - 8, y + cell_h / 2, HPos::Right))?;
            for c in 0..columns.len() {
                let v = values.get(r).and_then(|row| row.get(c)).copied();
                let x = label_w + cell_w * c as i32;
                let fill = match v {
                    Some(v) if v.is_finite() => {
                        let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
                        let mix = |a: f64, b: f64| (a + (b - a) * t) as u8;
                        RGBColor(mix(255.0, 165.0), mix(245.0, 15.0), mix(235.0, 21.0))
                    }
                    _ => RGBColor(220, 220, 220),
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell_w - 2, y + cell_h - 2)],
                    fill.filled(),
                ))?;
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    root.draw(&text(
                        &format!("{v:.3}"),
                        x + cell_w / 2,
                        y + cell_h / 2,
                        HPos::Center,
                    ))?;
                }
            }
        }
        Ok(())
    })
}

/// One row of a [`forest`] plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    pub label: String,
    pub estimate: Estimate,
}

/// A forest plot: one estimate with its interval per row, and a vertical line at
/// `reference` (e.g. 0 for "no gap").
pub fn forest(axes: Axes, rows: &[ForestRow], reference: f64) -> Result<String> {
    let n = rows.len().max(1) as i32;
    let xs = padded_range(
        rows.iter()
            .filter(|r| r.estimate.is_finite())
            .flat_map(|r| [r.estimate.low, r.estimate.high])
            .chain([reference]),
    );
    let height = (90 + 34 * n) as u32;
    svg((SIZE.0, height), |root| {
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(axes.title, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(130)
            .build_cartesian_2d(xs.clone(), (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .x_desc(axes.x)
            .y_desc(axes.y)
            .light_line_style(WHITE)
            .y_labels(rows.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        chart.draw_series(LineSeries::new(
            [
                (reference, SegmentValue::Exact(0)),
                (reference, SegmentValue::Last),
            ],
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        let colour = series_colour(0);
        chart.draw_series(
            rows.iter()
                .enumerate()
                .filter(|(_, r)| r.estimate.is_finite())
                .map(|(i, r)| {
                    let e = r.estimate;
                    ErrorBar::new_horizontal(
                        SegmentValue::CenterOf(i as i32),
                        e.low,
                        e.value,
                        e.high,
                        colour.stroke_width(2),
                        10,
                    )
                }),
        )?;
        chart.draw_series(
            rows.iter()
                .enumerate()
                .filter(|(_, r)| r.estimate.is_finite())
                .map(|(i, r)| {
                    Circle::new(
                        (r.estimate.value, SegmentValue::CenterOf(i as i32)),
                        5,
                        colour.filled(),
                    )
                }),
        )?;
        Ok(())
    })
}

/// Per group, its values as a box plot (quartiles, whiskers at 1.5 IQR) with every
/// value drawn as a point: small groups show what their box hides.
pub fn distributions(axes: Axes, groups: &[(String, Vec<f64>)]) -> Result<String> {
    let n = groups.len().max(1) as i32;
    let ys = padded_range(groups.iter().flat_map(|(_, v)| v.iter().copied()));
    svg(SIZE, |root| {
        let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(axes.title, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n).into_segmented(), ys.start as f32..ys.end as f32)?;
        chart
            .configure_mesh()
            .x_desc(axes.x)
            .y_desc(axes.y)
            .light_line_style(WHITE)
            .x_labels(groups.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        for (i, (_, values)) in groups.iter().enumerate() {
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            if finite.is_empty() {
                continue;
            }
            let colour = series_colour(i);
            let quartiles = Quartiles::new(&finite);
            chart.draw_series(std::iter::once(
                Boxplot::new_vertical(SegmentValue::CenterOf(i as i32), &quartiles)
                    .width(30)
                    .style(colour.stroke_width(2)),
            ))?;
            chart.draw_series(finite.iter().map(|&v| {
                Circle::new(
                    (SegmentValue::CenterOf(i as i32), v as f32),
                    2,
                    colour.mix(0.5).filled(),
                )
            }))?;
        }
        Ok(())
    })
}

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityPoint {
    /// Mean confidence of the bin's predictions.
    pub confidence: f64,
    /// Their accuracy.
    pub accuracy: f64,
    /// Their share of all predictions.
    pub weight: f64,
}

/// A reliability diagram: accuracy against mean confidence per bin, one line per
/// series, point size by the bin's share, and the diagonal of perfect calibration.
pub fn reliability(title: &str, series: &[(String, Vec<ReliabilityPoint>)]) -> Result<String> {
    let lo = series
        .iter()
        .flat_map(|(_, p)| p.iter().flat_map(|p| [p.confidence, p.accuracy]))
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::min)
        .clamp(0.0, 0.5);
    svg((SIZE.0, SIZE.0 - 60), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..1.0, lo..1.0)?;
        chart
            .configure_mesh()
            .x_desc("mean confidence")
            .y_desc("accuracy")
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(LineSeries::new(
            [(lo, lo), (1.0, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        for (i, (name, points)) in series.iter().enumerate() {
            let colour = series_colour(i);
            let pts: Vec<&ReliabilityPoint> = points
                .iter()
                .filter(|p| p.confidence.is_finite() && p.accuracy.is_finite() && p.weight > 0.0)
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.confidence, p.accuracy)),
                    colour.stroke_width(2),
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|p| {
                let r = (3.0 + 12.0 * p.weight.sqrt()).round() as i32;
                Circle::new((p.confidence, p.accuracy), r, colour.mix(0.6).filled())
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(value: f64) -> Estimate {
        Estimate {
            value,
            low: value - 0.01,
            high: value + 0.01,
        }
    }

    #[test]
    fn a_band_plot_is_an_svg_with_one_line_and_band_per_series() {
        let series: Vec<BandSeries> = ["ssn", "unet"]
            .iter()
            .map(|n| BandSeries {
                name: n.to_string(),
                points: (0..6)
                    .map(|l| (l as f64, e(0.97 - 0.02 * l as f64)))
                    .collect(),
            })
            .collect();
        let axes = Axes {
            title: "gaussian_noise",
            x: "level",
            y: "Dice",
        };
        let s = lines_with_bands(axes, &series).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..40]);
        assert!(s.contains("gaussian_noise") && s.contains("ssn") && s.contains("unet"));
        // one band polygon per series, 12 points on the line markers
        assert_eq!(s.matches("<polygon").count(), 2);
        assert_eq!(s.matches("<circle").count(), 12);
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let mut pts: Vec<(f64, Estimate)> = (0..3).map(|l| (l as f64, e(0.9))).collect();
        pts[1].1.low = f64::NAN;
        let s = lines_with_bands(
            Axes {
                title: "t",
                x: "x",
                y: "y",
            },
            &[BandSeries {
                name: "m".into(),
                points: pts,
            }],
        )
        .unwrap();
        assert_eq!(s.matches("<circle").count(), 2);
        assert!(!s.contains("NaN"));
    }

    #[test]
    fn heatmap_annotates_every_finite_cell() {
        let s = heatmap(
            "corruption error",
            &["blur".into(), "noise".into()],
            &["ssn".into(), "unet".into()],
            &[vec![0.5, 0.25], vec![f64::NAN, 1.0]],
        )
        .unwrap();
        for v in ["0.500", "0.250", "1.000"] {
            assert!(s.contains(v), "{v}");
        }
        assert_eq!(
            s.matches("<rect").count(),
            1 + 4,
            "background and four cells"
        );
    }

    #[test]
    fn forest_distributions_and_reliability_draw() {
        let rows = vec![
            ForestRow {
                label: "sex".into(),
                estimate: e(0.01),
            },
            ForestRow {
                label: "age_band".into(),
                estimate: e(0.02),
            },
        ];
        let axes = Axes {
            title: "gap",
            x: "Dice gap",
            y: "attribute",
        };
        let f = forest(axes, &rows, 0.0).unwrap();
        assert!(f.contains("sex") && f.contains("age_band"));
        let d = distributions(
            axes,
            &[
                ("F".into(), vec![0.9, 0.95, 0.97]),
                ("M".into(), vec![0.96]),
            ],
        )
        .unwrap();
        assert_eq!(d.matches("<circle").count(), 4);
        let r = reliability(
            "reliability",
            &[(
                "ssn".into(),
                vec![
                    ReliabilityPoint {
                        confidence: 0.75,
                        accuracy: 0.7,
                        weight: 0.1,
                    },
                    ReliabilityPoint {
                        confidence: 0.98,
                        accuracy: 0.99,
                        weight: 0.9,
                    },
                ],
            )],
        )
        .unwrap();
        assert_eq!(r.matches("<circle").count(), 2);
    }
}
