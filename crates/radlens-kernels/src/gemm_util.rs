//! Thin safe wrapper over `gemm::gemm` for row-major f32 outputs.

use gemm::Parallelism;

/// Number of threads candle uses for CPU ops.
pub(crate) fn num_threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// GEMM parallelism: all of candle's threads when `parallel`, else single-threaded.
pub(crate) fn parallelism(parallel: bool) -> Parallelism {
    match num_threads() {
        n if parallel && n > 1 => Parallelism::Rayon(n),
        _ => Parallelism::None,
    }
}

/// A read-only strided view of a matrix.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix whose rows have `cols` elements.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows have `cols` elements.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst = lhs @ rhs` (or `dst += lhs @ rhs` when `accumulate`), with `dst` row-major `m x n`,
/// `lhs` `m x k` and `rhs` `k x n`.
///
/// # Panics
/// If a buffer is too small for the given sizes (an internal bug, never a user error).
pub(crate) fn matmul(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n),
        "matmul: buffers too small for {m}x{n}x{k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assert above keeps every accessed element inside its slice, `dst` is
    // exclusively borrowed and does not alias the shared `lhs`/`rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(parallel),
        )
    }
}
