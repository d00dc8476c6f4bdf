//! Greyscale transforms (PS3.3 C.11): the modality LUT (rescale or a LUT sequence) from
//! stored values to modality units, and the VOI transform (a VOI LUT sequence, or a
//! window with its LINEAR / LINEAR_EXACT / SIGMOID function) from there to display.

use super::attrs::{floats, string};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use dicom_object::DefaultDicomObject;

/// A lookup table as the LUT Descriptor (first entry count, first mapped value, bits) and
/// LUT Data define it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lut {
    pub first: i64,
    pub entries: Vec<f64>,
    pub bits: u16,
}

impl Lut {
    /// Values below the first mapped value take the first entry, above the last the last.
    pub fn apply(&self, v: f64) -> f64 {
        let i = (v.floor() as i64 - self.first).clamp(0, self.entries.len() as i64 - 1);
        self.entries[i as usize]
    }

    /// Read a LUT from its descriptor and data elements of `obj` (a sequence item, or the
    /// data set itself for palette colour); `what` names it in errors.
    pub fn read(
        obj: &InMemDicomObject,
        descriptor: Tag,
        data: Tag,
        what: &str,
    ) -> Result<Self, String> {
        let d: Vec<i64> = obj
            .element_opt(descriptor)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or(format!(
                "{what}: LUT descriptor {descriptor} is missing or malformed"
            ))?;
        let declared = if d[0] == 0 { 65536 } else { d[0] as usize };
        let bits = d[2].clamp(1, 16) as u16;
        let bytes = obj
            .element_opt(data)
            .ok()
            .flatten()
            .ok_or(format!("{what}: LUT data {data} is missing"))?
            .to_bytes()
            .map_err(|e| format!("{what}: LUT data {data}: {e}"))?;
        // 8-bit entries may be packed one per byte; otherwise one per 16-bit word.
        let entries: Vec<f64> = if bits <= 8 && bytes.len() == declared {
            bytes.iter().map(|&b| f64::from(b)).collect()
        } else {
            bytes
                .chunks_exact(2)
                .take(declared)
                .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect()
        };
        if entries.len() != declared {
            return Err(format!(
                "{what}: LUT data holds {} entries, the descriptor declares {declared}",
                entries.len()
            ));
        }
        Ok(Self {
            first: d[1],
            entries,
            bits,
        })
    }

    fn in_item(item: &InMemDicomObject, what: &str) -> Result<Self, String> {
        Self::read(item, tags::LUT_DESCRIPTOR, tags::LUT_DATA, what)
    }
}

fn first_item(obj: &DefaultDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.element_opt(tag).ok()??.items()?.first()
}

/// Stored values to modality units (Hounsfield units, optical density, or unchanged).
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityLut {
    Identity,
    Rescale { slope: f64, intercept: f64 },
    Table(Lut),
}

impl ModalityLut {
    /// The Modality LUT Sequence when present, else Rescale Slope/Intercept.
    pub fn of(obj: &DefaultDicomObject) -> Result<Self, String> {
        if let Some(item) = first_item(obj, tags::MODALITY_LUT_SEQUENCE) {
            return Ok(Self::Table(Lut::in_item(item, "Modality LUT Sequence")?));
        }
        let slope = floats(obj, tags::RESCALE_SLOPE).and_then(|v| v.first().copied());
        let intercept = floats(obj, tags::RESCALE_INTERCEPT).and_then(|v| v.first().copied());
        Ok(match (slope, intercept) {
            (None, None) => Self::Identity,
            (s, i) => Self::Rescale {
                slope: s.unwrap_or(1.0),
                intercept: i.unwrap_or(0.0),
            },
        })
    }

    pub fn apply(&self, v: f64) -> f64 {
        match self {
            Self::Identity => v,
            Self::Rescale { slope, intercept } => v * slope + intercept,
            Self::Table(lut) => lut.apply(v),
        }
    }
}

/// The VOI LUT Function of a window (tag 0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// A VOI window (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: WindowFunction,
}

impl Window {
    /// A LINEAR window.
    pub fn linear(center: f64, width: f64) -> Self {
        Self {
            center,
            width,
            function: WindowFunction::Linear,
        }
    }

    /// Map a modality value to [0, 1] with the window's function.
    pub fn apply(&self, v: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            WindowFunction::Linear => {
                let w = (w - 1.0).max(1e-6);
                ((v - (c - 0.5)) / w + 0.5).clamp(0.0, 1.0)
            }
            WindowFunction::LinearExact => ((v - c) / w.max(1e-6) + 0.5).clamp(0.0, 1.0),
            WindowFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (v - c) / w.max(1e-6)).exp()),
        }
    }

    /// The file's first window, if it has a valid one.
    pub fn of(obj: &DefaultDicomObject) -> Option<Self> {
        let c = *floats(obj, tags::WINDOW_CENTER)?.first()?;
        let w = *floats(obj, tags::WINDOW_WIDTH)?.first()?;
        let function = match string(obj, tags::VOILUT_FUNCTION).as_deref() {
            Some("LINEAR_EXACT") => WindowFunction::LinearExact,
            Some("SIGMOID") => WindowFunction::Sigmoid,
            _ => WindowFunction::Linear,
        };
        (c.is_finite() && w.is_finite() && w > 0.0).then_some(Self {
            center: c,
            width: w,
            function,
        })
    }
}

/// Modality values to display intensities in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    /// The first VOI LUT Sequence item, its output scaled by 2^bits - 1.
    Table(Lut),
    Window(Window),
    /// Neither: the frame's own minimum and maximum.
    MinMax,
}

impl Voi {
    /// A VOI LUT Sequence takes precedence over a window, as in most viewers.
    pub fn of(obj: &DefaultDicomObject) -> Result<Self, String> {
        if let Some(item) = first_item(obj, tags::VOILUT_SEQUENCE) {
            return Ok(Self::Table(Lut::in_item(item, "VOI LUT Sequence")?));
        }
        Ok(Window::of(obj).map_or(Self::MinMax, Self::Window))
    }

    /// Apply to a frame's modality values.
    pub fn apply(&self, values: &[f64]) -> Vec<f32> {
        match self {
            Self::Table(lut) => {
                let max = lut
                    .entries
                    .iter()
                    .fold(f64::from((1u32 << lut.bits) - 1), |m, &e| m.max(e));
                values
                    .iter()
                    .map(|&v| (lut.apply(v) / max) as f32)
                    .collect()
            }
            Self::Window(w) => values.iter().map(|&v| w.apply(v) as f32).collect(),
            Self::MinMax => {
                let (lo, hi) = values
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                        (a.min(v), b.max(v))
                    });
                let span = (hi - lo).max(1e-12);
                values.iter().map(|&v| ((v - lo) / span) as f32).collect()
            }
        }
    }
}
