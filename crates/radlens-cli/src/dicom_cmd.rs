//! `radlens dicom ...`: inspect a DICOM file and export a frame as PNG.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use radlens_io::dicom::{write_display_png, write_raw_png, DicomFile, DicomInfo};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DicomCommand {
    /// Print identifiers, acquisition and pixel attributes (no pixels are decoded).
    Info(InfoArgs),
    /// Write one frame as PNG: the windowed greyscale the models take, or --raw values.
    Export(ExportArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// DICOM file.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// DICOM file.
    file: PathBuf,
    /// PNG to write.
    #[arg(long)]
    out: PathBuf,
    /// Stored values after the modality LUT as 16-bit greyscale (shifted to fit when
    /// negative), or RGB for colour, instead of the display-ready greyscale.
    #[arg(long)]
    raw: bool,
    /// Frame of a multi-frame file, from 0.
    #[arg(long, default_value_t = 0)]
    frame: usize,
}

pub fn run(cmd: DicomCommand) -> Result<()> {
    match cmd {
        DicomCommand::Info(args) => info(args),
        DicomCommand::Export(args) => export(args),
    }
}

fn info(args: InfoArgs) -> Result<()> {
    let info = DicomFile::open(&args.file)?.info();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", text(&info));
    }
    Ok(())
}

fn text(i: &DicomInfo) -> String {
    let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let n = |v: Option<i64>| v.map_or("-".into(), |v| v.to_string());
    let ts = &i.transfer_syntax;
    let lines = [
        ("patient id", s(&i.patient_id)),
        ("study instance uid", s(&i.study_instance_uid)),
        ("series instance uid", s(&i.series_instance_uid)),
        ("sop instance uid", s(&i.sop_instance_uid)),
        ("modality", s(&i.modality)),
        ("view position", s(&i.view_position)),
        ("body part", s(&i.body_part_examined)),
        (
            "rows x columns",
            format!("{} x {}", n(i.rows), n(i.columns)),
        ),
        ("frames", n(i.number_of_frames.or(i.rows.map(|_| 1)))),
        ("samples per pixel", n(i.samples_per_pixel)),
        (
            "bits allocated / stored",
            format!("{} / {}", n(i.bits_allocated), n(i.bits_stored)),
        ),
        (
            "pixel representation",
            match i.pixel_representation {
                Some(0) => "unsigned".into(),
                Some(1) => "signed".into(),
                v => n(v),
            },
        ),
        ("photometric", s(&i.photometric_interpretation)),
        (
            "transfer syntax",
            format!(
                "{} ({}){}",
                ts.uid,
                ts.name.as_deref().unwrap_or("unknown"),
                if ts.decodable { "" } else { ", no decoder" }
            ),
        ),
        (
            "pixel spacing",
            i.pixel_spacing.map_or("-".into(), |p| {
                format!("{} x {} mm (row x column)", p.row_mm, p.col_mm)
            }),
        ),
        (
            "rescale",
            match (i.rescale_slope, i.rescale_intercept) {
                (None, None) => "-".into(),
                (sl, ic) => format!(
                    "slope {} intercept {}",
                    sl.unwrap_or(1.0),
                    ic.unwrap_or(0.0)
                ),
            },
        ),
        (
            "window",
            i.window.map_or("-".into(), |w| {
                format!("center {} width {}", w.center, w.width)
            }),
        ),
        ("voi lut sequence", yes_no(i.has_voi_lut_sequence)),
        ("modality lut sequence", yes_no(i.has_modality_lut_sequence)),
        ("pixel data", yes_no(i.has_pixel_data)),
    ];
    lines
        .iter()
        .map(|(k, v)| format!("{k:<24} {v}\n"))
        .collect()
}

fn yes_no(b: bool) -> String {
    (if b { "yes" } else { "no" }).into()
}

fn export(args: ExportArgs) -> Result<()> {
    let file = DicomFile::open(&args.file)?;
    if args.raw {
        let png = write_raw_png(&file.raw_frame(args.frame)?, &args.out)?;
        let mut note = format!("{}-bit", png.bits);
        if png.offset != 0 {
            note.push_str(&format!(", values shifted by +{} to fit", png.offset));
        }
        if png.rounded {
            note.push_str(", fractional modality values rounded");
        }
        println!("wrote {} ({note})", args.out.display());
    } else {
        let image = file.display_frame(args.frame)?;
        write_display_png(&image, &args.out)
            .with_context(|| format!("writing {}", args.out.display()))?;
        println!("wrote {} (16-bit display greyscale)", args.out.display());
    }
    Ok(())
}
