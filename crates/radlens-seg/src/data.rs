//! Cases prepared at the model's input size, and batches drawn from them.

use crate::error::Result;
use crate::loss::one_hot;
use candle_core::{Device, Tensor};
use radlens_core::observe::Count;
use radlens_core::Observer;
use radlens_io::augment::{augment, AugmentConfig};
use radlens_io::preprocess::{finish_intensity, IntensityConfig, Letterbox};
use radlens_io::{ClassId, ClassSchema, LabelMap, Sample, XrayImage};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Maps a dataset's class ids to a model's by class name; classes the model
/// does not have become background.
#[derive(Debug, Clone)]
pub struct ClassMap {
    to_model: Vec<ClassId>,
    /// Model classes the dataset annotates (foreground only).
    pub annotated: Vec<ClassId>,
}

impl ClassMap {
    /// The mapping from `dataset` classes to `model` classes.
    pub fn new(dataset: &ClassSchema, model: &ClassSchema) -> Self {
        let to_model: Vec<ClassId> = dataset
            .names
            .iter()
            .map(|n| model.id(n).unwrap_or(0))
            .collect();
        let annotated = model
            .foreground()
            .filter(|c| to_model.contains(c))
            .collect();
        Self {
            to_model,
            annotated,
        }
    }

    /// Relabel dataset ids as model ids.
    pub fn apply(&self, labels: &mut [u8]) {
        for l in labels {
            *l = self.to_model.get(*l as usize).copied().unwrap_or(0);
        }
    }

    /// A case's image and its reference labels on the image grid, in model ids.
    pub fn load_case(&self, sample: &Sample) -> Result<(XrayImage, LabelMap)> {
        let img = sample.load_image()?;
        let mut labels = sample.load_labels((img.width, img.height))?;
        self.apply(&mut labels.labels);
        Ok((img, labels))
    }
}

/// Cases letterboxed to `size` x `size`: intensities in [0, 1] (before
/// normalisation, so that augmentation acts on display values) and model labels.
pub struct PreparedSet {
    pub size: usize,
    pub ids: Vec<String>,
    pub images: Vec<Vec<f32>>,
    pub labels: Vec<Vec<u8>>,
}

impl PreparedSet {
    /// Load, letterbox and relabel `samples`, counting them off to `loaded`.
    pub fn load(
        samples: &[&Sample],
        map: &ClassMap,
        size: usize,
        loaded: &dyn Observer<Count>,
    ) -> Result<Self> {
        let mut set = PreparedSet {
            size,
            ids: Vec::new(),
            images: Vec::new(),
            labels: Vec::new(),
        };
        for (done, s) in (1..).zip(samples) {
            let (img, lab) = map.load_case(s)?;
            let lb = Letterbox::new((img.width, img.height), size);
            set.ids.push(s.id.clone());
            set.images.push(lb.image(&img));
            set.labels.push(lb.labels(&lab).labels);
            loaded.observe(&Count {
                done,
                total: samples.len() as u64,
            });
        }
        Ok(set)
    }

    /// Number of cases.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True with no cases.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// A batch of the cases at `idx`: input (B, 1, S, S), one-hot (B, C, S, S)
    /// and the flat labels; augmented when `augment` is given.
    pub fn batch<R: Rng>(
        &self,
        idx: &[usize],
        classes: usize,
        intensity: IntensityConfig,
        augment_with: Option<(&AugmentConfig, &mut R)>,
        device: &Device,
    ) -> Result<(Tensor, Tensor, Vec<u8>)> {
        let s = self.size;
        let mut xs = Vec::with_capacity(idx.len() * s * s);
        let mut ys = Vec::with_capacity(idx.len() * s * s);
        let mut aug = augment_with;
        for &i in idx {
            let (mut x, y) = match aug.as_mut() {
                Some((cfg, rng)) => augment(&self.images[i], &self.labels[i], s, cfg, *rng),
                None => (self.images[i].clone(), self.labels[i].clone()),
            };
            finish_intensity(&mut x, intensity);
            xs.extend(x);
            ys.extend(y);
        }
        let x = Tensor::from_vec(xs, (idx.len(), 1, s, s), device)?;
        let oh = one_hot(&ys, idx.len(), classes, s, device)?;
        Ok((x, oh, ys))
    }
}

/// Seed offset of the labelled subset, so that it does not follow the split's shuffle.
const LABEL_SEED: u64 = 0x1abe1;

/// The first `n` of the training ids in a seeded order: a label budget, deterministic and
/// nested (the 9 labelled images are among the 35, which are among the 175), the same for
/// the U-Net (`TrainConfig::labelled`) and SemanticGAN.
pub fn choose_labelled(train_ids: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut ids = train_ids.to_vec();
    ids.sort();
    ids.shuffle(&mut StdRng::seed_from_u64(seed ^ LABEL_SEED));
    ids.truncate(n);
    ids
}

/// A label budget of `n` training ids ([`choose_labelled`]'s first `n`), or why there is
/// none: `n` is 0 or more than the training split holds.
pub fn label_budget(
    train_ids: &[String],
    n: usize,
    seed: u64,
) -> std::result::Result<Vec<String>, String> {
    if n == 0 || n > train_ids.len() {
        return Err(format!(
            "{n} labelled images asked for, but the training split has {}",
            train_ids.len()
        ));
    }
    Ok(choose_labelled(train_ids, n, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_map_by_name() {
        let ds = ClassSchema::new(["background", "right_lung", "left_lung", "cardiomediastinum"]);
        let model = ClassSchema::jsrt(false);
        let m = ClassMap::new(&ds, &model);
        assert_eq!(m.annotated, vec![1, 2]);
        let mut l = vec![0, 1, 2, 3];
        m.apply(&mut l);
        assert_eq!(l, vec![0, 1, 2, 0]);
    }

    #[test]
    fn labelled_subsets_are_deterministic_and_nested() {
        let ids: Vec<String> = (0..40).map(|i| format!("case{i:02}")).collect();
        let mut shuffled = ids.clone();
        shuffled.reverse();
        let small = choose_labelled(&ids, 9, 0);
        let large = choose_labelled(&shuffled, 35, 0);
        assert_eq!(
            small,
            choose_labelled(&shuffled, 9, 0),
            "input order must not matter"
        );
        assert_eq!(small[..], large[..9]);
        assert_ne!(small, choose_labelled(&ids, 9, 1));
        assert_ne!(small[..], ids[..9], "not simply the first ids");
    }
}
