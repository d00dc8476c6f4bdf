//! `radlens lm serve` on loopback with the real SmolLM2 GGUF, called through radlens-lm's
//! OpenAI client (and raw HTTP for malformed requests); the client's failure handling
//! against sockets that never answer or answer garbage.

mod common;

use candle_core::Device;
use common::lm;
use radlens_interp::serve::{ServeConfig, Server};
use radlens_interp::steer::HookedSae;
use radlens_interp::steer_sweep::{steer_sweep, Judge, SweepConfig};
use radlens_interp::window::{Template, WindowSpec};
use radlens_lm::openai::{
    ChatMessage, ChatRequest, Content, ContentPart, ErrorBody, ImageUrl, Intervention, Steer,
    SteerMode,
};
use radlens_lm::{ChatClient, ClientConfig, GenerationConfig, HookPoint, Hooks, LmError};
use radlens_sae::tokens::{TokenFilter, TokenPolicy};
use radlens_sae::{Activation, Sae, SaeConfig};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MODEL_ID: &str = "smollm2-135m";
const LAYER: usize = 10;

/// A ReLU SAE with tied weights and zero biases (seeded): feature f's activation is
/// `relu(scale * x . w_f)`, so clamping can be checked by hand.
fn tied_sae() -> HookedSae {
    let d = lm().model.config().hidden_size;
    let cfg = SaeConfig::plain(
        d,
        64,
        Activation::Relu {
            l1_coefficient: 0.0,
        },
    )
    .unwrap();
    HookedSae {
        sae: Arc::new(Sae::new(cfg, 7).unwrap()),
        layer: LAYER,
        filter: TokenFilter {
            policy: TokenPolicy {
                min_position: 2,
                max_norm_ratio: None,
            },
            median_norm: 1.0,
        },
    }
}

/// Starts a server on a free loopback port in its own runtime; returns the base URL.
fn start(sae: Option<HookedSae>) -> String {
    let cfg = ServeConfig {
        max_tokens_limit: 16,
        default_max_tokens: 8,
        max_body_bytes: 64 * 1024,
        parallel: 4,
        ..ServeConfig::new(MODEL_ID)
    };
    common::serve(Server::new(lm(), sae, cfg).unwrap())
}

fn client(base: &str) -> ChatClient {
    ChatClient::new(ClientConfig {
        timeout: Duration::from_secs(300),
        max_retries: 0,
        ..ClientConfig::new(base)
    })
    .unwrap()
}

fn request(prompt: &str, max_tokens: usize) -> ChatRequest {
    ChatRequest {
        max_tokens: Some(max_tokens),
        ..ChatRequest::new(MODEL_ID, vec![ChatMessage::user(prompt)])
    }
}

/// The model's own greedy reply, without the server.
fn direct_reply(prompt: &str, max_tokens: usize) -> String {
    let lm = lm();
    let ids = lm.chat_prompt(prompt).unwrap();
    let cfg = GenerationConfig {
        max_tokens,
        ..GenerationConfig::default()
    };
    lm.generate(&ids, &cfg, &mut Hooks::new(), |_| {})
        .unwrap()
        .text
}

#[test]
fn sixteen_concurrent_requests_match_the_model_and_streaming_matches_whole_replies() {
    let base = start(None);
    let c = client(&base);
    let models = c.models().unwrap();
    assert_eq!(models.data.len(), 1);
    assert_eq!(models.data[0].id, MODEL_ID);

    let prompts = [
        "Describe a normal chest X-ray.",
        "What is cardiomegaly?",
        "Name one sign of pleural effusion.",
        "Say hello.",
    ];
    let replies: Vec<(usize, String, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let r = c.chat(&request(prompts[i % 4], 6)).unwrap();
                    (
                        i % 4,
                        r.choices[0].message.content.clone(),
                        r.usage.completion_tokens,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(replies.len(), 16);
    for (p, prompt) in prompts.iter().enumerate().take(4) {
        let want = direct_reply(prompt, 6);
        assert!(!want.is_empty());
        for (_, text, n) in replies.iter().filter(|r| r.0 == p) {
            assert_eq!(text, &want, "prompt {p}");
            assert!(*n >= 1 && *n <= 6);
        }
    }

    let mut pieces = Vec::new();
    let streamed = c
        .chat_stream(&request(prompts[1], 6), |t| pieces.push(t.to_string()))
        .unwrap();
    assert_eq!(streamed.text, direct_reply(prompts[1], 6));
    assert_eq!(pieces.concat(), streamed.text);
    assert!(pieces.len() > 1, "{pieces:?}");
    assert!(matches!(
        streamed.finish_reason.as_deref(),
        Some("length" | "stop")
    ));
}

/// POSTs `body` raw; returns the status and the parsed error body.
fn post_raw(base: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, ErrorBody) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let err: ErrorBody = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not an OpenAI error body ({e}): {text}"));
    (status, err)
}

#[test]
fn malformed_and_oversized_requests_get_json_errors() {
    let base = start(None);
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "not a chat request"),
        (r#"{"model":"smollm2-135m"}"#.into(), 400, "messages"),
        (
            r#"{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}"#.into(),
            404,
            "not served here",
        ),
        (
            r#"{"model":"smollm2-135m","messages":[]}"#.into(),
            400,
            "1 to 64 messages",
        ),
        (
            r#"{"model":"smollm2-135m","messages":[{"role":"robot","content":"hi"}]}"#.into(),
            400,
            "unknown role",
        ),
        (
            r#"{"model":"smollm2-135m","max_tokens":17,"messages":[{"role":"user","content":"hi"}]}"#
                .into(),
            400,
            "max_tokens must be 1 to 16",
        ),
        (
            r#"{"model":"smollm2-135m","temperature":-1,"messages":[{"role":"user","content":"hi"}]}"#
                .into(),
            400,
            "temperature",
        ),
        (
            r#"{"model":"smollm2-135m","messages":[{"role":"user","content":"hi"}],"radlens":{"splice_sae":true}}"#
                .into(),
            400,
            "no SAE loaded",
        ),
        (
            format!(
                r#"{{"model":"smollm2-135m","messages":[{{"role":"user","content":"{}"}}]}}"#,
                "x".repeat(100_000)
            ),
            413,
            "",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, err) = post_raw(&base, body.clone());
        assert_eq!(got, status, "{}: {err:?}", &body[..body.len().min(80)]);
        assert!(err.error.message.contains(needle), "{err:?}");
    }

    // A prompt longer than the context.
    let long = "chest ".repeat(9000);
    let (status, err) = post_raw(&base, serde_json::to_string(&request(&long, 8)).unwrap());
    assert_eq!(status, 400);
    assert!(err.error.message.contains("exceeds the context"), "{err:?}");

    // Images go through the types but this text model refuses them.
    let mut with_image = request("what is shown?", 4);
    with_image.messages[0].content = Content::Parts(vec![
        ContentPart::Text {
            text: "what is shown?".into(),
        },
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: "data:image/png;base64,iVBORw0KGgo=".into(),
                detail: None,
            },
        },
    ]);
    let err = client(&base).chat(&with_image).unwrap_err();
    assert!(
        matches!(&err, LmError::Endpoint { reason, .. } if reason.contains("HTTP 400") && reason.contains("text only")),
        "{err}"
    );
    // a refusal is final: reported as it came, not retried and not said to be
    let patient = ChatClient::new(ClientConfig {
        max_retries: 3,
        ..ClientConfig::new(&base)
    })
    .unwrap();
    let err = patient.chat(&with_image).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 400") && !err.contains("retries"),
        "{err}"
    );
}

#[test]
fn steering_through_the_extension_changes_generation_and_is_checked() {
    let sae = tied_sae();
    let base = start(Some(sae.clone()));
    let c = client(&base);
    let plain = c.chat(&request("Describe the heart.", 8)).unwrap();
    let mut steered = request("Describe the heart.", 8);
    steered.radlens = Some(Intervention {
        splice_sae: false,
        steer: vec![Steer {
            feature: 3,
            coef: 400.0,
            mode: SteerMode::Add,
        }],
    });
    let s = c.chat(&steered).unwrap();
    assert_ne!(
        s.choices[0].message.content,
        plain.choices[0].message.content
    );
    steered.radlens.as_mut().unwrap().steer[0].feature = 64;
    let err = c.chat(&steered).unwrap_err().to_string();
    assert!(err.contains("feature 64 is out of range"), "{err}");
}

#[test]
fn add_and_clamp_move_the_residual_as_computed_by_hand() {
    let sae = tied_sae();
    let lm = lm();
    let ids = lm.chat_prompt("The lungs are clear.").unwrap();
    let point = HookPoint::ResidPost(LAYER);
    let residual = |iv: Option<&Intervention>| {
        let mut hooks = Hooks::new();
        if let Some(iv) = iv {
            sae.register(&mut hooks, iv).unwrap();
        }
        hooks.capture(point);
        lm.model
            .forward(&ids, &mut lm.model.new_cache(), &mut hooks)
            .unwrap();
        hooks.store().get(point).unwrap().unwrap()
    };
    let clean = residual(None);
    let steer = |coef, mode| Intervention {
        splice_sae: false,
        steer: vec![Steer {
            feature: 5,
            coef,
            mode,
        }],
    };
    let added = residual(Some(&steer(2.5, SteerMode::Add)));
    let scale = sae.sae.activation_scale();
    let w: Vec<f32> = sae.sae.w_dec().get(5).unwrap().to_vec1().unwrap();
    let (c, a): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
        (clean.to_vec2().unwrap(), added.to_vec2().unwrap());
    for (p, (cr, ar)) in c.iter().zip(&a).enumerate() {
        for j in 0..w.len() {
            let want = if p < 2 {
                cr[j]
            } else {
                cr[j] + 2.5 * w[j] / scale
            };
            assert!((ar[j] - want).abs() < 1e-4 * want.abs().max(1.0), "{p} {j}");
        }
    }
    // Clamping replaces the feature's activation f in the residual's reconstruction by the
    // value: x + (3 - f) * w / scale, the SAE's error term kept (sink positions untouched).
    let clamped = residual(Some(&steer(3.0, SteerMode::Clamp)));
    let before = sae.feature_activations(&clean, 5).unwrap();
    let k: Vec<Vec<f32>> = clamped.to_vec2().unwrap();
    for (p, (cr, kr)) in c.iter().zip(&k).enumerate() {
        for j in 0..w.len() {
            let want = if p < 2 {
                cr[j]
            } else {
                cr[j] + (3.0 - before[p]) * w[j] / scale
            };
            assert!((kr[j] - want).abs() < 1e-4 * want.abs().max(1.0), "{p} {j}");
        }
    }
}

/// A socket that accepts connections, counts them and never answers.
fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            n.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (format!("http://{addr}/v1"), count)
}

/// A socket that answers every request with `reply` and records the requests.
fn canned_server(reply: &'static str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
            let _ = s.write_all(reply.as_bytes());
        }
    });
    (format!("http://{addr}/v1"), seen)
}

#[test]
fn client_times_out_retries_and_names_malformed_replies() {
    let (base, connections) = silent_server();
    let c = ChatClient::new(ClientConfig {
        timeout: Duration::from_millis(300),
        max_retries: 2,
        backoff: Duration::from_millis(10),
        ..ClientConfig::new(&base)
    })
    .unwrap();
    let err = c.chat(&request("hi", 2)).unwrap_err().to_string();
    assert!(
        err.contains("no reply within") && err.contains("after 2 retries"),
        "{err}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "one try and two retries"
    );

    let (base, seen) = canned_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\nconnection: close\r\n\r\n{oops",
    );
    std::env::set_var("RADLENS_TEST_SERVE_KEY", "sk-test-123");
    let c = ChatClient::new(ClientConfig {
        api_key_env: Some("RADLENS_TEST_SERVE_KEY".into()),
        max_retries: 3,
        ..ClientConfig::new(&base)
    })
    .unwrap();
    let err = c.chat(&request("hi", 2)).unwrap_err().to_string();
    assert!(err.contains("malformed JSON reply"), "{err}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "a reply that came is not retried");
    assert!(seen[0].contains("authorization: bearer sk-test-123"));

    let err = ChatClient::new(ClientConfig {
        api_key_env: Some("RADLENS_TEST_SERVE_UNSET_KEY".into()),
        ..ClientConfig::new(&base)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("RADLENS_TEST_SERVE_UNSET_KEY"), "{err}");
}

/// An SAE at the last layer whose feature 0 points along the input embedding of `token`
/// (tied with the output embedding in SmolLM2): steering it up makes the model say it.
fn token_sae(token: u32) -> HookedSae {
    let lm = lm();
    let cfg = lm.model.config();
    let (d, last) = (cfg.hidden_size, cfg.n_layers - 1);
    let e = lm
        .model
        .residual_at(&[token], HookPoint::ResidPre(0), &mut Hooks::new())
        .unwrap();
    let e = e
        .broadcast_div(&e.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap())
        .unwrap();
    let fresh = Sae::new(
        SaeConfig::plain(
            d,
            8,
            Activation::Relu {
                l1_coefficient: 0.0,
            },
        )
        .unwrap(),
        1,
    )
    .unwrap();
    let w_dec =
        candle_core::Tensor::cat(&[&e, &fresh.w_dec().narrow(0, 1, 7).unwrap()], 0).unwrap();
    let w_enc = w_dec.t().unwrap().contiguous().unwrap();
    let zeros = |n| candle_core::Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let sae = Sae::from_tensors(
        fresh.config().clone(),
        w_enc,
        zeros(8),
        w_dec,
        zeros(d),
        None,
        1.0,
    )
    .unwrap();
    HookedSae {
        sae: Arc::new(sae),
        layer: last,
        filter: TokenFilter {
            policy: TokenPolicy {
                min_position: 2,
                max_norm_ratio: None,
            },
            median_norm: 1.0,
        },
    }
}

#[test]
fn a_sweep_measures_mentions_activation_and_perplexity() {
    let lm = lm();
    let token = lm.tokenizer.encode_text(" effusion").unwrap();
    let sae = token_sae(token[0]);
    let heldout = vec!["The heart is normal in size. The lungs are clear.".to_string()];
    let window = WindowSpec {
        template: Template::Raw,
        context_tokens: 64,
        shots: 0,
    };
    let windower = radlens_interp::window::Windower::new(&lm, &window, &[]).unwrap();
    let cfg = SweepConfig {
        feature: 0,
        mode: SteerMode::Add,
        coefs: vec![60.0, 0.0],
        examples: Vec::new(),
        prompts: vec!["Say hello.".into(), "Name a colour.".into()],
        judge: Judge::Keywords(vec!["effusion".into()]),
        generation: GenerationConfig {
            max_tokens: 6,
            ..GenerationConfig::default()
        },
        heldout: heldout.clone(),
        windower: windower.clone(),
        max_perplexity_ratio: 1e9,
    };
    let s = steer_sweep(&lm, &sae, &cfg, &radlens_core::Silent).unwrap();
    assert_eq!(s.points.len(), 2, "0 runs once, first");
    let (base, steered) = (&s.points[0], &s.points[1]);
    assert_eq!((base.coef, base.perplexity_ratio), (0.0, 1.0));
    assert_eq!(s.baseline_rate, 0.0, "{s:?}");
    // Not asserted: that the steered generations say "effusion". Adding 60 x the token's
    // embedding before the final norm did not make SmolLM2 say it in 6 tokens (rate 0,
    // perplexity x16); the mention judge is checked by the labeller's own tests.
    assert!(steered.activation > base.activation + 30.0, "{s:?}");
    assert!(steered.perplexity_ratio > 1.0);
    // The baseline perplexity is the model's own on the held-out text after the separator.
    let w = &windower.windows(&lm, &heldout[0]).unwrap()[0];
    let logits = lm
        .model
        .forward(&w.ids, &mut lm.model.new_cache(), &mut Hooks::new())
        .unwrap();
    let lp: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, 1)
        .unwrap()
        .to_vec2()
        .unwrap();
    let ce: f64 = (w.content_start..w.ids.len() - 1)
        .map(|p| -lp[p][w.ids[p + 1] as usize] as f64)
        .sum::<f64>()
        / (w.ids.len() - 1 - w.content_start) as f64;
    assert!(
        (base.perplexity - ce.exp()).abs() < 1e-3 * ce.exp(),
        "{} vs {}",
        base.perplexity,
        ce.exp()
    );
}
