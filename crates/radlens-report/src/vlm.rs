//! The optional VLM route: a draft report or a phrase grounding asked of a vision-language
//! model behind any OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama serving
//! MAIRA-2 or another grounded model), in MAIRA-2's prompt format with the images as
//! data-URL parts, and the grounded answer (`<obj>text<box><xNN><yNN><xNN><yNN></box></obj>`)
//! parsed back into sentences whose evidence is the box the model drew, mapped from MAIRA-2's
//! 100-bin grid on the centre-cropped square back to the image's pixels.
//!
//! Everything here is the model's claim, not a radlens measurement: answers are marked as
//! VLM output with the endpoint and model name, ungrounded text stays ungrounded text, and
//! an endpoint that fails or an answer that is not MAIRA-2's format is an error naming the
//! endpoint, never a finding.

use crate::error::{ReportError, Result};
use crate::text::sentences;
use base64::Engine;
use radlens_io::XrayImage;
use radlens_lm::client::{ChatClient, ClientConfig};
use radlens_lm::error::LmError;
use radlens_lm::openai::{ChatMessage, ChatRequest, Content, ContentPart, ImageUrl};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// MAIRA-2's system turn.
pub const SYSTEM_PROMPT: &str =
    "You are an expert radiology assistant tasked with interpreting a chest X-ray study.";

/// MAIRA-2's phrase-grounding instruction; the phrase follows it.
const GROUNDING_INSTRUCTION: &str = " Repeat the following finding as a grounded phrase with bounding boxes indicating all locations where it can be seen in the given chest X-ray image. Finding: ";

/// Written in the prompt for an image part (for the record of what was asked).
pub const IMAGE_MARKER: &str = "<image>";

/// A study as MAIRA-2 reads it: up to three images, the prior report and the current
/// report's indication, technique and comparison sections (missing ones are "N/A").
#[derive(Clone, Copy)]
pub struct Study<'a> {
    pub frontal: &'a XrayImage,
    pub lateral: Option<&'a XrayImage>,
    pub prior_frontal: Option<&'a XrayImage>,
    pub prior_report: Option<&'a str>,
    pub indication: Option<&'a str>,
    pub technique: Option<&'a str>,
    pub comparison: Option<&'a str>,
}

impl<'a> Study<'a> {
    /// The current frontal image alone.
    pub fn frontal(image: &'a XrayImage) -> Self {
        Self {
            frontal: image,
            lateral: None,
            prior_frontal: None,
            prior_report: None,
            indication: None,
            technique: None,
            comparison: None,
        }
    }
}

/// One part of a prompt, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptPart<'a> {
    Text(String),
    Image(&'a XrayImage),
}

/// A prompt under construction: adjacent text is joined into one part.
#[derive(Default)]
struct Prompt<'a>(Vec<PromptPart<'a>>);

impl<'a> Prompt<'a> {
    fn text(&mut self, t: &str) {
        match self.0.last_mut() {
            Some(PromptPart::Text(last)) => last.push_str(t),
            _ => self.0.push(PromptPart::Text(t.to_string())),
        }
    }

    fn image(&mut self, image: &'a XrayImage) {
        self.0.push(PromptPart::Image(image));
    }

    /// "Given the current frontal image<image> the current lateral image<image> and the prior
    /// frontal image<image>", or "Given the current frontal image only<image>".
    fn images(&mut self, study: &Study<'a>) {
        if study.lateral.is_none() && study.prior_frontal.is_none() {
            self.text("Given the current frontal image only");
            self.image(study.frontal);
            return;
        }
        self.text("Given the current frontal image");
        self.image(study.frontal);
        if let Some(l) = study.lateral {
            self.text(" the current lateral image");
            self.image(l);
        }
        if let Some(p) = study.prior_frontal {
            self.text(" and the prior frontal image");
            self.image(p);
        }
    }
}

fn section(text: Option<&str>) -> &str {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("N/A")
}

/// MAIRA-2's grounded-reporting prompt for `study`.
pub fn reporting_prompt<'a>(study: &Study<'a>) -> Vec<PromptPart<'a>> {
    let mut p = Prompt::default();
    p.images(study);
    if let Some(r) = study.prior_report.filter(|r| !r.trim().is_empty()) {
        p.text(&format!(" PRIOR_REPORT: {}", r.trim()));
    }
    let comparison = if study.prior_frontal.is_some() {
        " in comparison to the prior frontal image"
    } else {
        ""
    };
    p.text(&format!(
        " Provide a structured description of the findings in the radiology study{comparison}. INDICATION: {} TECHNIQUE: {} COMPARISON: {}",
        section(study.indication),
        section(study.technique),
        section(study.comparison)
    ));
    p.0
}

/// MAIRA-2's phrase-grounding prompt: where can `phrase` be seen on `image`.
pub fn grounding_prompt<'a>(image: &'a XrayImage, phrase: &str) -> Vec<PromptPart<'a>> {
    let mut p = Prompt::default();
    p.images(&Study::frontal(image));
    p.text(GROUNDING_INSTRUCTION);
    p.text(phrase.trim());
    p.0
}

/// The prompt as text, each image written as [`IMAGE_MARKER`].
pub fn prompt_text(parts: &[PromptPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            PromptPart::Text(t) => t.as_str(),
            PromptPart::Image(_) => IMAGE_MARKER,
        })
        .collect()
}

/// `image` as an 8-bit greyscale PNG in a `data:` URL.
pub fn png_data_url(image: &XrayImage) -> Result<String> {
    let pixels: Vec<u8> = image
        .pixels
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let gray = image::GrayImage::from_raw(image.width as u32, image.height as u32, pixels)
        .ok_or_else(|| ReportError::Invalid("image buffer does not match its size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    gray.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| ReportError::Invalid(format!("cannot encode the image as PNG: {e}")))?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png.into_inner())
    ))
}

/// MAIRA-2's grid: 100 bins along each side of the image's centre-cropped square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquareCrop {
    /// Left and top edge of the square in the image, pixels.
    pub x0: f64,
    pub y0: f64,
    pub side: f64,
}

impl SquareCrop {
    pub fn of(width: usize, height: usize) -> Self {
        let side = width.min(height) as f64;
        Self {
            x0: (width as f64 - side) / 2.0,
            y0: (height as f64 - side) / 2.0,
            side,
        }
    }

    /// The centre of bin `n` ((n + 0.5) / 100 of the side) as an image x coordinate
    /// (pixel i spans [i, i + 1)).
    pub fn x(&self, n: u8) -> f64 {
        self.x0 + (f64::from(n) + 0.5) * self.side / 100.0
    }

    pub fn y(&self, n: u8) -> f64 {
        self.y0 + (f64::from(n) + 0.5) * self.side / 100.0
    }
}

/// A rectangle in the image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelRect {
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
}

/// A box the model drew: MAIRA-2's bins and the image region they mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VlmBox {
    /// x_min, y_min, x_max, y_max on the 100-bin grid.
    pub bins: [u8; 4],
    pub pixels: PixelRect,
}

impl VlmBox {
    pub fn new(bins: [u8; 4], crop: SquareCrop) -> Self {
        let [x0, y0, x1, y1] = bins;
        Self {
            bins,
            pixels: PixelRect {
                x_min: crop.x(x0),
                y_min: crop.y(y0),
                x_max: crop.x(x1),
                y_max: crop.y(y1),
            },
        }
    }
}

/// One sentence of the model's answer, with the boxes that ground it (none: ungrounded text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmSentence {
    pub text: String,
    pub grounded: bool,
    pub boxes: Vec<VlmBox>,
}

/// A phrase of a grounded answer with its boxes on the 100-bin grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPhrase {
    pub text: String,
    pub bins: Vec<[u8; 4]>,
}

static OBJ: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<obj>(.*?)</obj>").expect("valid regex"));
static BOX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*<box>\s*<x([0-9]{1,2})>\s*<y([0-9]{1,2})>\s*<x([0-9]{1,2})>\s*<y([0-9]{1,2})>\s*</box>")
        .unwrap()
});
/// Any tag of the grounded format.
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"</?(obj|box)>|<[xy][0-9]+>").unwrap());

/// Plain text outside `<obj>`s: its sentences, ungrounded; a stray tag is an error.
fn plain(text: &str, out: &mut Vec<ParsedPhrase>) -> std::result::Result<(), String> {
    if let Some(t) = TAG.find(text) {
        return Err(match t.as_str() {
            "<obj>" => "an <obj> is not closed".to_string(),
            t => format!("'{t}' outside an <obj>...</obj>"),
        });
    }
    out.extend(sentences(text).into_iter().map(|s| ParsedPhrase {
        text: s.text.to_string(),
        bins: vec![],
    }));
    Ok(())
}

/// One `<obj>` body: text, then its boxes and nothing else.
fn object(body: &str) -> std::result::Result<ParsedPhrase, String> {
    let cut = body.find("<box>").unwrap_or(body.len());
    let text = body[..cut].trim();
    if let Some(t) = TAG.find(text) {
        return Err(format!("'{}' inside the text of an <obj>", t.as_str()));
    }
    if text.is_empty() {
        return Err("an <obj> without text".into());
    }
    let mut rest = &body[cut..];
    let mut bins = Vec::new();
    while !rest.trim().is_empty() {
        let c = BOX.captures(rest).ok_or_else(|| {
            let head: String = rest.trim().chars().take(60).collect();
            format!("malformed box in the <obj> '{text}': {head:?}")
        })?;
        let n = |i: usize| c[i].parse::<u8>().expect("one or two digits");
        let b = [n(1), n(2), n(3), n(4)];
        if b[0] > b[2] || b[1] > b[3] {
            return Err(format!(
                "box <x{}><y{}><x{}><y{}> of '{text}' has its minimum after its maximum",
                b[0], b[1], b[2], b[3]
            ));
        }
        bins.push(b);
        rest = &rest[c.get(0).expect("match").end()..];
    }
    Ok(ParsedPhrase {
        text: text.to_string(),
        bins,
    })
}

/// Parse an answer in MAIRA-2's grounded format: `<obj>text<box>...</box>...</obj>`
/// phrases with their boxes, and plain text (split into sentences) or `<obj>text</obj>` as
/// ungrounded phrases. Unbalanced or malformed tags, and an empty answer, are errors.
pub fn parse_grounded(answer: &str) -> std::result::Result<Vec<ParsedPhrase>, String> {
    if answer.trim().is_empty() {
        return Err("the answer is empty".into());
    }
    let mut out = Vec::new();
    let mut at = 0;
    for m in OBJ.captures_iter(answer) {
        let whole = m.get(0).expect("match");
        plain(&answer[at..whole.start()], &mut out)?;
        let body = &m[1];
        if body.contains("<obj>") {
            return Err("an <obj> is not closed before the next one".into());
        }
        out.push(object(body)?);
        at = whole.end();
    }
    plain(&answer[at..], &mut out)?;
    if out.is_empty() {
        return Err("the answer holds no text".into());
    }
    Ok(out)
}

/// What the model was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum VlmTask {
    /// MAIRA-2's grounded report of the study's findings.
    GroundedReport,
    /// MAIRA-2's phrase grounding of `phrase`.
    PhraseGrounding { phrase: String },
}

/// A VLM's answer, parsed: always AI output, of the model named, never a radlens measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmAnswer {
    pub ai_generated: bool,
    /// `vlm`: written by the model, not measured by radlens.
    pub source: String,
    pub endpoint: String,
    /// The model asked for, and the model the server says answered.
    pub model: String,
    pub served_model: String,
    pub task: VlmTask,
    /// The image the boxes refer to, and its size in pixels.
    pub image: String,
    pub width: usize,
    pub height: usize,
    /// The prompt sent, images written as `<image>`.
    pub prompt: String,
    pub sentences: Vec<VlmSentence>,
    /// The model's answer as received.
    pub answer: String,
    pub note: String,
}

impl VlmAnswer {
    /// Sentences with at least one box.
    pub fn grounded(&self) -> usize {
        self.sentences.iter().filter(|s| s.grounded).count()
    }

    /// The answer as text, marked as the model's output, each sentence with its boxes in
    /// the image's pixels or marked as ungrounded.
    pub fn text(&self) -> String {
        let mut out = format!(
            "[AI OUTPUT - model '{}' at {}; written by the model, not measured by radlens; every sentence needs a radiologist's review]\n",
            self.model, self.endpoint
        );
        for s in &self.sentences {
            out += &format!("- {}\n", s.text);
            if s.boxes.is_empty() {
                out += "  ungrounded: the model gave no location\n";
            }
            for b in &s.boxes {
                let p = b.pixels;
                out += &format!(
                    "  located by the model: x {:.1}-{:.1}, y {:.1}-{:.1} (pixels of {})\n",
                    p.x_min, p.x_max, p.y_min, p.y_max, self.image
                );
            }
        }
        out + &self.note + "\n"
    }

    /// The sentences in MAIRA-2's grounded format again.
    pub fn grounded_text(&self) -> String {
        self.sentences
            .iter()
            .map(|s| {
                let boxes: String = s
                    .boxes
                    .iter()
                    .map(|b| {
                        let [x0, y0, x1, y1] = b.bins;
                        format!("<box><x{x0:02}><y{y0:02}><x{x1:02}><y{y1:02}></box>")
                    })
                    .collect();
                format!("<obj>{}{boxes}</obj>", s.text)
            })
            .collect()
    }
}

/// A chat endpoint serving a grounded VLM, and the model to ask.
pub struct VlmEndpoint {
    client: ChatClient,
    url: String,
    model: String,
    /// Most tokens of an answer.
    pub max_tokens: usize,
}

impl VlmEndpoint {
    /// `cfg.base_url` ends in the API version (`http://host:port/v1`).
    pub fn new(cfg: ClientConfig, model: &str) -> Result<Self> {
        let url = cfg.base_url.trim_end_matches('/').to_string();
        if model.trim().is_empty() {
            return Err(ReportError::Vlm {
                endpoint: url,
                reason: "no model name given".into(),
            });
        }
        let client = ChatClient::new(cfg).map_err(|e| lm_error(&url, e))?;
        Ok(Self {
            client,
            url,
            model: model.to_string(),
            max_tokens: 300,
        })
    }

    /// MAIRA-2's grounded report of `study`; boxes refer to the current frontal image,
    /// named `image`.
    pub fn draft(&self, study: &Study, image: &str) -> Result<VlmAnswer> {
        self.ask(
            reporting_prompt(study),
            study.frontal,
            image,
            VlmTask::GroundedReport,
        )
    }

    /// MAIRA-2's phrase grounding of `phrase` on `frontal`, named `image`.
    pub fn ground(&self, frontal: &XrayImage, image: &str, phrase: &str) -> Result<VlmAnswer> {
        if phrase.trim().is_empty() {
            return Err(ReportError::Invalid("the phrase to ground is empty".into()));
        }
        self.ask(
            grounding_prompt(frontal, phrase),
            frontal,
            image,
            VlmTask::PhraseGrounding {
                phrase: phrase.trim().to_string(),
            },
        )
    }

    fn ask(
        &self,
        parts: Vec<PromptPart>,
        frontal: &XrayImage,
        image: &str,
        task: VlmTask,
    ) -> Result<VlmAnswer> {
        let content = parts
            .iter()
            .map(|p| {
                Ok(match p {
                    PromptPart::Text(text) => ContentPart::Text { text: text.clone() },
                    PromptPart::Image(img) => ContentPart::ImageUrl {
                        image_url: ImageUrl {
                            url: png_data_url(img)?,
                            detail: None,
                        },
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut request = ChatRequest::new(
            &self.model,
            vec![
                ChatMessage::system(SYSTEM_PROMPT),
                ChatMessage {
                    role: "user".into(),
                    content: Content::Parts(content),
                },
            ],
        );
        request.max_tokens = Some(self.max_tokens);
        request.temperature = Some(0.0);
        let reply = self
            .client
            .chat(&request)
            .map_err(|e| lm_error(&self.url, e))?;
        let bad = |reason: String| ReportError::Vlm {
            endpoint: self.url.clone(),
            reason,
        };
        let choice = reply
            .choices
            .first()
            .ok_or_else(|| bad("the reply holds no answer (no choices)".into()))?;
        let answer = choice.message.content.clone();
        let phrases = parse_grounded(&answer).map_err(|why| {
            let head: String = answer.chars().take(160).collect();
            let cut = if choice.finish_reason == "length" {
                format!(" (cut at max_tokens {})", self.max_tokens)
            } else {
                String::new()
            };
            bad(format!(
                "the answer of model '{}' is not MAIRA-2's grounded format{cut}: {why}; answer: {head:?}",
                self.model
            ))
        })?;
        let crop = SquareCrop::of(frontal.width, frontal.height);
        let sentences: Vec<VlmSentence> = phrases
            .into_iter()
            .map(|p| VlmSentence {
                grounded: !p.bins.is_empty(),
                boxes: p.bins.into_iter().map(|b| VlmBox::new(b, crop)).collect(),
                text: p.text,
            })
            .collect();
        let grounded = sentences.iter().filter(|s| s.grounded).count();
        let note = if grounded == 0 {
            format!(
                "Model '{}' gave no grounded finding: its {} sentence(s) are shown as ungrounded text, not as findings.",
                self.model,
                sentences.len()
            )
        } else {
            format!(
                "{grounded} of {} sentence(s) grounded by model '{}'; boxes are the model's (MAIRA-2's 100-bin grid on the centre-cropped square, mapped back to the image's pixels), not radlens measurements.",
                sentences.len(),
                self.model
            )
        };
        Ok(VlmAnswer {
            ai_generated: true,
            source: "vlm".into(),
            endpoint: self.url.clone(),
            model: self.model.clone(),
            served_model: reply.model,
            task,
            image: image.to_string(),
            width: frontal.width,
            height: frontal.height,
            prompt: prompt_text(&parts),
            sentences,
            answer,
            note,
        })
    }
}

fn lm_error(url: &str, e: LmError) -> ReportError {
    match e {
        LmError::Endpoint { url, reason } => ReportError::Vlm {
            endpoint: url,
            reason,
        },
        e => ReportError::Vlm {
            endpoint: url.to_string(),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounded_answers_parse_into_phrases_and_boxes() {
        let p = parse_grounded(
            "<obj>Left pleural effusion.<box><x55><y45><x70><y56></box><box><x5><y6><x7><y8></box></obj> <obj>No pneumothorax.</obj> Heart size is normal. Lungs are clear.",
        )
        .unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].text, "Left pleural effusion.");
        assert_eq!(p[0].bins, vec![[55, 45, 70, 56], [5, 6, 7, 8]]);
        assert_eq!(p[1].bins, Vec::<[u8; 4]>::new());
        assert_eq!(p[2].text, "Heart size is normal.");
        assert_eq!(p[3].text, "Lungs are clear.");
    }

    #[test]
    fn malformed_grounded_answers_are_errors() {
        for (answer, why) in [
            ("", "empty"),
            ("  \n", "empty"),
            ("<obj>Effusion<box><x12><y88></box></obj>", "malformed box"),
            (
                "<obj>Effusion<box><x120><y8><x1><y2></box></obj>",
                "malformed box",
            ),
            (
                "<obj>Effusion<box><x50><y8><x10><y20></box></obj>",
                "minimum after",
            ),
            ("<obj>Effusion<box><x1><y2><x3><y4></box>", "not closed"),
            ("Effusion</obj>", "outside"),
            ("<obj><box><x1><y2><x3><y4></box></obj>", "without text"),
            ("<obj>a <obj>b</obj>", "not closed"),
            (
                "<obj>a<box><x1><y2><x3><y4></box> trailing</obj>",
                "malformed box",
            ),
        ] {
            let e = parse_grounded(answer).unwrap_err();
            assert!(e.contains(why), "{answer:?}: {e}");
        }
    }

    #[test]
    fn bins_map_to_the_centre_cropped_square() {
        // 200 x 100 (landscape): the square is x 50..150, y 0..100.
        let c = SquareCrop::of(200, 100);
        assert_eq!((c.x0, c.y0, c.side), (50.0, 0.0, 100.0));
        assert_eq!(c.x(0), 50.5);
        assert_eq!(c.x(99), 149.5);
        assert_eq!(c.y(45), 45.5);
        // 300 x 500 (portrait): x 0..300, y 100..400; bin 10 -> 10.5% of 300.
        let c = SquareCrop::of(300, 500);
        assert!((c.y(10) - (100.0 + 31.5)).abs() < 1e-9);
        assert!((c.x(10) - 31.5).abs() < 1e-9);
    }

    #[test]
    fn prompts_follow_maira2() {
        let img = XrayImage::new(2, 2, vec![0.0; 4]).unwrap();
        let only = reporting_prompt(&Study::frontal(&img));
        assert_eq!(
            prompt_text(&only),
            "Given the current frontal image only<image> Provide a structured description of the findings in the radiology study. INDICATION: N/A TECHNIQUE: N/A COMPARISON: N/A"
        );
        let study = Study {
            lateral: Some(&img),
            prior_frontal: Some(&img),
            prior_report: Some("Clear lungs."),
            indication: Some("Cough."),
            ..Study::frontal(&img)
        };
        let full = reporting_prompt(&study);
        assert_eq!(full.len(), 7); // text, image, text, image, text, image, text
        assert_eq!(
            prompt_text(&full),
            "Given the current frontal image<image> the current lateral image<image> and the prior frontal image<image> PRIOR_REPORT: Clear lungs. Provide a structured description of the findings in the radiology study in comparison to the prior frontal image. INDICATION: Cough. TECHNIQUE: N/A COMPARISON: N/A"
        );
        assert_eq!(
            prompt_text(&grounding_prompt(&img, " left effusion ")),
            "Given the current frontal image only<image> Repeat the following finding as a grounded phrase with bounding boxes indicating all locations where it can be seen in the given chest X-ray image. Finding: left effusion"
        );
    }
}
