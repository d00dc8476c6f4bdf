//! Bounds on a PyTorch `ae.pt` checked before candle reads it. candle's pickle reader
//! allocates what the file claims: a string's 4-byte length in the pickle, and a tensor's
//! bytes from the shape in its storage record. A mutated 1 KB file then asks for
//! gigabytes (the `sae_ae_pt` fuzz target found the first: a 4 GB string). Both claims are
//! checked against what the file holds first.

use std::io::Read;
use std::path::Path;

/// The largest pickle read: a state dict's pickle is a few KiB (the tensors are separate
/// zip entries).
const MAX_PICKLE: u64 = 1 << 20;

/// Opcode argument sizes of the pickle subset candle reads (`candle_core::pickle`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const BININT: u8 = b'J';
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const LONG1: u8 = 0x8a;
    pub const STOP: u8 = b'.';
    /// Opcodes without an argument that candle reads.
    pub const NO_ARG: &[u8] = b")R(tQ\x85\x86\x87\x88\x89Nsu}db\x81]ae";
}

/// Scan a pickle the way candle reads it and refuse any length that runs past its end.
/// Scanning stops at STOP or at an opcode candle does not read (candle refuses it there).
pub(crate) fn check_pickle(pkl: &[u8]) -> Result<(), String> {
    let mut at = 0;
    while let Some(&code) = pkl.get(at) {
        at += 1;
        let rest = pkl.len() - at;
        let arg = match code {
            op::STOP => return Ok(()),
            op::PROTO | op::BININT1 | op::BINGET | op::BINPUT => 1,
            op::BININT2 => 2,
            op::BININT | op::LONG_BINGET | op::LONG_BINPUT => 4,
            op::BINFLOAT => 8,
            op::BINUNICODE => {
                let len = pkl
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or("the pickle ends inside a string length")?;
                if len > rest - 4 {
                    return Err(format!(
                        "a string in the pickle claims {len} bytes, {} remain",
                        rest - 4
                    ));
                }
                4 + len
            }
            op::LONG1 => {
                let n = usize::from(*pkl.get(at).ok_or("the pickle ends inside a LONG1")?);
                if n > 8 {
                    return Err(format!("a LONG1 integer of {n} bytes (at most 8 are read)"));
                }
                1 + n
            }
            // Module and class name, each ending at a newline.
            op::GLOBAL => {
                let lines = pkl[at..].iter().enumerate().filter(|(_, &b)| b == b'\n');
                match lines.map(|(i, _)| i).nth(1) {
                    Some(end) => end + 1,
                    None => return Err("the pickle ends inside a GLOBAL".into()),
                }
            }
            c if op::NO_ARG.contains(&c) => 0,
            _ => return Ok(()),
        };
        if arg > rest {
            return Err(format!("the pickle ends inside opcode 0x{code:02x}"));
        }
        at += arg;
    }
    Ok(())
}

/// Check every `*data.pkl` entry of the zip at `path` with [`check_pickle`].
pub(crate) fn check_pickles(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format!("not a PyTorch zip file: {e}"))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().map_err(|e| e.to_string())?.into_owned();
        if !name.ends_with("data.pkl") {
            continue;
        }
        if entry.size() > MAX_PICKLE {
            return Err(format!(
                "{name} is {} bytes; a state dict's pickle is a few KiB (at most {MAX_PICKLE} read)",
                entry.size()
            ));
        }
        let mut pkl = Vec::new();
        (&mut entry)
            .take(MAX_PICKLE)
            .read_to_end(&mut pkl)
            .map_err(|e| format!("{name}: {e}"))?;
        check_pickle(&pkl).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Refuse tensor records whose shape needs more bytes than the file holds (torch writes
/// storages uncompressed), before candle allocates them.
pub(crate) fn check_tensor_sizes(
    pth: &candle_core::pickle::PthTensors,
    file_len: u64,
) -> Result<(), String> {
    for (name, info) in pth.tensor_infos() {
        let elements = info
            .layout
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_add(info.layout.start_offset()));
        let bytes = elements.and_then(|n| n.checked_mul(info.dtype.size_in_bytes()));
        if bytes.is_none_or(|b| b as u64 > file_len) {
            return Err(format!(
                "tensor {name} of shape {:?} needs more bytes than the file's {file_len}",
                info.layout.dims()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_pickle;

    #[test]
    fn string_lengths_past_the_end_are_refused() {
        // PROTO 2, BINUNICODE "ab", STOP.
        assert_eq!(check_pickle(b"\x80\x02X\x02\0\0\0ab."), Ok(()));
        let err = check_pickle(b"\x80\x02X\xff\xff\xff\xffab.").unwrap_err();
        assert!(err.contains("claims 4294967295 bytes, 3 remain"), "{err}");
        assert!(check_pickle(b"X\x02\0").is_err());
    }

    #[test]
    fn other_arguments_are_skipped_by_their_sizes() {
        // GLOBAL "m\nc\n", BININT1, BININT2, BININT, BINFLOAT, LONG1 of 2 bytes, then a
        // string whose length is only right if every argument above was skipped exactly.
        let pkl = b"cm\nc\nK\x01M\x01\x02J\x01\x02\x03\x04G12345678\x8a\x02\x01\x02X\x01\0\0\0z.";
        assert_eq!(check_pickle(pkl), Ok(()));
        assert!(check_pickle(b"\x8a\x09123456789.")
            .unwrap_err()
            .contains("9 bytes"));
        assert!(check_pickle(b"cm\nc").unwrap_err().contains("GLOBAL"));
        assert!(check_pickle(b"J\x01\x02").unwrap_err().contains("0x4a"));
        // Scanning stops at an opcode candle does not read.
        assert_eq!(check_pickle(b"\x95X\xff\xff\xff\xff"), Ok(()));
    }
}
