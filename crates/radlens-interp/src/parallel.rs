//! Running independent model inputs on several threads at once.

use crate::{InterpError, Result};

/// `f(item)` for every item on `workers` threads (item `i` goes to thread `i % workers`);
/// results in input order. The threads share one model: each sequence owns its KV cache.
pub(crate) fn map_items<T, R>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
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
                scope.spawn(move || -> Result<Vec<(usize, R)>> {
                    items
                        .iter()
                        .enumerate()
                        .skip(w)
                        .step_by(workers)
                        .map(|(i, item)| Ok((i, f(item)?)))
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
