//! Sparse selection and sparse encode/decode ops for sparse autoencoders (SAEs).
//!
//! A [`SparseIndex`] holds a fixed set of (row, column) entries of a (rows, cols) matrix, in
//! row-major order (CSR) with a column-major view (CSC) for the weight gradients. The
//! selection functions ([`batch_topk`], [`topk_per_row`], [`above_threshold`]) build one from
//! dense pre-activations without sorting whole rows. The ops ([`sparse_encode`],
//! [`sparse_decode`], [`sparse_prefix_mse`], [`scatter_dense`]) are candle custom ops with
//! exact backward passes for a fixed index set; they only touch the selected entries, so
//! their cost scales with the number of entries rather than with rows x cols. All of them
//! need f32 CPU tensors.

use crate::storage::f32_slice;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage,
    Tensor,
};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

/// A fixed set of entries of a (rows, cols) matrix; cheap to clone.
#[derive(Clone, Debug)]
pub struct SparseIndex(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    rows: usize,
    cols: usize,
    /// Entries of row `r` are `row_ptr[r]..row_ptr[r + 1]`.
    row_ptr: Vec<usize>,
    /// Column of each entry, increasing within a row.
    col: Vec<u32>,
    /// Row of each entry.
    row: Vec<u32>,
    /// Entries of column `c` are `csc[col_ptr[c]..col_ptr[c + 1]]`.
    col_ptr: Vec<usize>,
    /// Entry ids ordered by column, then row.
    csc: Vec<u32>,
}

impl SparseIndex {
    /// Builds an index from each row's columns (any order; duplicates are an error).
    pub fn from_rows(cols: usize, row_cols: Vec<Vec<u32>>) -> Result<Self> {
        if cols > u32::MAX as usize || row_cols.len() > u32::MAX as usize {
            bail!("SparseIndex: matrix too large for u32 indices")
        }
        let rows = row_cols.len();
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0);
        let nnz: usize = row_cols.iter().map(Vec::len).sum();
        let (mut col, mut row) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        for (r, mut cs) in row_cols.into_iter().enumerate() {
            cs.sort_unstable();
            if cs.windows(2).any(|w| w[0] == w[1]) {
                bail!("SparseIndex: duplicate column in row {r}")
            }
            if let Some(&c) = cs.last().filter(|&&c| c as usize >= cols) {
                bail!("SparseIndex: column {c} out of range for {cols} columns (row {r})")
            }
            row.extend(std::iter::repeat_n(r as u32, cs.len()));
            col.extend(cs);
            row_ptr.push(col.len());
        }
        let mut col_ptr = vec![0usize; cols + 1];
        for &c in &col {
            col_ptr[c as usize + 1] += 1;
        }
        for c in 0..cols {
            col_ptr[c + 1] += col_ptr[c];
        }
        let mut next = col_ptr[..cols].to_vec();
        let mut csc = vec![0u32; nnz];
        for (n, &c) in col.iter().enumerate() {
            csc[next[c as usize]] = n as u32;
            next[c as usize] += 1;
        }
        Ok(Self(Arc::new(Inner {
            rows,
            cols,
            row_ptr,
            col,
            row,
            col_ptr,
            csc,
        })))
    }

    pub fn rows(&self) -> usize {
        self.0.rows
    }

    pub fn cols(&self) -> usize {
        self.0.cols
    }

    /// Number of entries.
    pub fn nnz(&self) -> usize {
        self.0.col.len()
    }

    /// The columns of row `r`'s entries, increasing.
    pub fn row_cols(&self, r: usize) -> &[u32] {
        &self.0.col[self.0.row_ptr[r]..self.0.row_ptr[r + 1]]
    }

    /// The entry-id range of row `r`.
    pub fn row_range(&self, r: usize) -> Range<usize> {
        self.0.row_ptr[r]..self.0.row_ptr[r + 1]
    }

    /// Column of each entry, in entry order.
    pub fn entry_cols(&self) -> &[u32] {
        &self.0.col
    }

    /// Row of each entry, in entry order.
    pub fn entry_rows(&self) -> &[u32] {
        &self.0.row
    }

    /// Entry ids of column `c`, by increasing row.
    fn col_entries(&self, c: usize) -> &[u32] {
        &self.0.csc[self.0.col_ptr[c]..self.0.col_ptr[c + 1]]
    }

    /// Entry ids of row `r` whose column lies in `cols`.
    fn row_entries_in(&self, r: usize, cols: &Range<usize>) -> Range<usize> {
        let (start, cs) = (self.0.row_ptr[r], self.row_cols(r));
        let lo = cs.partition_point(|&c| (c as usize) < cols.start);
        let hi = cs.partition_point(|&c| (c as usize) < cols.end);
        start + lo..start + hi
    }
}

/// Calls `f` with the data of a contiguous f32 CPU tensor.
fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        bail!("{op}: expected a CPU tensor")
    };
    f(f32_slice(cpu, layout, op)?)
}

fn check_f32_cpu(op: &str, tensors: &[&Tensor]) -> Result<()> {
    for t in tensors {
        if t.dtype() != DType::F32 || !t.device().is_cpu() {
            bail!("{op}: expected f32 CPU tensors, got {:?}", t.dtype())
        }
    }
    Ok(())
}

/// The `n` largest entries of a (rows, cols) tensor over the whole tensor (BatchTopK).
///
/// Finds the n-th largest value by linear-time selection (on the values above a
/// sample-based lower bound when possible); ties at the cut-off are taken in row-major
/// order, so exactly `min(n, rows * cols)` entries are kept.
pub fn batch_topk(pre: &Tensor, n: usize) -> Result<SparseIndex> {
    check_f32_cpu("batch_topk", &[pre])?;
    let (rows, cols) = pre.dims2()?;
    let pre = pre.contiguous()?;
    with_f32(&pre, "batch_topk", |data| {
        let n = n.min(data.len());
        if n == 0 {
            return SparseIndex::from_rows(cols, vec![Vec::new(); rows]);
        }
        let cut = nth_largest(data, n);
        // Per row: values above the cut, and ties with it.
        let counts: Vec<(usize, usize)> = data
            .par_chunks(cols)
            .map(|row| {
                row.iter()
                    .fold((0, 0), |(a, t), v| match v.total_cmp(&cut) {
                        Ordering::Greater => (a + 1, t),
                        Ordering::Equal => (a, t + 1),
                        Ordering::Less => (a, t),
                    })
            })
            .collect();
        // Tie quota per row, in row-major order.
        let mut left = n - counts.iter().map(|c| c.0).sum::<usize>();
        let quota: Vec<usize> = counts
            .iter()
            .map(|&(_, t)| {
                let q = t.min(left);
                left -= q;
                q
            })
            .collect();
        let row_cols = data
            .par_chunks(cols)
            .zip(quota.par_iter())
            .map(|(row, &q)| {
                let mut q = q;
                let mut out = Vec::new();
                for (c, v) in row.iter().enumerate() {
                    let take = match v.total_cmp(&cut) {
                        Ordering::Greater => true,
                        Ordering::Equal if q > 0 => {
                            q -= 1;
                            true
                        }
                        _ => false,
                    };
                    if take {
                        out.push(c as u32);
                    }
                }
                out
            })
            .collect();
        SparseIndex::from_rows(cols, row_cols)
    })
}

/// The `n`-th largest value of `data` (1 <= n <= data.len()) in `total_cmp` order.
fn nth_largest(data: &[f32], n: usize) -> f32 {
    let desc = |a: &f32, b: &f32| b.total_cmp(a);
    if let Some(bound) = sample_lower_bound(data, n) {
        let mut cand: Vec<f32> = data
            .par_iter()
            .copied()
            .filter(|v| v.total_cmp(&bound).is_ge())
            .collect();
        if cand.len() >= n {
            return *cand.select_nth_unstable_by(n - 1, desc).1;
        }
    }
    *data.to_vec().select_nth_unstable_by(n - 1, desc).1
}

/// A value probably below the `n`-th largest of `data`, from a pseudo-random sample: the
/// sample value at twice the expected rank plus a margin. `None` for small inputs.
fn sample_lower_bound(data: &[f32], n: usize) -> Option<f32> {
    const SAMPLES: usize = 1 << 16;
    if data.len() < 8 * SAMPLES {
        return None;
    }
    let mut sample: Vec<f32> = (0..SAMPLES as u64)
        .map(|i| data[(splitmix64(i) % data.len() as u64) as usize])
        .collect();
    let rank = (2.0 * n as f64 * SAMPLES as f64 / data.len() as f64) as usize + 64;
    (rank < SAMPLES).then(|| *sample.select_nth_unstable_by(rank, |a, b| b.total_cmp(a)).1)
}

/// A 64-bit mixing function (SplitMix64's finaliser).
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `k` largest entries of each row (TopK), optionally among the columns where
/// `allowed[c]` is true only; ties are taken by increasing column.
pub fn topk_per_row(pre: &Tensor, k: usize, allowed: Option<&[bool]>) -> Result<SparseIndex> {
    check_f32_cpu("topk_per_row", &[pre])?;
    let (_, cols) = pre.dims2()?;
    if let Some(a) = allowed.filter(|a| a.len() != cols) {
        bail!(
            "topk_per_row: mask of {} columns for {cols} columns",
            a.len()
        )
    }
    let pre = pre.contiguous()?;
    with_f32(&pre, "topk_per_row", |data| {
        let row_cols = data
            .par_chunks(cols.max(1))
            .map(|row| {
                let mut cand: Vec<(f32, u32)> = row
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| allowed.is_none_or(|a| a[*c]))
                    .map(|(c, &v)| (v, c as u32))
                    .collect();
                let order =
                    |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
                if k == 0 {
                    cand.clear();
                } else if cand.len() > k {
                    cand.select_nth_unstable_by(k - 1, order);
                    cand.truncate(k);
                }
                cand.into_iter().map(|(_, c)| c).collect()
            })
            .collect();
        SparseIndex::from_rows(cols, row_cols)
    })
}

/// The entries greater than `threshold` (ReLU codes with 0, thresholded inference codes).
pub fn above_threshold(pre: &Tensor, threshold: f32) -> Result<SparseIndex> {
    check_f32_cpu("above_threshold", &[pre])?;
    let (_, cols) = pre.dims2()?;
    let pre = pre.contiguous()?;
    with_f32(&pre, "above_threshold", |data| {
        let row_cols = data
            .par_chunks(cols.max(1))
            .map(|row| {
                (0..row.len() as u32)
                    .filter(|&c| row[c as usize] > threshold)
                    .collect()
            })
            .collect();
        SparseIndex::from_rows(cols, row_cols)
    })
}

/// Dot product with independent lanes, so that it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `relu(z + bias)` of a (rows, cols) matrix `z` and a (cols) bias, in one parallel pass and
/// without gradient tracking (pre-activations for selection).
pub fn bias_relu(z: &Tensor, bias: &Tensor) -> Result<Tensor> {
    check_f32_cpu("bias_relu", &[z, bias])?;
    let (rows, cols) = z.dims2()?;
    if bias.dims() != [cols] {
        bail!("bias_relu: bias {:?} for {cols} columns", bias.dims())
    }
    let (z, bias) = (z.contiguous()?, bias.contiguous()?);
    let out = with_f32(&z, "bias_relu", |z| {
        with_f32(&bias, "bias_relu", |b| {
            let mut out = vec![0f32; z.len()];
            if cols > 0 {
                out.par_chunks_mut(cols)
                    .zip(z.par_chunks(cols))
                    .for_each(|(o, z)| {
                        for ((o, z), b) in o.iter_mut().zip(z).zip(b) {
                            *o = (z + b).max(0.0);
                        }
                    });
            }
            Ok(out)
        })
    })?;
    Tensor::from_vec(out, (rows, cols), z.device())
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Transposes a row-major (rows, cols) matrix, in cache-friendly tiles.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut t = vec![0f32; m.len()];
    if !t.is_empty() {
        // Each task fills TILE rows of the output (TILE columns of the input).
        t.par_chunks_mut(TILE * rows)
            .enumerate()
            .for_each(|(tc, out)| {
                let c0 = tc * TILE;
                let nc = out.len() / rows;
                for r0 in (0..rows).step_by(TILE) {
                    for r in r0..(r0 + TILE).min(rows) {
                        let src = &m[r * cols + c0..r * cols + c0 + nc];
                        for (j, &v) in src.iter().enumerate() {
                            out[j * rows + r] = v;
                        }
                    }
                }
            });
    }
    t
}

/// Sparse encoder: for each entry (r, c) of `idx`, `relu(x[r] . w_enc[:, c] + b_enc[c])`,
/// a vector of `idx.nnz()` values. `x` is (rows, d), `w_enc` (d, cols), `b_enc` (cols).
///
/// The backward pass gives the exact gradients for the fixed entry set, touching only the
/// selected latents (the encoder's weight gradient costs nnz x d).
pub fn sparse_encode(
    x: &Tensor,
    w_enc: &Tensor,
    b_enc: &Tensor,
    idx: &SparseIndex,
) -> Result<Tensor> {
    const OP: &str = "sparse_encode";
    check_f32_cpu(OP, &[x, w_enc, b_enc])?;
    let (rows, d) = x.dims2()?;
    let (d2, cols) = w_enc.dims2()?;
    if d2 != d || b_enc.dims() != [cols] || idx.rows() != rows || idx.cols() != cols {
        bail!(
            "{OP}: shape mismatch: x {:?}, w_enc {:?}, b_enc {:?}, index ({rows}, {cols})",
            x.dims(),
            w_enc.dims(),
            b_enc.dims()
        )
    }
    x.contiguous()?.apply_op3(
        &w_enc.contiguous()?,
        &b_enc.contiguous()?,
        SparseEncode(idx.clone()),
    )
}

struct SparseEncode(SparseIndex);

impl CustomOp3 for SparseEncode {
    fn name(&self) -> &'static str {
        "radlens-sparse-encode"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
            f32_slice(s3, l3, self.name())?,
        );
        let idx = &self.0;
        let (d, cols) = l2.shape().dims2()?;
        let wt = transpose(w, d, cols);
        let (rows, cs) = (idx.entry_rows(), idx.entry_cols());
        let mut out = vec![0f32; idx.nnz()];
        out.par_iter_mut().enumerate().for_each(|(n, o)| {
            let (r, c) = (rows[n] as usize, cs[n] as usize);
            *o = (dot(&x[r * d..(r + 1) * d], &wt[c * d..(c + 1) * d]) + b[c]).max(0.0);
        });
        Ok((CpuStorage::F32(out), Shape::from(idx.nnz())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        const OP: &str = "sparse_encode backward";
        let idx = &self.0;
        let (n_rows, d) = x.dims2()?;
        let cols = idx.cols();
        let grad = grad.contiguous()?;
        // Gradient through the ReLU.
        let g: Vec<f32> = with_f32(res, OP, |res| {
            with_f32(&grad, OP, |g| {
                Ok(g.iter()
                    .zip(res)
                    .map(|(&g, &y)| if y > 0.0 { g } else { 0.0 })
                    .collect())
            })
        })?;
        let wt = with_f32(w, OP, |w| Ok(transpose(w, d, cols)))?;
        let mut gx = vec![0f32; n_rows * d];
        if d > 0 {
            gx.par_chunks_mut(d).enumerate().for_each(|(r, gx)| {
                for n in idx.row_range(r) {
                    let c = idx.entry_cols()[n] as usize;
                    axpy(gx, g[n], &wt[c * d..(c + 1) * d]);
                }
            });
        }
        drop(wt);
        let rows = idx.entry_rows();
        let mut gwt = vec![0f32; cols * d];
        with_f32(x, OP, |x| {
            if d > 0 {
                gwt.par_chunks_mut(d).enumerate().for_each(|(c, gw)| {
                    for &n in idx.col_entries(c) {
                        let r = rows[n as usize] as usize;
                        axpy(gw, g[n as usize], &x[r * d..(r + 1) * d]);
                    }
                });
            }
            Ok(())
        })?;
        let gb: Vec<f32> = (0..cols)
            .map(|c| idx.col_entries(c).iter().map(|&n| g[n as usize]).sum())
            .collect();
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(gx, (n_rows, d), dev)?),
            Some(Tensor::from_vec(transpose(&gwt, cols, d), (d, cols), dev)?),
            Some(Tensor::from_vec(gb, cols, dev)?),
        ))
    }
}

/// Sparse decoder: `out[r] = sum over entries (r, c) of idx with c in `cols` of
/// values[n] * w_dec[c]`, a (rows, d) tensor. `values` has `idx.nnz()` elements and `w_dec`
/// is (idx.cols(), d). The backward pass touches only the selected latents' rows of `w_dec`.
pub fn sparse_decode(
    values: &Tensor,
    w_dec: &Tensor,
    idx: &SparseIndex,
    cols: Range<usize>,
) -> Result<Tensor> {
    const OP: &str = "sparse_decode";
    check_f32_cpu(OP, &[values, w_dec])?;
    let (f, _) = w_dec.dims2()?;
    if values.dims() != [idx.nnz()] || f != idx.cols() || cols.start > cols.end || cols.end > f {
        bail!(
            "{OP}: shape mismatch: values {:?}, w_dec {:?}, index of {} entries over {} columns, \
             column range {cols:?}",
            values.dims(),
            w_dec.dims(),
            idx.nnz(),
            idx.cols()
        )
    }
    values.contiguous()?.apply_op2(
        &w_dec.contiguous()?,
        SparseDecode {
            idx: idx.clone(),
            cols,
        },
    )
}

struct SparseDecode {
    idx: SparseIndex,
    cols: Range<usize>,
}

impl CustomOp2 for SparseDecode {
    fn name(&self) -> &'static str {
        "radlens-sparse-decode"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (v, w) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let (_, d) = l2.shape().dims2()?;
        let rows = self.idx.rows();
        let mut out = vec![0f32; rows * d];
        if d > 0 {
            out.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
                for n in self.idx.row_entries_in(r, &self.cols) {
                    let c = self.idx.entry_cols()[n] as usize;
                    axpy(o, v[n], &w[c * d..(c + 1) * d]);
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, d))))
    }

    fn bwd(
        &self,
        values: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        const OP: &str = "sparse_decode backward";
        let idx = &self.idx;
        let (f, d) = w.dims2()?;
        let grad = grad.contiguous()?;
        let (rows, cs) = (idx.entry_rows(), idx.entry_cols());
        let in_range = |c: usize| self.cols.contains(&c);
        let (gv, gw) = with_f32(&grad, OP, |g| {
            let gv = with_f32(w, OP, |w| {
                let mut gv = vec![0f32; idx.nnz()];
                gv.par_iter_mut().enumerate().for_each(|(n, gv)| {
                    let (r, c) = (rows[n] as usize, cs[n] as usize);
                    if in_range(c) {
                        *gv = dot(&g[r * d..(r + 1) * d], &w[c * d..(c + 1) * d]);
                    }
                });
                Ok(gv)
            })?;
            let gw = with_f32(values, OP, |v| {
                let mut gw = vec![0f32; f * d];
                if d > 0 {
                    gw.par_chunks_mut(d)
                        .enumerate()
                        .filter(|(c, _)| in_range(*c))
                        .for_each(|(c, gw)| {
                            for &n in idx.col_entries(c) {
                                let r = rows[n as usize] as usize;
                                axpy(gw, v[n as usize], &g[r * d..(r + 1) * d]);
                            }
                        });
                }
                Ok(gw)
            })?;
            Ok((gv, gw))
        })?;
        let dev = values.device();
        Ok((
            Some(Tensor::from_vec(gv, idx.nnz(), dev)?),
            Some(Tensor::from_vec(gw, (f, d), dev)?),
        ))
    }
}

/// The dense (rows, cols) matrix with `values` at the entries of `idx` and zeros elsewhere.
/// Its backward pass gathers the gradient at the entries.
pub fn scatter_dense(values: &Tensor, idx: &SparseIndex) -> Result<Tensor> {
    check_f32_cpu("scatter_dense", &[values])?;
    if values.dims() != [idx.nnz()] {
        bail!(
            "scatter_dense: {:?} values for an index of {} entries",
            values.dims(),
            idx.nnz()
        )
    }
    values.contiguous()?.apply_op1(ScatterDense(idx.clone()))
}

struct ScatterDense(SparseIndex);

impl CustomOp1 for ScatterDense {
    fn name(&self) -> &'static str {
        "radlens-scatter-dense"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = f32_slice(s, l, self.name())?;
        let (rows, cols) = (self.0.rows(), self.0.cols());
        let mut out = vec![0f32; rows * cols];
        if cols > 0 {
            out.par_chunks_mut(cols).enumerate().for_each(|(r, o)| {
                for n in self.0.row_range(r) {
                    o[self.0.entry_cols()[n] as usize] = v[n];
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, cols))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let cols = self.0.cols();
        let (rows, cs) = (self.0.entry_rows(), self.0.entry_cols());
        let gv: Vec<f32> = with_f32(&grad, "scatter_dense backward", |g| {
            Ok((0..self.0.nnz())
                .map(|n| g[rows[n] as usize * cols + cs[n] as usize])
                .collect())
        })?;
        Ok(Some(Tensor::from_vec(gv, self.0.nnz(), arg.device())?))
    }
}

/// Fused Matryoshka reconstruction losses: for each prefix g of the column groups ending at
/// `ends` (increasing, the last at most `idx.cols()`),
/// `mean over rows r of ||target[r] - sum over entries (r, c), c < ends[g] of values[n] * w_dec[c]||^2`,
/// a (groups) tensor. With `target = x - b_dec` these are the prefix losses of
/// `x_hat_g = b_dec + sum_{h <= g} f_h W_dec,h`. Gradients flow to `target`, `values` and
/// `w_dec`, touching only the selected latents.
pub fn sparse_prefix_mse(
    target: &Tensor,
    values: &Tensor,
    w_dec: &Tensor,
    idx: &SparseIndex,
    ends: &[usize],
) -> Result<Tensor> {
    const OP: &str = "sparse_prefix_mse";
    check_f32_cpu(OP, &[target, values, w_dec])?;
    let (rows, d) = target.dims2()?;
    let (f, d2) = w_dec.dims2()?;
    if d2 != d || rows != idx.rows() || f != idx.cols() || values.dims() != [idx.nnz()] {
        bail!(
            "{OP}: shape mismatch: target {:?}, values {:?}, w_dec {:?}, index ({}, {}) with {} entries",
            target.dims(),
            values.dims(),
            w_dec.dims(),
            idx.rows(),
            idx.cols(),
            idx.nnz()
        )
    }
    if ends.is_empty() || ends.windows(2).any(|w| w[0] > w[1]) || ends[ends.len() - 1] > f {
        bail!("{OP}: group ends {ends:?} must be non-empty, increasing and at most {f}")
    }
    target.contiguous()?.apply_op3(
        &values.contiguous()?,
        &w_dec.contiguous()?,
        PrefixMse {
            idx: idx.clone(),
            ends: ends.to_vec(),
        },
    )
}

struct PrefixMse {
    idx: SparseIndex,
    ends: Vec<usize>,
}

impl PrefixMse {
    /// Calls `f(g, residual)` with row `r`'s residual after each prefix g.
    fn residuals(
        &self,
        r: usize,
        t: &[f32],
        v: &[f32],
        w: &[f32],
        mut f: impl FnMut(usize, &[f32]),
    ) {
        let d = t.len();
        let mut res = t.to_vec();
        let mut start = 0;
        for (g, &end) in self.ends.iter().enumerate() {
            for n in self.idx.row_entries_in(r, &(start..end)) {
                let c = self.idx.entry_cols()[n] as usize;
                axpy(&mut res, -v[n], &w[c * d..(c + 1) * d]);
            }
            f(g, &res);
            start = end;
        }
    }

    /// The group of column `c`, if any.
    fn group_of(&self, c: usize) -> Option<usize> {
        let g = self.ends.partition_point(|&e| e <= c);
        (g < self.ends.len()).then_some(g)
    }
}

impl CustomOp3 for PrefixMse {
    fn name(&self) -> &'static str {
        "radlens-sparse-prefix-mse"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (t, v, w) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
            f32_slice(s3, l3, self.name())?,
        );
        let (rows, d) = l1.shape().dims2()?;
        let groups = self.ends.len();
        let sums = (0..rows)
            .into_par_iter()
            .fold(
                || vec![0f64; groups],
                |mut acc, r| {
                    self.residuals(r, &t[r * d..(r + 1) * d], v, w, |g, res| {
                        acc[g] += res.iter().map(|x| (x * x) as f64).sum::<f64>();
                    });
                    acc
                },
            )
            .reduce(
                || vec![0f64; groups],
                |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
            );
        let out = sums
            .iter()
            .map(|s| (s / rows.max(1) as f64) as f32)
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(groups)))
    }

    fn bwd(
        &self,
        target: &Tensor,
        values: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        const OP: &str = "sparse_prefix_mse backward";
        let idx = &self.idx;
        let (rows, d) = target.dims2()?;
        let (f, _) = w.dims2()?;
        let groups = self.ends.len();
        let gamma: Vec<f32> = grad.to_vec1::<f32>()?;
        // Row r's block e[r] holds, for each group g, the sum over prefixes h >= g of
        // (2 / rows) gamma_h residual_h[r]: minus the gradient with respect to group g's
        // decoded contribution; group 0's is the gradient with respect to the target.
        let scale = 2.0 / rows.max(1) as f32;
        let stride = groups * d;
        let mut e = vec![0f32; rows * stride];
        with_f32(target, OP, |t| {
            with_f32(values, OP, |v| {
                with_f32(w, OP, |w| {
                    if stride > 0 {
                        e.par_chunks_mut(stride).enumerate().for_each(|(r, er)| {
                            self.residuals(r, &t[r * d..(r + 1) * d], v, w, |g, res| {
                                axpy(&mut er[g * d..(g + 1) * d], scale * gamma[g], res);
                            });
                            for g in (0..groups - 1).rev() {
                                let (lo, hi) = er.split_at_mut((g + 1) * d);
                                axpy(&mut lo[g * d..], 1.0, &hi[..d]);
                            }
                        });
                    }
                    Ok(())
                })
            })
        })?;
        let block = |g: usize, r: usize| &e[r * stride + g * d..r * stride + (g + 1) * d];
        let (erows, cs) = (idx.entry_rows(), idx.entry_cols());
        let gv = with_f32(w, OP, |w| {
            let mut gv = vec![0f32; idx.nnz()];
            gv.par_iter_mut().enumerate().for_each(|(n, gv)| {
                let (r, c) = (erows[n] as usize, cs[n] as usize);
                if let Some(g) = self.group_of(c) {
                    *gv = -dot(block(g, r), &w[c * d..(c + 1) * d]);
                }
            });
            Ok(gv)
        })?;
        let gw = with_f32(values, OP, |v| {
            let mut gw = vec![0f32; f * d];
            if d > 0 {
                gw.par_chunks_mut(d).enumerate().for_each(|(c, gw)| {
                    if let Some(g) = self.group_of(c) {
                        for &n in idx.col_entries(c) {
                            axpy(gw, -v[n as usize], block(g, erows[n as usize] as usize));
                        }
                    }
                });
            }
            Ok(gw)
        })?;
        let gt: Vec<f32> = (0..rows)
            .flat_map(|r| block(0, r).iter().copied())
            .collect();
        let dev = target.device();
        Ok((
            Some(Tensor::from_vec(gt, (rows, d), dev)?),
            Some(Tensor::from_vec(gv, idx.nnz(), dev)?),
            Some(Tensor::from_vec(gw, (f, d), dev)?),
        ))
    }
}
