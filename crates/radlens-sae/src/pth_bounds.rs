//! Bounds on a PyTorch `ae.pt` checked before candle reads it. candle's pickle reader
//! allocates what the file claims: a string's 4-byte length in the pickle, and a tensor's
//! bytes from the shape in its storage record. A mutated 1 KB file then asks for
//! gigabytes (the `sae_ae_pt` fuzz target found the first: a 4 GB string). Both claims are
//! checked against what the file holds first. The objects the pickle builds are bounded
//! too: candle builds them as owned trees, so nesting costs stack when a tree is dropped
//! (an 800 KB file of nested lists overflowed it) and every memo read copies a tree (a few
//! hundred bytes can double one forty times).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The largest pickle read: a state dict's pickle is a few KiB (the tensors are separate
/// zip entries).
const MAX_PICKLE: u64 = 1 << 20;

/// The deepest object nesting accepted: a state dict's pickle nests about 5 deep.
const MAX_DEPTH: u32 = 64;
/// The most objects candle may build, memo copies included: a state dict's pickle builds
/// a few hundred per tensor.
const MAX_OBJECTS: u64 = 1 << 20;

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
    let mut objects = Objects::default();
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
        let index = |n: usize| {
            let mut b = [0u8; 4];
            b[..n].copy_from_slice(&pkl[at..at + n]);
            u32::from_le_bytes(b)
        };
        let known = match code {
            op::BINGET => objects.get(index(1)),
            op::LONG_BINGET => objects.get(index(4)),
            op::BINPUT => objects.put(index(1)),
            op::LONG_BINPUT => objects.put(index(4)),
            _ => objects.apply(code),
        };
        // A stack that does not hold what an opcode needs: candle refuses the pickle there,
        // and every object built before was checked.
        if known.is_none() {
            return Ok(());
        }
        objects.check()?;
        at += arg;
    }
    Ok(())
}

/// How deep and how large an object candle builds is.
#[derive(Debug, Clone, Copy, Default)]
struct Tree {
    depth: u32,
    nodes: u64,
}

impl Tree {
    const LEAF: Tree = Tree { depth: 0, nodes: 1 };

    /// A new container of `children`.
    fn holding(children: impl IntoIterator<Item = Tree>) -> Tree {
        Tree { depth: 1, nodes: 1 }.with(children)
    }

    /// This container with `children` added (APPEND, SETITEM, BUILD and the like).
    fn with(self, children: impl IntoIterator<Item = Tree>) -> Tree {
        children.into_iter().fold(self, |t, c| Tree {
            depth: t.depth.max(c.depth.saturating_add(1)),
            nodes: t.nodes.saturating_add(c.nodes),
        })
    }
}

/// The shapes of the objects on candle's pickle stack (`None` is a mark) and in its memo,
/// and how many objects it has built.
#[derive(Default)]
struct Objects {
    stack: Vec<Option<Tree>>,
    memo: HashMap<u32, Tree>,
    built: u64,
    deepest: u32,
}

impl Objects {
    /// Push `t`, of which `new` objects are built now (the rest were moved from the stack).
    fn push(&mut self, t: Tree, new: u64) -> Option<()> {
        self.built = self.built.saturating_add(new);
        self.deepest = self.deepest.max(t.depth);
        self.stack.push(Some(t));
        Some(())
    }

    /// Push a container made now of `children` moved from the stack.
    fn push_container(&mut self, children: Vec<Tree>) -> Option<()> {
        self.push(Tree::holding(children), 1)
    }

    fn pop(&mut self) -> Option<Tree> {
        self.stack.pop()?
    }

    fn pop_to_mark(&mut self) -> Option<Vec<Tree>> {
        let mark = self.stack.iter().rposition(Option::is_none)?;
        let items = self
            .stack
            .split_off(mark + 1)
            .into_iter()
            .flatten()
            .collect();
        self.stack.pop();
        Some(items)
    }

    /// Put `children`, moved from the stack, into the container on top of it.
    fn extend_top(&mut self, children: Vec<Tree>) -> Option<()> {
        let top = self.pop()?;
        self.push(top.with(children), 0)
    }

    /// A memo read copies the stored object; a memo write copies the top one.
    fn get(&mut self, key: u32) -> Option<()> {
        let t = *self.memo.get(&key)?;
        self.push(t, t.nodes)
    }

    fn put(&mut self, key: u32) -> Option<()> {
        let t = (*self.stack.last()?)?;
        self.built = self.built.saturating_add(t.nodes);
        self.memo.insert(key, t);
        Some(())
    }

    /// The stack effect of `code` (what candle's reader does with it).
    fn apply(&mut self, code: u8) -> Option<()> {
        match code {
            b'(' => {
                self.stack.push(None);
                Some(())
            }
            b')' | b']' | b'}' => self.push_container(vec![]),
            b't' | b'd' => {
                let items = self.pop_to_mark()?;
                self.push_container(items)
            }
            0x85..=0x87 => {
                let items = (0..code - 0x84)
                    .map(|_| self.pop())
                    .collect::<Option<Vec<_>>>()?;
                self.push_container(items)
            }
            b'a' | b's' | b'b' => {
                let n = if code == b's' { 2 } else { 1 };
                let items = (0..n).map(|_| self.pop()).collect::<Option<Vec<_>>>()?;
                self.extend_top(items)
            }
            b'e' | b'u' => {
                let items = self.pop_to_mark()?;
                self.extend_top(items)
            }
            b'R' | 0x81 => {
                let items = vec![self.pop()?, self.pop()?];
                self.push_container(items)
            }
            b'Q' => {
                let id = self.pop()?;
                self.push_container(vec![id])
            }
            op::PROTO | op::STOP => Some(()),
            _ => self.push(Tree::LEAF, 1),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.deepest > MAX_DEPTH {
            return Err(format!(
                "the pickle nests objects {} deep (a state dict's nests about 5; at most {MAX_DEPTH} read)",
                self.deepest
            ));
        }
        if self.built > MAX_OBJECTS {
            return Err(format!(
                "the pickle builds over {MAX_OBJECTS} objects, memo copies included (a state \
                 dict's builds a few thousand)"
            ));
        }
        Ok(())
    }
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

    /// `n` empty lists, each then appended to the one below: nesting `n` deep.
    fn nested_lists(n: usize) -> Vec<u8> {
        [&b"\x80\x02"[..], &vec![b']'; n], &vec![b'a'; n - 1], b"."].concat()
    }

    #[test]
    fn deep_nesting_is_refused() {
        assert_eq!(check_pickle(&nested_lists(64)), Ok(()));
        let err = check_pickle(&nested_lists(65)).unwrap_err();
        assert!(err.contains("nests objects 65 deep"), "{err}");
        // the fuzz-sized case that overflowed the stack when candle dropped it
        assert!(check_pickle(&nested_lists(400_000)).is_err());
        // tuples nest too: ((((1,),),),) ... built with TUPLE1, refused at the 65th
        let tuples = [&b"K\x01"[..], &[0x85; 70], b"."].concat();
        assert!(check_pickle(&tuples).unwrap_err().contains("65 deep"));
    }

    #[test]
    fn adding_to_a_container_does_not_nest_it() {
        // one list with 1,000 APPENDs and a dict with 1,000 SETITEMs: depth 1 each
        let list = [&b"\x80\x02]"[..], &b"K\x01a".repeat(1000), b"."].concat();
        assert_eq!(check_pickle(&list), Ok(()));
        let dict = [&b"\x80\x02}"[..], &b"K\x01K\x02s".repeat(1000), b"."].concat();
        assert_eq!(check_pickle(&dict), Ok(()));
    }

    #[test]
    fn memo_copies_that_double_an_object_are_refused() {
        // x = []; then 25 times: memo[0] = x; x = (memo[0], memo[0])
        let mut pkl = b"\x80\x02]".to_vec();
        for _ in 0..25 {
            pkl.extend_from_slice(b"q\x00h\x00h\x00\x86");
        }
        pkl.push(b'.');
        let err = check_pickle(&pkl).unwrap_err();
        assert!(err.contains("objects, memo copies included"), "{err}");
        // the same with 5 doublings is a few hundred objects
        let small = [&b"\x80\x02]"[..], &b"q\x00h\x00h\x00\x86".repeat(5), b"."].concat();
        assert_eq!(check_pickle(&small), Ok(()));
    }

    #[test]
    fn a_state_dict_pickle_passes() {
        // torch.save({"W": tensor}) as torch writes it (protocol 2), one float tensor
        let pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00Wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x04tq\x07QK\x00K\x02K\x02\x86q\x08K\x02K\x01\x86q\t\x89ccollections\nOrderedDict\nq\n)Rq\x0btq\x0cRq\rs.";
        assert_eq!(check_pickle(pkl), Ok(()));
    }
}
