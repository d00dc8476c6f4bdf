//! The timing loop of `radlens bench`: run a step a few times to warm caches and
//! allocators, then time each of the next runs and report the median (robust to the
//! occasional slow run on a shared machine).

use std::time::Instant;

/// Seconds per run: every timed run and their median.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub seconds: Vec<f64>,
    pub median: f64,
}

/// Runs `step` `warmup` times untimed, then `runs` times timed (`runs` > 0).
pub fn time_runs<E>(
    warmup: usize,
    runs: usize,
    mut step: impl FnMut() -> Result<(), E>,
) -> Result<Timing, E> {
    for _ in 0..warmup {
        step()?;
    }
    let mut seconds = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        step()?;
        seconds.push(t.elapsed().as_secs_f64());
    }
    Ok(Timing {
        median: median(seconds.clone()),
        seconds,
    })
}

/// The median (mean of the middle two for an even count; NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn warmup_runs_are_not_timed_and_errors_stop_the_loop() {
        let mut calls = 0;
        let t = time_runs::<()>(2, 3, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((calls, t.seconds.len()), (5, 3));
        let mut n = 0;
        let r = time_runs(0, 5, || {
            n += 1;
            if n == 2 {
                Err("step failed")
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap_err(), "step failed");
    }
}
