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
    /// A matrix with contiguous rows that start `row_stride` elements apart: a row-major
    /// matrix whose rows have `row_stride` elements, or a block of columns of a wider one.
    pub(crate) fn rows(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
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

/// A writable strided matrix whose elements do not overlap: rows with contiguous elements
/// (see [`MatRef::rows`]), or the transpose of such a matrix.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// Rows of `data` starting `row_stride` elements apart (see [`MatRef::rows`]).
    pub(crate) fn rows(data: &'a mut [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows have `cols` elements.
    pub(crate) fn transposed(data: &'a mut [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        // the outer stride must step over a whole inner run so that no two elements alias
        let disjoint = match (self.row_stride, self.col_stride) {
            (rs, 1) => rows == 1 || rs >= cols,
            (1, cs) => cols == 1 || cs >= rows,
            _ => false,
        };
        disjoint && (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst = lhs @ rhs` (or `dst += lhs @ rhs` when `accumulate`), with `dst` `m x n`,
/// `lhs` `m x k` and `rhs` `k x n`.
///
/// # Panics
/// If a buffer is too small for the given sizes (an internal bug, never a user error).
pub(crate) fn matmul(
    dst: MatMut,
    (m, n, k): (usize, usize, usize),
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        dst.fits(m, n) && lhs.fits(m, k) && rhs.fits(k, n),
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
            dst.data.as_mut_ptr(),
            dst.col_stride as isize,
            dst.row_stride as isize,
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
