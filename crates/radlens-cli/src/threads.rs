//! The thread count of candle's and radlens-kernels' parallel ops, fixed once per process.
//!
//! candle 0.11 looks the count up on every matrix product (`utils::get_num_threads`). With
//! no valid `RAYON_NUM_THREADS` that lookup counts the physical cores by parsing
//! `/proc/cpuinfo`: one SemanticGAN training run of one step opened it 50,829 times
//! (`strace`), about 10% of a step's time on this 2-core machine (`perf`). Setting it once,
//! to the count candle would choose, keeps its choice and makes the lookup an environment
//! read. rayon's global pool reads the same variable, so radlens' own parallel loops take
//! that count too (on a machine with SMT, physical cores rather than logical ones).

/// Sets `RAYON_NUM_THREADS` to candle's own default when it is unset or unusable.
pub fn pin_thread_count() {
    let current = std::env::var("RAYON_NUM_THREADS").ok();
    if needs_pinning(current.as_deref()) {
        // candle's default, computed once here (the variable is unusable, so it is ignored)
        let threads = candle_core::utils::get_num_threads();
        // Called first thing in `main`, before any other thread reads the environment.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// Whether candle would ignore this value of `RAYON_NUM_THREADS` (it takes a count > 0).
fn needs_pinning(current: Option<&str>) -> bool {
    !current.is_some_and(|v| v.parse::<usize>().is_ok_and(|n| n > 0))
}

#[cfg(test)]
mod tests {
    use super::needs_pinning;

    #[test]
    fn only_a_count_candle_would_ignore_is_replaced() {
        for (value, replace) in [
            (None, true),
            (Some(""), true),
            (Some("0"), true),
            (Some("two"), true),
            (Some("-1"), true),
            (Some("2"), false),
            (Some("16"), false),
        ] {
            assert_eq!(needs_pinning(value), replace, "{value:?}");
        }
    }
}
