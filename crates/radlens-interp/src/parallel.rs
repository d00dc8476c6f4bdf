//! Running independent model inputs on several copies of the model at once.

use crate::{InterpError, Result};
use radlens_lm::HookedLlama;

/// `f(model, item)` for every item, on `workers` copies of `model` sharing its weights
/// (item `i` goes to copy `i % workers`); results in input order.
pub(crate) fn map_items<T, R>(
    model: &HookedLlama,
    items: &[T],
    workers: usize,
    f: impl Fn(&mut HookedLlama, &T) -> Result<R> + Sync,
) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
{
    let workers = workers.clamp(1, items.len().max(1));
    let f = &f;
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mut copy = model.fork();
                scope.spawn(move || -> Result<Vec<(usize, R)>> {
                    items
                        .iter()
                        .enumerate()
                        .skip(w)
                        .step_by(workers)
                        .map(|(i, item)| Ok((i, f(&mut copy, item)?)))
                        .collect()
                })
            })
            .collect();
        for h in handles {
            let done = h
                .join()
                .map_err(|_| InterpError::invalid("a model worker panicked"))??;
            for (i, r) in done {
                slots[i] = Some(r);
            }
        }
        Ok(())
    })?;
    Ok(slots.into_iter().flatten().collect())
}
