//! The sentence encoder against sentence-transformers 5.7 (PyTorch) on all-MiniLM-L6-v2.
//!
//! Reference numbers printed by this script, run once on the same model folder:
//! ```python
//! from sentence_transformers import SentenceTransformer
//! m = SentenceTransformer(MODEL_DIR, device="cpu")
//! e = m.encode(TEXTS, batch_size=4, normalize_embeddings=False)
//! print([list(r[:8]) for r in e], e @ e.T, [len(m.tokenizer(t)["input_ids"]) for t in TEXTS])
//! ```
//! (sentence-transformers' own Normalize module makes the rows unit length.)

use radlens_lm::{LmError, SentenceEncoder};
use std::sync::OnceLock;

const TEXTS: [&str; 4] = [
    "The heart is enlarged.",
    "Cardiomegaly is present.",
    "No pneumothorax or pleural effusion.",
    "Right-sided PICC line with tip in the SVC, unchanged since 2 days ago.",
];

const FIRST8: [[f32; 8]; 4] = [
    [
        0.055268, 0.035772, 0.006654, 0.038392, -0.037595, -0.071877, -0.028375, -0.002884,
    ],
    [
        0.086606, 0.019597, -0.01915, 0.077078, 0.025455, 0.020724, 0.049546, 0.014879,
    ],
    [
        0.059369, 0.076271, -0.034203, -0.013853, 0.040296, -0.013201, -0.096804, 0.044584,
    ],
    [
        -0.129812, -0.022002, -0.094909, 0.062147, 0.025058, 0.001962, -0.006543, 0.047765,
    ],
];

const COSINES: [[f32; 4]; 4] = [
    [1.0, 0.636091, 0.280661, 0.084921],
    [0.636091, 1.0, 0.323711, 0.118867],
    [0.280661, 0.323711, 1.0, 0.044528],
    [0.084921, 0.118867, 0.044528, 1.0],
];

fn encoder() -> &'static SentenceEncoder {
    static ENCODER: OnceLock<SentenceEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        SentenceEncoder::load(&radlens_testdata::minilm_dir()).expect("load all-MiniLM-L6-v2")
    })
}

#[test]
fn embeddings_match_sentence_transformers() {
    let enc = encoder();
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.max_tokens(), 256);
    let e = enc.embed(&TEXTS).unwrap();
    assert_eq!(e.len(), 4);
    for (i, want) in FIRST8.iter().enumerate() {
        let norm: f32 = e.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "row {i} norm {norm}");
        for (j, (&got, &want)) in e.row(i).iter().zip(want).enumerate() {
            assert!(
                (got - want).abs() < 2e-5,
                "row {i} dim {j}: {got} vs {want}"
            );
        }
    }
    for (i, row) in COSINES.iter().enumerate() {
        for (j, &want) in row.iter().enumerate() {
            let got = radlens_lm::embed::dot(e.row(i), e.row(j));
            assert!((got - want).abs() < 2e-5, "cos({i},{j}) = {got} vs {want}");
        }
    }
}

/// Padding a short sentence to a long neighbour's length must not change its embedding.
#[test]
fn batching_does_not_change_embeddings() {
    let enc = encoder();
    let together = enc.embed(&TEXTS).unwrap();
    for (i, text) in TEXTS.iter().enumerate() {
        let alone = enc.embed(&[text]).unwrap();
        for (a, b) in alone.row(0).iter().zip(together.row(i)) {
            assert!((a - b).abs() < 1e-5, "text {i}: {a} vs {b}");
        }
    }
}

#[test]
fn nearest_ranks_the_paraphrase_first() {
    let enc = encoder();
    let corpus = enc.embed(&TEXTS[1..]).unwrap();
    let query = enc.embed(&[TEXTS[0]]).unwrap();
    let best = corpus.nearest(query.row(0), 2);
    assert_eq!(best.len(), 2);
    assert_eq!(best[0].0, 0, "cardiomegaly sentence first: {best:?}");
    assert!((best[0].1 - COSINES[0][1]).abs() < 2e-5);
    assert!(best[0].1 >= best[1].1);
}

/// A text far past 256 tokens is cut, as sentence-transformers cuts it: appending more
/// words after the cut changes nothing.
#[test]
fn long_texts_are_truncated() {
    let enc = encoder();
    let long = "the lungs are clear. ".repeat(100);
    let longer = format!("{long} cardiomegaly with a large left pleural effusion");
    let e = enc.embed(&[long.as_str(), longer.as_str()]).unwrap();
    for (a, b) in e.row(0).iter().zip(e.row(1)) {
        assert!((a - b).abs() < 1e-6);
    }
    assert!(enc.embed::<&str>(&[]).unwrap().is_empty());
}

#[test]
fn missing_or_corrupt_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = SentenceEncoder::load(dir.path())
        .err()
        .expect("empty folder");
    assert!(matches!(err, LmError::Io { ref path, .. } if path.ends_with("config.json")));

    let model = radlens_testdata::minilm_dir();
    for name in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(model.join(name), dir.path().join(name)).unwrap();
    }
    let err = SentenceEncoder::load(dir.path()).err().expect("no weights");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = SentenceEncoder::load(dir.path())
        .err()
        .expect("corrupt weights");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(dir.path().join("config.json"), b"{\"hidden_size\": ").unwrap();
    let err = SentenceEncoder::load(dir.path())
        .err()
        .expect("corrupt config");
    assert!(err.to_string().contains("config.json"), "{err}");
}
