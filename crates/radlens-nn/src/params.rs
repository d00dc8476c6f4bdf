//! Named trainable parameters with seeded initialisation and safetensors I/O.

use crate::error::{NnError, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::path::Path;

/// The model's parameters, in creation order, each with a unique name.
pub struct ParamStore {
    device: Device,
    rng: StdRng,
    vars: Vec<(String, Var)>,
    /// Layers get detached views of the parameters (see [`ParamStore::frozen`]).
    frozen: bool,
}

impl ParamStore {
    /// An empty store whose initialisation draws from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        Self {
            device: device.clone(),
            rng: StdRng::seed_from_u64(seed),
            vars: Vec::new(),
            frozen: false,
        }
    }

    /// A store for a network that is used but not trained (a frozen generator during
    /// inversion): layers get detached views that share the parameters' storage, so
    /// loading ([`ParamStore::assign_from`]) still fills them, but backward passes through
    /// the network compute no weight gradients.
    pub fn frozen(device: &Device) -> Self {
        Self {
            frozen: true,
            ..Self::new(device, 0)
        }
    }

    fn push(&mut self, name: String, data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let var = Var::from_tensor(&Tensor::from_vec(data, shape, &self.device)?)?;
        let t = if self.frozen {
            var.as_tensor().detach()
        } else {
            var.as_tensor().clone()
        };
        self.vars.push((name, var));
        Ok(t)
    }

    /// A He-normal initialised weight (fan-in = product of all dims but the first
    /// unless `fan_in` is given).
    pub fn kaiming(&mut self, name: String, shape: &[usize], fan_in: usize) -> Result<Tensor> {
        self.normal(name, shape, (2.0 / fan_in.max(1) as f64).sqrt())
    }

    /// A zero-mean normal weight of standard deviation `std` (a finite, non-negative value).
    pub fn normal(&mut self, name: String, shape: &[usize], std: f64) -> Result<Tensor> {
        let normal = Normal::new(0.0, std).map_err(|e| NnError::Invalid(format!("{name}: {e}")))?;
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| normal.sample(&mut self.rng) as f32)
            .collect();
        self.push(name, data, shape)
    }

    /// A constant-initialised parameter.
    pub fn constant(&mut self, name: String, shape: &[usize], value: f32) -> Result<Tensor> {
        let n = shape.iter().product();
        self.push(name, vec![value; n], shape)
    }

    /// Named variables for the optimiser.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The variables alone, in creation order (an optimiser's parameter list).
    pub fn var_refs(&self) -> Vec<&Var> {
        self.vars.iter().map(|(_, v)| v).collect()
    }

    /// The variables with their names, in creation order.
    pub fn named(&self) -> Vec<(&str, &Var)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v)).collect()
    }

    /// Each variable's gradient in `grads` (None for one the loss did not reach), in
    /// creation order, as [`crate::Adam::step`] takes them.
    pub fn grads_of(&self, grads: &GradStore) -> Vec<Option<Tensor>> {
        self.vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect()
    }

    /// All parameters as a name -> tensor map.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Number of scalar parameters.
    pub fn count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Overwrite every parameter from `tensors`; every name must be present with the same shape.
    pub fn assign_from(&self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let mismatch = |reason: String| NnError::Mismatch {
            path: path.to_path_buf(),
            reason,
        };
        for (name, var) in &self.vars {
            let t = tensors
                .get(name)
                .ok_or_else(|| mismatch(format!("tensor '{name}' is missing")))?;
            if t.dims() != var.dims() {
                return Err(mismatch(format!(
                    "tensor '{name}' has shape {:?}, the config needs {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !self.vars.iter().any(|(n, _)| n == *k))
        {
            return Err(mismatch(format!("unexpected tensor '{extra}'")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frozen store's layer view follows what is loaded but takes no gradient.
    #[test]
    fn frozen_parameters_load_but_take_no_gradient() {
        let dev = Device::Cpu;
        let mut p = ParamStore::frozen(&dev);
        let w = p.constant("w".into(), &[2], 0.0).unwrap();
        let loaded = Tensor::new(&[2.0f32, 3.0], &dev).unwrap();
        p.assign_from(
            &HashMap::from([("w".to_string(), loaded)]),
            Path::new("w.safetensors"),
        )
        .unwrap();
        assert_eq!(w.to_vec1::<f32>().unwrap(), [2.0, 3.0]);
        let x = Var::new(&[1.0f32, 1.0], &dev).unwrap();
        let grads = (x.as_tensor() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(
            grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
            [2.0, 3.0]
        );
        assert!(p.grads_of(&grads).iter().all(|g| g.is_none()));
        // a trainable store's view does take it
        let mut q = ParamStore::new(&dev, 0);
        let v = q.constant("w".into(), &[2], 1.0).unwrap();
        let grads = (x.as_tensor() * &v)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(q.grads_of(&grads)[0].is_some());
    }
}
