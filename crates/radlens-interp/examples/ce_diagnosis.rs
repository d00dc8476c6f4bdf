//! Why the SAE-spliced loss can fall below the clean loss: runs the model six ways on the
//! same windows (clean, identity splice, SAE splice, minus the SAE's mean error, SAE splice
//! plus its mean error, zeroed) and prints CE overall and by report position, on held-out
//! reports, on training reports, and on held-out reports preceded by a training report.
//!
//! ```sh
//! cargo run -p radlens-interp --example ce_diagnosis -- 20
//! ```
//! (reads `runs/sae-l15-v2` and `runs/acts-l15-v2/heldout`, made by the README's commands.)
use candle_core::{DType, Device, Tensor};
use radlens_interp::harvest::HarvestConfig;
use radlens_interp::inputs::{load_model, select_reports};
use radlens_lm::{HookPoint, Hooks, LanguageModel};
use radlens_report::ReportPart;
use radlens_sae::formats::load_sae;
use radlens_sae::tokens::{TokenClass, TokenFilter};
use radlens_sae::{ActivationStore, Sae};
use std::path::Path;
use std::sync::Arc;

type Edit = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

fn ce(
    lm: &LanguageModel,
    ids: &[u32],
    from: usize,
    point: HookPoint,
    keep: &Tensor,
    edit: Option<Edit>,
) -> Vec<f64> {
    let mut hooks = Hooks::new();
    if let Some(edit) = edit {
        let keep = keep.clone();
        hooks.replace(point, move |_, x| {
            let rows = x.narrow(0, from, x.dim(0)? - from)?;
            let new = edit(&rows)?;
            let mixed = (rows.broadcast_mul(&(1.0 - &keep)?)? + new.broadcast_mul(&keep)?)?;
            Tensor::cat(&[x.narrow(0, 0, from)?, mixed], 0)
        });
    }
    let logits = lm
        .model
        .forward(ids, &mut lm.model.new_cache(), &mut hooks)
        .unwrap();
    let lp = logits
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    (from..ids.len() - 1)
        .map(|p| {
            let row = &lp[p];
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse - row[ids[p + 1] as usize]
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(30, |s| s.parse().unwrap());
    let sae_dir = Path::new("runs/sae-l15-v2");
    let sae = Arc::new(load_sae(sae_dir).unwrap());
    let filter = TokenFilter::load(sae_dir).unwrap().unwrap();
    let store = ActivationStore::open(Path::new("runs/acts-l15-v2/heldout")).unwrap();
    let harvest = HarvestConfig::of_store(&store).unwrap();
    let corpus = harvest.corpus.parse().unwrap();
    let lm = load_model(Path::new(
        "../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    ))
    .unwrap();
    let point = HookPoint::ResidPost(harvest.layer);
    // mean SAE error over kept held-out tokens
    let (x, toks) = store.read_shard_with_tokens(0).unwrap();
    let pos: Vec<u32> = toks.iter().map(|t| t.position).collect();
    let cls = filter.classes(&x, &pos).unwrap();
    let kept = radlens_sae::tokens::kept_rows(&x, &cls).unwrap();
    let xh = sae.decode(&sae.encode(&kept).unwrap()).unwrap();
    let e = (&kept - &xh).unwrap();
    let mean_e = e.mean_keepdim(0).unwrap();
    let mean_x = kept.mean_keepdim(0).unwrap();
    let nrm = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt()
    };
    // the mean over rows of each row's norm
    let mean_row_norm = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum(1)
            .unwrap()
            .sqrt()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    println!(
        "rows {} |mean e| {:.3}  mean|e| {:.3}  |mean x| {:.3} mean|x| {:.3}",
        kept.dim(0).unwrap(),
        nrm(&mean_e),
        mean_row_norm(&e),
        nrm(&mean_x),
        mean_row_norm(&kept),
    );
    let recon = |s: Arc<Sae>| -> Edit {
        Arc::new(move |r: &Tensor| {
            s.decode(
                &s.encode(r)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?,
            )
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
        })
    };
    let me = mean_e.clone();
    let minus_mean_e: Edit = Arc::new(move |r: &Tensor| r.broadcast_sub(&me));
    let me2 = mean_e.clone();
    let s2 = sae.clone();
    let recon_plus_mean_e: Edit = Arc::new(move |r: &Tensor| {
        s2.decode(
            &s2.encode(r)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?,
        )
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?
        .broadcast_add(&me2)
    });
    let identity: Edit = Arc::new(|r: &Tensor| Ok(r.clone()));
    let names = [
        "clean",
        "identity",
        "spliced",
        "x-mean_e",
        "xhat+mean_e",
        "zero",
    ];
    let windower = harvest.windower(&lm, &corpus).unwrap();
    for (label, part, ctx) in [
        ("heldout", ReportPart::Heldout, false),
        ("train", ReportPart::Train, false),
        ("heldout+ctx", ReportPart::Heldout, true),
    ] {
        let reports = select_reports(&corpus, harvest.split, part, Some(n + 1)).unwrap();
        let context_text =
            select_reports(&corpus, harvest.split, ReportPart::Train, Some(1)).unwrap()[0].text();
        let mut sums = vec![0.0; names.len()];
        let mut count = 0usize;
        let mut buckets = [(0usize, 0.0f64, 0.0f64); 4];
        for r in reports.iter().skip(1) {
            for w in windower.windows(&lm, &r.text()).unwrap() {
                if w.content().len() < 2 {
                    continue;
                }
                let (ids, from) = if ctx {
                    let mut ids = windower.prefix().to_vec();
                    ids.extend(
                        lm.tokenizer
                            .encode_text(&format!("{context_text}\n\n"))
                            .unwrap(),
                    );
                    let from = ids.len();
                    ids.extend_from_slice(w.content());
                    (ids, from)
                } else {
                    (w.ids.clone(), w.content_start)
                };
                let mut hooks = Hooks::new();
                hooks.capture(point);
                lm.model
                    .forward(&ids, &mut lm.model.new_cache(), &mut hooks)
                    .unwrap();
                let resid = hooks.store().get(point).unwrap().unwrap();
                let content = resid.narrow(0, from, ids.len() - from).unwrap();
                let positions: Vec<u32> = (0..ids.len() - from)
                    .map(|j| (w.first_position + j) as u32)
                    .collect();
                let classes = filter.classes(&content, &positions).unwrap();
                let keep: Vec<f32> = classes
                    .iter()
                    .map(|&c| if c == TokenClass::Kept { 1.0 } else { 0.0 })
                    .collect();
                let keep = Tensor::from_vec(keep, (classes.len(), 1), &Device::Cpu).unwrap();
                let edits: Vec<Option<Edit>> = vec![
                    None,
                    Some(identity.clone()),
                    Some(recon(sae.clone())),
                    Some(minus_mean_e.clone()),
                    Some(recon_plus_mean_e.clone()),
                    Some(Arc::new(|r: &Tensor| r.zeros_like())),
                ];
                let res: Vec<Vec<f64>> = edits
                    .into_iter()
                    .map(|e| ce(&lm, &ids, from, point, &keep, e))
                    .collect();
                for (k, v) in res.iter().enumerate() {
                    sums[k] += v.iter().sum::<f64>();
                }
                for (j, (&clean, &spliced)) in res[0].iter().zip(&res[2]).enumerate() {
                    let p = w.first_position + j;
                    let b = if p < 2 {
                        0
                    } else if p < 16 {
                        1
                    } else if p < 64 {
                        2
                    } else {
                        3
                    };
                    buckets[b].0 += 1;
                    buckets[b].1 += clean;
                    buckets[b].2 += spliced - clean;
                }
                count += res[0].len();
            }
        }
        print!("{label}: n={count}");
        for (k, s) in sums.iter().enumerate() {
            print!("  {}={:.4}", names[k], s / count as f64);
        }
        println!();
        for (b, (c, cl, d)) in buckets.iter().enumerate() {
            println!(
                "   bucket {b}: n={c} clean={:.3} delta={:+.3}",
                cl / *c as f64,
                d / *c as f64
            );
        }
    }
}
