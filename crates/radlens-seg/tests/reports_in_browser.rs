//! The evaluation reports open offline in a real browser and their plots are drawn:
//! each `report.html` is rendered by headless Chromium to a screenshot, which must
//! show the plot colours of both models' lines.
//!
//! Needs Chromium (`chromium`, or the binary named by `RADLENS_CHROMIUM`). Without
//! one the test says so and passes, unless `RADLENS_REQUIRE_BROWSER` is set (CI sets
//! it and installs Debian's chromium).

use radlens_io::perturb::{Perturbation, LEVELS};
use radlens_seg::html::{robustness_report, shift_report, subgroups_report};
use radlens_seg::robustness::{summarise, RobustnessRow};
use radlens_seg::shift::{compare_domains, ImageDice, ShiftSummary};
use radlens_seg::subgroups::{AttributeSummary, GroupSummary, SubgroupSummary};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The first two series colours of radlens' plots (Okabe-Ito blue and vermillion).
const BLUE: [u8; 3] = [0, 114, 178];
const VERMILLION: [u8; 3] = [213, 94, 0];

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RADLENS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Renders `html` in headless Chromium and returns the screenshot's RGB pixels.
fn screenshot(browser: &Path, html: &Path, dir: &Path) -> image::RgbImage {
    let shot = dir.join(format!(
        "{}.png",
        html.file_stem().unwrap().to_string_lossy()
    ));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("chromium did not finish rendering {}", html.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    image::open(&shot)
        .unwrap_or_else(|e| panic!("no screenshot of {}: {e}", html.display()))
        .to_rgb8()
}

fn pixels_near(img: &image::RgbImage, colour: [u8; 3]) -> usize {
    img.pixels()
        .filter(|p| p.0.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= 12))
        .count()
}

fn robustness_html() -> String {
    let mut rows = Vec::new();
    for id in 0..10 {
        for (m, loss) in [("ssn", 0.02), ("unet", 0.03)] {
            let clean = 0.95 + 0.002 * (id % 4) as f64;
            let row = |p: &str, level: usize, dice: f64| RobustnessRow {
                model: m.into(),
                id: format!("c{id}"),
                perturbation: p.into(),
                level,
                param: level as f64,
                dice,
                hd95: Some(20.0 * (1.0 - dice)),
                ece: Some(0.01),
                sample_diversity: None,
            };
            rows.push(row("clean", 0, clean));
            for l in 1..=LEVELS {
                rows.push(row("gaussian_blur", l, clean - loss * l as f64));
            }
        }
    }
    let summary = summarise(
        &rows,
        &["ssn".into(), "unet".into()],
        &[Perturbation::GaussianBlur],
        "jsrt:test".into(),
        0,
    );
    robustness_report(&summary).unwrap()
}

fn subgroups_html() -> String {
    let group = |name: &str, dice: Vec<f64>| {
        let mean = dice.iter().sum::<f64>() / dice.len() as f64;
        GroupSummary {
            group: name.into(),
            n: dice.len(),
            patients: dice.len(),
            too_small: false,
            dice_mean: mean,
            dice_ci: [mean - 0.005, mean + 0.005],
            hd95_mean: Some(5.0),
            hd95_ci: Some([4.0, 6.0]),
            signed_area_error_mean: -0.01,
            signed_area_error_ci: [-0.02, 0.0],
            dice_values: dice,
            confounders: Default::default(),
        }
    };
    let f: Vec<f64> = (0..25).map(|i| 0.95 + 0.001 * (i % 7) as f64).collect();
    let m: Vec<f64> = (0..22).map(|i| 0.96 + 0.001 * (i % 5) as f64).collect();
    let summary = SubgroupSummary {
        model: "models/jsrt-ssn".into(),
        dataset: "jsrt:test".into(),
        images: 47,
        attributes: [(
            "sex".to_string(),
            AttributeSummary {
                groups: vec![group("female", f), group("male", m)],
                missing: 0,
                worst_group: Some("female".into()),
                gap: Some(0.011),
                gap_ci: Some([0.008, 0.014]),
                p_value: Some(0.001),
                p_holm: Some(0.001),
                skewed_error_ratio: Some(1.3),
            },
        )]
        .into(),
        confounders: "nodule status".into(),
        inversion_steps: None,
        protocol: "by hand".into(),
    };
    subgroups_report(&summary).unwrap()
}

fn shift_html() -> String {
    let rows = |base: f64, matched: f64| -> Vec<ImageDice> {
        (0..12)
            .map(|i| ImageDice {
                id: i.to_string(),
                classes: vec![
                    (
                        "left_lung".into(),
                        base + 0.002 * (i % 3) as f64,
                        Some(matched),
                    ),
                    ("right_lung".into(), base + 0.01, Some(base + 0.015)),
                ],
            })
            .collect()
    };
    let summary = ShiftSummary {
        model: "models/jsrt-ssn".into(),
        in_domain: "jsrt:test".into(),
        out_of_domain: "covid-cxr".into(),
        classes: compare_domains(&rows(0.97, 0.975), &rows(0.76, 0.9), 0).unwrap(),
        protocol: "by hand".into(),
    };
    shift_report(&summary).unwrap()
}

#[test]
fn reports_render_with_their_plots_in_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("RADLENS_REQUIRE_BROWSER").is_none(),
            "RADLENS_REQUIRE_BROWSER is set but no chromium was found (set RADLENS_CHROMIUM)"
        );
        eprintln!("skipped: no chromium on PATH (set RADLENS_CHROMIUM or install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pages = [
        ("robustness", robustness_html(), true),
        ("subgroups", subgroups_html(), true),
        ("shift", shift_html(), false),
    ];
    for (name, html, two_series) in pages {
        for fetch in ["src=", "<link", "<script", "url("] {
            assert!(!html.contains(fetch), "{name}: offline report has {fetch}");
        }
        let path = dir.path().join(format!("{name}.html"));
        std::fs::write(&path, html).unwrap();
        let img = screenshot(&browser, &path, dir.path());
        let blue = pixels_near(&img, BLUE);
        assert!(
            blue > 200,
            "{name}: {blue} pixels of the first series' colour"
        );
        if two_series {
            let red = pixels_near(&img, VERMILLION);
            assert!(
                red > 200,
                "{name}: {red} pixels of the second series' colour"
            );
        }
    }
}
