//! Access to the raw f32 data of candle CPU storages.

use candle_core::{bail, CpuStorage, DType, Layout, Result, Storage, Tensor};

/// Borrows the data of a contiguous f32 CPU storage.
pub(crate) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected f32 storage")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: expected a contiguous tensor")
    };
    match data.get(start..end) {
        Some(slice) => Ok(slice),
        None => bail!("{op}: layout out of the storage bounds"),
    }
}

/// Borrows the data of a contiguous f32 CPU storage and checks its element count.
pub(crate) fn f32_slice_of_len<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    len: usize,
    op: &str,
) -> Result<&'a [f32]> {
    let data = f32_slice(storage, layout, op)?;
    if data.len() != len {
        bail!(
            "{op}: expected {len} elements, got {} ({:?})",
            data.len(),
            layout.shape()
        )
    }
    Ok(data)
}

/// Borrows the data of a contiguous f32 CPU storage of `len` elements, for tensors that a
/// custom op holds rather than receives as arguments (see `Tensor::storage_and_layout`).
pub(crate) fn held_f32_slice<'a>(
    storage: &'a Storage,
    layout: &Layout,
    len: usize,
    op: &str,
) -> Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        bail!("{op}: expected a CPU tensor")
    };
    f32_slice_of_len(cpu, layout, len, op)
}

/// Whether the fast kernels apply: every tensor is f32 and on the CPU.
pub(crate) fn is_fast_path(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.dtype() == DType::F32 && t.device().is_cpu())
}
