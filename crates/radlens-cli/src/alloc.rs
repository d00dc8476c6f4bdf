//! Allocator tuning for training loops.
//!
//! glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
//! `mmap` and unmaps it on free, so tensors of that size made in every step (an SAE's
//! batch x dictionary pre-activations, a U-Net's feature maps at 256 x 256) are page-faulted
//! and zeroed by the kernel again each step, with a TLB shootdown on every unmap: a quarter
//! of an SAE training step on this 2-core machine (`perf`). Keeping large blocks on the
//! heap lets the next step reuse them.

/// Makes glibc's malloc keep freed large blocks for reuse (no-op on other C libraries).
pub fn reuse_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
