//! The VLM route against a real HTTP server: a small OpenAI-compatible server started on
//! 127.0.0.1:0 answers with a fixed MAIRA-2 grounded text and records each request, so the
//! tests check the prompt, image parts and model name it received, the parsed sentences and
//! the box -> pixel mapping (hand-computed), and every way the endpoint can fail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use radlens_io::XrayImage;
use radlens_lm::openai::{
    AssistantMessage, ChatCompletion, ChatRequest, Choice, Content, ContentPart, Usage,
};
use radlens_lm::ClientConfig;
use radlens_report::vlm::{PixelRect, Study, VlmEndpoint, VlmTask, SYSTEM_PROMPT};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the test server answers.
#[derive(Clone)]
enum Behaviour {
    Answer(&'static str),
    ServerError,
    NotJson,
    Slow,
}

#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
}

async fn chat(State(s): State<Shared>, Json(req): Json<ChatRequest>) -> Response {
    s.requests.lock().unwrap().push(req.clone());
    match s.behaviour {
        Behaviour::Answer(text) => Json(ChatCompletion {
            id: "chatcmpl-test".into(),
            object: "chat.completion".into(),
            created: 0,
            model: format!("served:{}", req.model),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: text.into(),
                },
                finish_reason: "stop".into(),
            }],
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                total_tokens: 2,
            },
        })
        .into_response(),
        Behaviour::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"model crashed","type":"server_error"}}"#,
        )
            .into_response(),
        Behaviour::NotJson => "hello, not json".into_response(),
        Behaviour::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late".into_response()
        }
    }
}

/// A running server; dropped at the end of the test.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(behaviour: Behaviour) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(Shared {
                behaviour,
                requests: requests.clone(),
            });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            requests,
            _runtime: runtime,
        }
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn config(url: &str) -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(10),
        max_retries: 1,
        backoff: Duration::from_millis(10),
        ..ClientConfig::new(url)
    }
}

/// A `width` x `height` image whose pixel (x, y) is x / width.
fn ramp(width: usize, height: usize) -> XrayImage {
    let pixels = (0..width * height)
        .map(|i| (i % width) as f32 / width as f32)
        .collect();
    XrayImage::new(width, height, pixels).unwrap()
}

/// The image parts of a request, decoded from their data URLs.
fn images(req: &ChatRequest) -> Vec<image::GrayImage> {
    let Content::Parts(parts) = &req.messages[1].content else {
        panic!("the user turn has no parts");
    };
    parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::ImageUrl { image_url } => Some(&image_url.url),
            ContentPart::Text { .. } => None,
        })
        .map(|url| {
            let b64 = url.strip_prefix("data:image/png;base64,").expect(url);
            let png = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            image::load_from_memory(&png).unwrap().to_luma8()
        })
        .collect()
}

/// `r` is `[x_min, y_min, x_max, y_max]` (to rounding).
fn assert_rect(r: PixelRect, want: [f64; 4]) {
    let got = [r.x_min, r.y_min, r.x_max, r.y_max];
    assert!(
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9),
        "{got:?} != {want:?}"
    );
}

fn texts(req: &ChatRequest) -> Vec<String> {
    let Content::Parts(parts) = &req.messages[1].content else {
        panic!("the user turn has no parts");
    };
    parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } => Some(text.clone()),
            ContentPart::ImageUrl { .. } => None,
        })
        .collect()
}

const GROUNDED: &str = "<obj>Left pleural effusion.<box><x55><y45><x70><y56></box></obj> <obj>Right lower lobe opacity.<box><x10><y60><x30><y90></box><box><x0><y0><x99><y99></box></obj> No pneumothorax.";

#[test]
fn a_grounded_draft_is_asked_in_maira2_format_and_mapped_to_pixels() {
    let server = Server::start(Behaviour::Answer(GROUNDED));
    let vlm = VlmEndpoint::new(config(&server.url), "maira-2-test").unwrap();
    // 200 x 100: the centre-cropped square is x 50..150, y 0..100 (side 100).
    let frontal = ramp(200, 100);
    let prior = ramp(40, 30);
    let study = Study {
        prior_frontal: Some(&prior),
        prior_report: Some("No effusion."),
        indication: Some("Dyspnoea."),
        ..Study::frontal(&frontal)
    };
    let a = vlm.draft(&study, "current.png").unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.model, "maira-2-test");
    assert_eq!(req.max_tokens, Some(300));
    assert_eq!(req.temperature, Some(0.0));
    assert_eq!(req.messages[0].role, "system");
    assert_eq!(req.messages[0].content, Content::Text(SYSTEM_PROMPT.into()));
    assert_eq!(req.messages[1].role, "user");
    assert_eq!(
        texts(req),
        [
            "Given the current frontal image",
            " and the prior frontal image",
            " PRIOR_REPORT: No effusion. Provide a structured description of the findings in the radiology study in comparison to the prior frontal image. INDICATION: Dyspnoea. TECHNIQUE: N/A COMPARISON: N/A",
        ]
    );
    let imgs = images(req);
    assert_eq!(imgs.len(), 2);
    assert_eq!(imgs[0].dimensions(), (200, 100));
    assert_eq!(imgs[1].dimensions(), (40, 30));
    // pixel x of the ramp is round(255 x / width)
    assert_eq!(imgs[0].get_pixel(100, 7)[0], 128);
    assert_eq!(imgs[0].get_pixel(0, 99)[0], 0);

    assert!(a.ai_generated);
    assert_eq!(a.source, "vlm");
    assert_eq!(a.model, "maira-2-test");
    assert_eq!(a.served_model, "served:maira-2-test");
    assert_eq!(a.task, VlmTask::GroundedReport);
    assert_eq!(a.endpoint, server.url);
    assert_eq!(a.answer, GROUNDED);
    assert_eq!((a.width, a.height), (200, 100));
    let s = &a.sentences;
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].text, "Left pleural effusion.");
    assert_eq!(s[0].boxes[0].bins, [55, 45, 70, 56]);
    // bin n -> 50 + (n + 0.5) in x, (n + 0.5) in y
    assert_rect(s[0].boxes[0].pixels, [105.5, 45.5, 120.5, 56.5]);
    assert_eq!(s[1].boxes.len(), 2);
    assert_rect(s[1].boxes[0].pixels, [60.5, 60.5, 80.5, 90.5]);
    assert_rect(s[1].boxes[1].pixels, [50.5, 0.5, 149.5, 99.5]);
    assert!(s[0].grounded && s[1].grounded);
    assert!(!s[2].grounded && s[2].boxes.is_empty());
    assert_eq!(s[2].text, "No pneumothorax.");
    assert_eq!(a.grounded(), 2);
    let text = a.text();
    assert!(text.contains("model 'maira-2-test'"), "{text}");
    assert!(
        text.contains("x 105.5-120.5, y 45.5-56.5 (pixels of current.png)"),
        "{text}"
    );
    assert!(
        text.contains("ungrounded: the model gave no location"),
        "{text}"
    );
    assert_eq!(
        a.grounded_text(),
        "<obj>Left pleural effusion.<box><x55><y45><x70><y56></box></obj><obj>Right lower lobe opacity.<box><x10><y60><x30><y90></box><box><x00><y00><x99><y99></box></obj><obj>No pneumothorax.</obj>"
    );
}

#[test]
fn phrase_grounding_uses_maira2s_prompt_on_a_portrait_image() {
    let server = Server::start(Behaviour::Answer(
        "<obj>left costophrenic angle<box><x60><y80><x90><y99></box></obj>",
    ));
    let vlm = VlmEndpoint::new(config(&server.url), "grounder").unwrap();
    // 100 x 300: the square is x 0..100, y 100..200.
    let a = vlm
        .ground(&ramp(100, 300), "film.png", "left costophrenic angle")
        .unwrap();
    let req = &server.requests()[0];
    assert_eq!(
        texts(req),
        ["Given the current frontal image only", " Repeat the following finding as a grounded phrase with bounding boxes indicating all locations where it can be seen in the given chest X-ray image. Finding: left costophrenic angle"]
    );
    assert_eq!(images(req).len(), 1);
    assert_eq!(
        a.task,
        VlmTask::PhraseGrounding {
            phrase: "left costophrenic angle".into()
        }
    );
    assert_rect(a.sentences[0].boxes[0].pixels, [60.5, 180.5, 90.5, 199.5]);
}

#[test]
fn plain_text_answers_are_ungrounded_text_not_findings() {
    let server = Server::start(Behaviour::Answer(
        "The heart is normal in size. The lungs are clear.",
    ));
    let vlm = VlmEndpoint::new(config(&server.url), "text-model").unwrap();
    let a = vlm.draft(&Study::frontal(&ramp(64, 64)), "f.png").unwrap();
    assert_eq!(a.sentences.len(), 2);
    assert!(a.sentences.iter().all(|s| !s.grounded));
    assert_eq!(a.grounded(), 0);
    assert!(a.note.contains("not as findings"), "{}", a.note);
}

fn error_of(r: radlens_report::Result<radlens_report::vlm::VlmAnswer>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn failing_endpoints_are_clear_errors_naming_the_endpoint() {
    let img = ramp(32, 32);
    let study = Study::frontal(&img);

    // Closed port: bind, note the port, close it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let e = error_of(
        VlmEndpoint::new(config(&closed), "m")
            .unwrap()
            .draft(&study, "f.png"),
    );
    assert!(
        e.starts_with(&format!("VLM endpoint {closed}/chat/completions:")),
        "{e}"
    );
    assert!(
        e.contains("request failed") && e.contains("nothing was drafted"),
        "{e}"
    );

    // HTTP 500: retried, then reported with the server's message.
    let s = Server::start(Behaviour::ServerError);
    let e = error_of(
        VlmEndpoint::new(config(&s.url), "m")
            .unwrap()
            .draft(&study, "f.png"),
    );
    assert!(
        e.contains(&s.url) && e.contains("HTTP 500") && e.contains("model crashed"),
        "{e}"
    );
    assert_eq!(s.requests().len(), 2, "one retry");

    // Malformed grounded output.
    let s = Server::start(Behaviour::Answer(
        "<obj>Effusion<box><x12><y88></box></obj>",
    ));
    let e = error_of(
        VlmEndpoint::new(config(&s.url), "m")
            .unwrap()
            .draft(&study, "f.png"),
    );
    assert!(
        e.contains(&s.url) && e.contains("not MAIRA-2's grounded format"),
        "{e}"
    );
    assert!(e.contains("malformed box"), "{e}");

    // An empty answer is no report.
    let s = Server::start(Behaviour::Answer("  "));
    let e = error_of(
        VlmEndpoint::new(config(&s.url), "m")
            .unwrap()
            .draft(&study, "f.png"),
    );
    assert!(e.contains("the answer is empty"), "{e}");

    // A reply that is not JSON.
    let s = Server::start(Behaviour::NotJson);
    let e = error_of(
        VlmEndpoint::new(config(&s.url), "m")
            .unwrap()
            .draft(&study, "f.png"),
    );
    assert!(
        e.contains(&s.url) && e.contains("malformed JSON reply"),
        "{e}"
    );

    // Timeout.
    let s = Server::start(Behaviour::Slow);
    let cfg = ClientConfig {
        timeout: Duration::from_millis(300),
        max_retries: 0,
        ..config(&s.url)
    };
    let e = error_of(VlmEndpoint::new(cfg, "m").unwrap().draft(&study, "f.png"));
    assert!(e.contains(&s.url) && e.contains("no reply within"), "{e}");

    // Not http://, or no model name.
    let e = VlmEndpoint::new(config("https://example.org/v1"), "m")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("only http://"), "{e}");
    let e = VlmEndpoint::new(config(&closed), " ")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no model name"), "{e}");
}
