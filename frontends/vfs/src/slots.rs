//! Trees served side by side under one mount, each in its own range of inode numbers (a
//! "slot"), below directories the mount makes up: the numbering and listing the /crfs
//! namespace and the layer store share.
//!
//! Made-up nodes are numbered from 1 (the root) up, below 2^32; the tree in slot `s` uses
//! `(s + 1) << 32 | its own inode number`.

use crate::{Attr, DirEntry, FsError, Ino, ROOT_INO, ReadOnlyFs};

const SLOT_SHIFT: u32 = 32;
/// The bits of a slot inode that are the tree's own inode number.
pub(crate) const LOCAL_MASK: u64 = (1 << SLOT_SHIFT) - 1;

/// The index of a made-up node (its inode number minus one), if `ino` is one.
pub(crate) fn made_up_index(ino: Ino) -> Option<usize> {
    (ino < (1 << SLOT_SHIFT)).then(|| ino.checked_sub(1)).flatten().map(|i| i as usize)
}

/// The slot number of a slot inode.
pub(crate) fn slot_of(ino: Ino) -> Result<usize, FsError> {
    (ino >> SLOT_SHIFT).checked_sub(1).and_then(|s| usize::try_from(s).ok()).ok_or(FsError::NotFound)
}

/// The inode number of `local` in slot `slot`.
pub(crate) fn slot_ino(slot: usize, local: Ino) -> Ino {
    ((slot as u64 + 1) << SLOT_SHIFT) | local
}

/// Whether a slot inode is its tree's root.
pub(crate) fn is_slot_root(ino: Ino) -> bool {
    ino & LOCAL_MASK == ROOT_INO
}

/// Lists a made-up directory from `offset`: `.` and `..` with the attributes `dots` (the
/// directory's, its parent's), then `children` (name, attributes) at offsets 3 and up.
pub(crate) fn list_made_up(
    dots: [Attr; 2],
    children: &[(Vec<u8>, Attr)],
    offset: u64,
    add: &mut dyn FnMut(DirEntry<'_>) -> bool,
) {
    let [dot, dotdot] = dots;
    if offset == 0 && !add(DirEntry { next_offset: 1, name: b".", attr: dot }) {
        return;
    }
    if offset <= 1 && !add(DirEntry { next_offset: 2, name: b"..", attr: dotdot }) {
        return;
    }
    let start = usize::try_from(offset.saturating_sub(2)).unwrap_or(usize::MAX);
    for (i, (name, attr)) in children.iter().enumerate().skip(start) {
        if !add(DirEntry { next_offset: i as u64 + 3, name, attr: *attr }) {
            break;
        }
    }
}

/// Lists directory `ino` of `fs`, the tree in slot `slot`, numbering entries into the slot.
/// `root_dots` are the attributes of `.` and `..` when `ino` is the tree's root, as the
/// mount's own lookup gives them (`..` is the made-up directory holding the tree).
pub(crate) fn list_in_slot(
    fs: &dyn ReadOnlyFs,
    slot: usize,
    ino: Ino,
    root_dots: Option<[Attr; 2]>,
    offset: u64,
    add: &mut dyn FnMut(DirEntry<'_>) -> bool,
) -> Result<(), FsError> {
    fs.readdir(ino & LOCAL_MASK, offset, &mut |mut e| {
        match (root_dots, e.name) {
            (Some([dot, _]), b".") => e.attr = dot,
            (Some([_, dotdot]), b"..") => e.attr = dotdot,
            _ => e.attr.ino = slot_ino(slot, e.attr.ino),
        }
        add(e)
    })
}
