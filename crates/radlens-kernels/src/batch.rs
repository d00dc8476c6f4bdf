//! Drivers that spread per-batch-item work over candle's threads.
//!
//! With at least as many items as threads, items run concurrently and each kernel runs
//! single-threaded; otherwise items run in turn and each kernel is told to parallelise itself.

use crate::gemm_util::num_threads;
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// Per-thread scratch space, kept between calls so that large column matrices are not
    /// allocated (and page-faulted in) for every convolution.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer of at least `len` elements (content unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                *buf = vec![0f32; len];
            }
            f(&mut buf[..len])
        }
        // re-entered (a nested parallel call ran on this thread): use a fresh buffer
        Err(_) => f(&mut vec![0f32; len]),
    })
}

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
            .for_each(|(i, out_item)| {
                with_scratch(scratch_len, |scratch| f(i, out_item, scratch, false))
            });
    } else {
        with_scratch(scratch_len, |scratch| {
            for (i, out_item) in out.chunks_mut(item_len).enumerate() {
                f(i, out_item, scratch, true);
            }
        })
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
                || vec![0f32; acc_len],
                |mut acc, i| {
                    with_scratch(scratch_len, |scratch| f(i, &mut acc, scratch, false));
                    acc
                },
            )
            .reduce_with(|mut total, part| {
                total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
                total
            })
            .unwrap_or_else(|| vec![0f32; acc_len])
    } else {
        let mut acc = vec![0f32; acc_len];
        with_scratch(scratch_len, |scratch| {
            for i in 0..items {
                f(i, &mut acc, scratch, true);
            }
        });
        acc
    }
}
