//! Drivers that spread per-batch-item work over candle's threads.
//!
//! With at least as many items as threads, items run concurrently and each kernel runs
//! single-threaded; otherwise items run in turn and each kernel is told to parallelise itself.

use crate::gemm_util::num_threads;
use rayon::prelude::*;

/// Runs `f(item, out_item, scratch, parallel)` for each `item_len`-long chunk of `out`.
/// `scratch` is a per-thread buffer of `scratch_len` elements whose content is unspecified.
pub(crate) fn for_each_item<F>(out: &mut [f32], item_len: usize, scratch_len: usize, f: F)
where
    F: Fn(usize, &mut [f32], &mut [f32], bool) + Sync + Send,
{
    if out.is_empty() || item_len == 0 {
        return;
    }
    let threads = num_threads();
    let items = out.len() / item_len;
    if threads > 1 && items >= threads {
        out.par_chunks_mut(item_len)
            .enumerate()
            .with_min_len(items / threads)
            .for_each_init(
                || vec![0f32; scratch_len],
                |scratch, (i, out_item)| f(i, out_item, scratch, false),
            );
    } else {
        let mut scratch = vec![0f32; scratch_len];
        for (i, out_item) in out.chunks_mut(item_len).enumerate() {
            f(i, out_item, &mut scratch, true);
        }
    }
}

/// Sums per-item contributions: runs `f(item, acc, scratch, parallel)` for `items` items, where
/// `f` adds into `acc` (`acc_len` elements, zero-initialised), and returns the total.
pub(crate) fn sum_over_items<F>(items: usize, acc_len: usize, scratch_len: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32], &mut [f32], bool) + Sync + Send,
{
    let threads = num_threads();
    if threads > 1 && items >= threads {
        (0..items)
            .into_par_iter()
            .with_min_len(items / threads)
            .fold(
                || (vec![0f32; acc_len], vec![0f32; scratch_len]),
                |(mut acc, mut scratch), i| {
                    f(i, &mut acc, &mut scratch, false);
                    (acc, scratch)
                },
            )
            .map(|(acc, _)| acc)
            .reduce_with(|mut total, part| {
                total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
                total
            })
            .unwrap_or_else(|| vec![0f32; acc_len])
    } else {
        let mut acc = vec![0f32; acc_len];
        let mut scratch = vec![0f32; scratch_len];
        for i in 0..items {
            f(i, &mut acc, &mut scratch, true);
        }
        acc
    }
}
