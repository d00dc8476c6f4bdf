//! File formats: the SAELens layout (read and write) and dictionary_learning's `ae.pt` +
//! `config.json` (read).

use crate::config::{Activation, SaeConfig};
use crate::pth_bounds;
use crate::sae::Sae;
use crate::{Result, SaeError};
use candle_core::{DType, Device, Tensor};
use radlens_core::atomic::write_atomic_at;
use radlens_core::results::write_json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| SaeError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| SaeError::Json {
        path: path.to_owned(),
        source,
    })
}

/// SAELens files of a directory.
fn saelens_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("cfg.json"), dir.join("sae_weights.safetensors"))
}

/// Saves `sae` in the SAELens layout: `cfg.json` and `sae_weights.safetensors` with
/// `W_enc` (d, F), `b_enc` (F), `W_dec` (F, d), `b_dec` (d) (and `threshold` (F)).
///
/// The activation scale s is folded in as dictionary_learning does on save (`b_dec`,
/// `b_enc` and the threshold divided by s; weights unchanged), so the saved SAE takes raw
/// activations (`normalize_activations: "none"`) and its codes are ours divided by s.
/// BatchTopK SAEs (Matryoshka or not) are saved as `"jumprelu"` with every latent's
/// threshold set to the global threshold, as SAELens does; they need a learnt threshold.
/// TopK SAEs are `"topk"` (with `k`), ReLU SAEs `"standard"`. A `radlens` block keeps the
/// sparsity rule and Matryoshka group sizes for [`load_saelens`].
pub fn save_saelens(sae: &Sae, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| SaeError::io(dir, e))?;
    let cfg = sae.config();
    let s = sae.activation_scale() as f64;
    let mut tensors: HashMap<String, Tensor> = HashMap::from([
        ("W_enc".into(), sae.w_enc().clone()),
        ("b_enc".into(), (sae.b_enc() / s)?),
        ("W_dec".into(), sae.w_dec().clone()),
        ("b_dec".into(), (sae.b_dec() / s)?),
    ]);
    let mut json = json!({
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": true,
        "normalize_activations": "none",
        "radlens": { "activation": cfg.activation, "group_sizes": cfg.group_sizes },
    });
    let architecture = match cfg.activation {
        Activation::BatchTopK { k } => {
            let t = sae.threshold().ok_or_else(|| {
                SaeError::Config(
                    "a BatchTopK SAE needs a learnt threshold to be saved as JumpReLU".into(),
                )
            })?;
            tensors.insert(
                "threshold".into(),
                Tensor::full(t / s as f32, cfg.d_sae, &Device::Cpu)?,
            );
            json["k"] = json!(k);
            "jumprelu"
        }
        Activation::TopK { k } => {
            json["k"] = json!(k);
            "topk"
        }
        Activation::Relu { l1_coefficient } => {
            json["l1_coefficient"] = json!(l1_coefficient);
            "standard"
        }
    };
    json["architecture"] = json!(architecture);
    let (cfg_path, weights_path) = saelens_paths(dir);
    write_atomic_at(&weights_path, |tmp| {
        candle_core::safetensors::save(&tensors, tmp).map_err(SaeError::from)
    })?;
    Ok(write_json(&cfg_path, &json)?)
}

/// Loads an SAE directory in either layout this module reads: dictionary_learning's when
/// it holds an `ae.pt`, else SAELens'.
pub fn load_sae(dir: &Path) -> Result<Sae> {
    if dir.join("ae.pt").exists() {
        load_dictionary_learning(dir)
    } else {
        load_saelens(dir)
    }
}

/// Loads an SAE in the SAELens layout (see [`save_saelens`]). Without a `radlens` block,
/// `"jumprelu"` SAEs need a `k` and a single threshold shared by all latents, `"topk"`
/// SAEs a `k`; `"standard"` SAEs load as ReLU SAEs. Activation normalisation must be
/// `"none"`.
pub fn load_saelens(dir: &Path) -> Result<Sae> {
    let (cfg_path, weights_path) = saelens_paths(dir);
    let json = read_json(&cfg_path)?;
    let bad = |r: &str| SaeError::format(&cfg_path, r);
    let usize_field = |name: &str| {
        json[name]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| bad(&format!("missing or invalid \"{name}\"")))
    };
    let (d_in, d_sae) = (usize_field("d_in")?, usize_field("d_sae")?);
    match json["normalize_activations"].as_str() {
        None | Some("none") => {}
        Some(other) => {
            return Err(bad(&format!(
                "unsupported normalize_activations \"{other}\""
            )))
        }
    }
    let mut t = candle_core::safetensors::load(&weights_path, &Device::Cpu)?;
    let mut take = |name: &str| {
        t.remove(name)
            .ok_or_else(|| SaeError::format(&weights_path, format!("missing tensor {name}")))
    };
    let [w_enc, b_enc, w_dec, b_dec] = ["W_enc", "b_enc", "W_dec", "b_dec"].map(&mut take);
    let architecture = json["architecture"].as_str().unwrap_or("standard");
    let threshold = match architecture {
        "jumprelu" => Some(global_threshold(&take("threshold")?, &weights_path)?),
        _ => None,
    };
    let (activation, group_sizes) = match json.get("radlens") {
        Some(r) => (
            serde_json::from_value(r["activation"].clone()).map_err(|e| bad(&e.to_string()))?,
            serde_json::from_value(r["group_sizes"].clone()).map_err(|e| bad(&e.to_string()))?,
        ),
        None => {
            let activation = match architecture {
                "jumprelu" => Activation::BatchTopK {
                    k: usize_field("k")?,
                },
                "topk" => Activation::TopK {
                    k: usize_field("k")?,
                },
                "standard" => Activation::Relu {
                    l1_coefficient: json["l1_coefficient"].as_f64().unwrap_or(0.0) as f32,
                },
                other => return Err(bad(&format!("unsupported architecture \"{other}\""))),
            };
            (activation, vec![d_sae])
        }
    };
    let cfg = SaeConfig::new(d_in, d_sae, activation, group_sizes)?;
    Sae::from_tensors(cfg, w_enc?, b_enc?, w_dec?, b_dec?, threshold, 1.0)
}

/// The common value of a per-latent threshold vector.
fn global_threshold(t: &Tensor, path: &Path) -> Result<f32> {
    let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    match v.first() {
        Some(&first) if v.iter().all(|&x| x == first) => Ok(first),
        _ => Err(SaeError::format(
            path,
            "per-latent JumpReLU thresholds are not supported (need one global threshold)",
        )),
    }
}

/// Reads a Matryoshka BatchTopK SAE saved by dictionary_learning (the released MAIRA-2
/// SAEs): `dir/ae.pt`, a PyTorch state dict with `W_enc` (d, F), `b_enc` (F), `W_dec` (F, d),
/// `b_dec` (d), `threshold` (), `group_sizes` (G) (and `k`), and `dir/config.json` whose
/// `trainer` block gives `activation_dim`, `dict_size` and `k`. The nn.Linear layout of
/// plain BatchTopK SAEs (`encoder.weight`, `encoder.bias`, `decoder.weight`) is accepted
/// too. `k` is read from the config because candle cannot read torch's int32 storages.
/// The state dict already has its normalisation folded in, so the activation scale is 1.
pub fn load_dictionary_learning(dir: &Path) -> Result<Sae> {
    let (ae_path, cfg_path) = (dir.join("ae.pt"), dir.join("config.json"));
    let cfg_json = read_json(&cfg_path)?;
    let trainer = &cfg_json["trainer"];
    let bad = |r: String| SaeError::format(&ae_path, r);
    let file_len = std::fs::metadata(&ae_path)
        .map_err(|e| SaeError::io(&ae_path, e))?
        .len();
    pth_bounds::check_pickles(&ae_path).map_err(&bad)?;
    let pth = candle_core::pickle::PthTensors::new(&ae_path, None)?;
    pth_bounds::check_tensor_sizes(&pth, file_len).map_err(&bad)?;
    let get = |name: &str| -> Result<Option<Tensor>> {
        Ok(match pth.get(name)? {
            Some(t) => Some(t.to_dtype(DType::F32)?),
            None => None,
        })
    };
    let need =
        |t: Option<Tensor>, name: &str| t.ok_or_else(|| bad(format!("missing tensor {name}")));
    let (w_enc, b_enc, w_dec) = match get("W_enc")? {
        Some(w_enc) => (
            w_enc,
            need(get("b_enc")?, "b_enc")?,
            need(get("W_dec")?, "W_dec")?,
        ),
        None => (
            need(get("encoder.weight")?, "W_enc or encoder.weight")?
                .t()?
                .contiguous()?,
            need(get("encoder.bias")?, "encoder.bias")?,
            need(get("decoder.weight")?, "decoder.weight")?
                .t()?
                .contiguous()?,
        ),
    };
    let b_dec = need(get("b_dec")?, "b_dec")?;
    let (d_in, d_sae) = w_enc.dims2()?;
    for (field, want) in [("activation_dim", d_in), ("dict_size", d_sae)] {
        if let Some(v) = trainer[field].as_u64().filter(|&v| v as usize != want) {
            return Err(SaeError::format(
                &cfg_path,
                format!("trainer.{field} = {v} but ae.pt has {want}"),
            ));
        }
    }
    let k = match pth.get("k").ok().flatten() {
        Some(k) => k
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .first()
            .map(|&k| k as usize),
        None => trainer["k"].as_u64().map(|k| k as usize),
    }
    .ok_or_else(|| SaeError::format(&cfg_path, "no k in ae.pt or trainer.k"))?;
    let threshold = match get("threshold")? {
        Some(t) => t
            .flatten_all()?
            .to_vec1::<f32>()?
            .first()
            .copied()
            .filter(|&t| t >= 0.0),
        None => None,
    };
    let group_sizes = match pth.get("group_sizes")? {
        Some(g) => g
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?
            .into_iter()
            .map(|v| v as usize)
            .collect(),
        None => vec![d_sae],
    };
    let cfg = SaeConfig::new(d_in, d_sae, Activation::BatchTopK { k }, group_sizes)?;
    Sae::from_tensors(cfg, w_enc, b_enc, w_dec, b_dec, threshold, 1.0)
}
