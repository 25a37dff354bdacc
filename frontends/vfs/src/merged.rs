//! The merged root filesystem of an image: its layers stacked in order, with OCI whiteouts
//! applied, equal to what extracting the layers one after another gives.
//!
//! Rules (OCI image spec, "Whiteouts"), applied layer by layer from the bottom:
//! - `.wh..wh..opq` in a directory hides everything lower layers put in it;
//! - `.wh.NAME` hides NAME (and all below it) from lower layers;
//! - both apply to lower layers only, never to the layer that carries them, and neither is
//!   ever shown;
//! - a directory over a directory merges (the upper one's attributes win); anything else
//!   replaces what was there, subtree included.
//!
//! The merged tree is built once, without recursion, into a compact array whose children are
//! sorted ranges; each merged node points at (layer, node) for its attributes and data. Names
//! of one file (hardlinks inside a layer) share the inode number of the first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crfs_core::{Kind, Layer, NodeId, ROOT, ReadAt};

use crate::{
    Attr, ChunkCache, DirEntry, FsError, Ino, LayerFs, OPAQUE_MARKER, Options, ReadOnlyFs, StatFs, WHITEOUT_PREFIX,
    WholeChunk, new_chunk_cache,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Merged {
    layer: u16,
    /// The name's node in that layer (a hardlink node keeps its own name).
    node: NodeId,
    parent: u32,
    first: u32,
    count: u32,
    /// Inode number: shared by every name of one (layer, inode).
    ino: Ino,
    nlink: u32,
    is_dir: bool,
}

/// An image's layers as one read-only tree.
pub struct MergedFs<R> {
    layers: Vec<LayerFs<R>>,
    /// Breadth first from the root, so each directory's children are the contiguous ids
    /// `first..first + count`, in name order.
    nodes: Vec<Merged>,
    statfs: StatFs,
}

/// A node while building: children by name, borrowed from the layers' indexes.
struct Building<'a> {
    layer: u16,
    node: NodeId,
    is_dir: bool,
    children: BTreeMap<&'a [u8], u32>,
}

/// Whether node `c` of `index` is a directory, through a hardlink too.
fn names_a_dir(index: &crfs_core::Index, c: NodeId) -> bool {
    index.kind(index.resolve(c)) == Some(Kind::Dir)
}

/// Merges the layers' trees into the compact node array and numbers its inodes; returns it with
/// the totals `statfs` reports.
fn build<R: ReadAt + Send + Sync + 'static>(layers: &[LayerFs<R>]) -> Result<(Vec<Merged>, StatFs), FsError> {
    let mut nodes = match layers {
        [only] => single_layer(only.layer().index()),
        _ => merge_layers(layers)?,
    };
    let statfs = number_inodes(layers, &mut nodes)?;
    Ok((nodes, statfs))
}

/// The merged tree of one layer: its own tree without whiteouts (they hide nothing below it),
/// breadth first, each directory's children in the index's name order. The same array
/// [`merge_layers`] makes of that one layer, without its maps.
fn single_layer(index: &crfs_core::Index) -> Vec<Merged> {
    let root = Merged { layer: 0, node: ROOT, parent: 0, first: 0, count: 0, ino: 0, nlink: 0, is_dir: true };
    let mut nodes = Vec::with_capacity(index.len());
    nodes.push(root);
    let mut head = 0;
    while let Some(&n) = nodes.get(head) {
        let first = nodes.len() as u32;
        if n.is_dir {
            for &c in index.children(n.node) {
                if index.name(c).starts_with(WHITEOUT_PREFIX) {
                    continue;
                }
                let is_dir = names_a_dir(index, c);
                nodes.push(Merged {
                    layer: 0,
                    node: c,
                    parent: head as u32,
                    first: 0,
                    count: 0,
                    ino: 0,
                    nlink: 0,
                    is_dir,
                });
            }
        }
        let count = nodes.len() as u32 - first;
        if let Some(m) = nodes.get_mut(head) {
            (m.first, m.count) = (first, count);
        }
        head += 1;
    }
    nodes
}

/// Merges several layers' trees into the compact node array, inodes not yet numbered. Every id
/// used here was handed out here, so a miss (reported as `Io`) would be a bug in this
/// function, not a fault of the layers. Names are borrowed from the layers' indexes while
/// building: nothing is allocated per name.
fn merge_layers<R: ReadAt + Send + Sync + 'static>(layers: &[LayerFs<R>]) -> Result<Vec<Merged>, FsError> {
    fn building<'t, 'a>(tree: &'t mut [Building<'a>], id: u32) -> Result<&'t mut Building<'a>, FsError> {
        tree.get_mut(id as usize).ok_or(FsError::Io)
    }
    let mut tree: Vec<Building> = vec![Building { layer: 0, node: ROOT, is_dir: true, children: BTreeMap::new() }];
    for (li, fs) in layers.iter().enumerate() {
        let index = fs.layer().index();
        let li = li as u16;
        // A directory an upper layer only implies keeps the attributes of the one below.
        let explicit = |id: NodeId| index.node(id).is_some_and(|n| !n.is_synthesized());
        if explicit(ROOT) || li == 0 {
            let root = building(&mut tree, 0)?;
            root.layer = li;
            root.node = ROOT;
        }
        let mut stack: Vec<(NodeId, u32)> = vec![(ROOT, 0)];
        while let Some((dir, merged_dir)) = stack.pop() {
            let children = index.children(dir);
            if building(&mut tree, merged_dir)?.children.is_empty() {
                // Nothing below to hide or merge with (every directory of the bottom layer, and
                // a directory new in an upper one): each child is new, and the index lists them
                // in name order, so the map is built in one go.
                let mut fresh: Vec<(&[u8], u32)> = Vec::with_capacity(children.len());
                for &c in children {
                    let name = index.name(c);
                    if name.starts_with(WHITEOUT_PREFIX) {
                        continue;
                    }
                    let is_dir = names_a_dir(index, c);
                    let id = tree.len() as u32;
                    tree.push(Building { layer: li, node: c, is_dir, children: BTreeMap::new() });
                    fresh.push((name, id));
                    if is_dir {
                        stack.push((c, id));
                    }
                }
                building(&mut tree, merged_dir)?.children = fresh.into_iter().collect();
                continue;
            }
            // Whiteouts and the opaque marker first: they hide lower layers only.
            for &c in children {
                let name = index.name(c);
                if name == OPAQUE_MARKER {
                    building(&mut tree, merged_dir)?.children.clear();
                } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                    building(&mut tree, merged_dir)?.children.remove(hidden);
                }
            }
            for &c in children {
                let name = index.name(c);
                if name.starts_with(WHITEOUT_PREFIX) {
                    continue;
                }
                let is_dir = names_a_dir(index, c);
                let existing = building(&mut tree, merged_dir)?.children.get(name).copied();
                let target = match existing {
                    Some(e) if is_dir && tree.get(e as usize).is_some_and(|b| b.is_dir) => {
                        if explicit(c) {
                            let dir = building(&mut tree, e)?;
                            dir.layer = li;
                            dir.node = c;
                        }
                        e
                    }
                    _ => {
                        let id = tree.len() as u32;
                        tree.push(Building { layer: li, node: c, is_dir, children: BTreeMap::new() });
                        building(&mut tree, merged_dir)?.children.insert(name, id);
                        id
                    }
                };
                if is_dir {
                    stack.push((c, target));
                }
            }
        }
    }

    // Compact what is reachable, breadth first: ids, sorted child ranges, parents.
    let mut order: Vec<(u32, u32)> = vec![(0, 0)]; // (building id, parent's new id)
    let mut nodes: Vec<Merged> = Vec::new();
    let mut head = 0;
    while let Some(&(b, parent)) = order.get(head) {
        let new_id = head as u32;
        head += 1;
        let bn = tree.get(b as usize).ok_or(FsError::Io)?;
        let first = order.len() as u32;
        for &child in bn.children.values() {
            order.push((child, new_id));
        }
        let count = order.len() as u32 - first;
        nodes.push(Merged {
            layer: bn.layer,
            node: bn.node,
            parent,
            first,
            count,
            ino: 0,
            nlink: 0,
            is_dir: bn.is_dir,
        });
    }
    drop(tree);
    Ok(nodes)
}

/// Numbers the inodes of a merged tree and counts its links: names of one (layer, inode) share
/// the first one's number. Returns the totals `statfs` reports.
fn number_inodes<R: ReadAt + Send + Sync + 'static>(
    layers: &[LayerFs<R>],
    nodes: &mut [Merged],
) -> Result<StatFs, FsError> {
    // Only names of an inode with several names go through the map: every other name is its
    // own inode.
    let mut first_of: HashMap<(u16, NodeId), u32> = HashMap::new();
    let mut file_bytes = 0u64;
    for id in 0..nodes.len() {
        let node = nodes.get_mut(id).ok_or(FsError::Io)?;
        let n = *node;
        if n.is_dir {
            node.ino = Ino::from(id as u32) + 1;
            node.nlink += 2;
            if id != 0 {
                nodes.get_mut(n.parent as usize).ok_or(FsError::Io)?.nlink += 1;
            }
            continue;
        }
        let index = layers.get(usize::from(n.layer)).ok_or(FsError::Io)?.layer().index();
        let inode = index.resolve(n.node);
        let view = index.node(inode).ok_or(FsError::Io)?;
        let canonical = if inode != n.node || view.nlink() > 1 {
            *first_of.entry((n.layer, inode)).or_insert(id as u32)
        } else {
            id as u32
        };
        node.ino = Ino::from(canonical) + 1;
        nodes.get_mut(canonical as usize).ok_or(FsError::Io)?.nlink += 1;
        if canonical as usize == id {
            file_bytes += view.size();
        }
    }
    let statfs = StatFs {
        blocks: file_bytes.div_ceil(u64::from(crate::BLOCK_SIZE)),
        files: nodes.len() as u64,
        block_size: crate::BLOCK_SIZE,
        name_max: 255,
    };
    Ok(statfs)
}

impl<R: ReadAt + Send + Sync + 'static> MergedFs<R> {
    /// Stacks `layers` (bottom first). All layers share one chunk cache of
    /// `options.cache_bytes`; `options.overlay_whiteouts` is ignored (whiteouts are applied).
    pub fn new(layers: Vec<Arc<Layer<R>>>, options: Options) -> Result<Self, FsError> {
        if layers.is_empty() || layers.len() > usize::from(u16::MAX) {
            return Err(FsError::Invalid);
        }
        let options = Options { overlay_whiteouts: false, ..options };
        let cache: ChunkCache = new_chunk_cache(options.cache_bytes);
        let layers: Vec<LayerFs<R>> = layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| LayerFs::with_cache(l, options, cache.clone(), i as u32))
            .collect();
        let (nodes, statfs) = build(&layers)?;
        Ok(MergedFs { layers, nodes, statfs })
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[LayerFs<R>] {
        &self.layers
    }

    fn merged(&self, ino: Ino) -> Result<&Merged, FsError> {
        let id = usize::try_from(ino.checked_sub(1).ok_or(FsError::NotFound)?).map_err(|_| FsError::NotFound)?;
        self.nodes.get(id).ok_or(FsError::NotFound)
    }

    /// The layer a merged node comes from (always one of `layers`: `build` numbers them).
    fn layer_of(&self, m: &Merged) -> Result<&LayerFs<R>, FsError> {
        self.layers.get(usize::from(m.layer)).ok_or(FsError::Io)
    }

    fn name_of(&self, m: &Merged) -> &[u8] {
        self.layer_of(m).map_or(&[], |fs| fs.layer().index().name(m.node))
    }

    fn attr(&self, m: &Merged) -> Result<Attr, FsError> {
        let canonical = self.merged(m.ino)?;
        let mut attr = self.layer_of(m)?.attr_of(m.node)?;
        attr.ino = m.ino;
        attr.nlink = canonical.nlink;
        Ok(attr)
    }

    fn dir(&self, ino: Ino) -> Result<&Merged, FsError> {
        let m = self.merged(ino)?;
        if m.is_dir { Ok(m) } else { Err(FsError::NotDir) }
    }

    fn child_ids(&self, m: &Merged) -> std::ops::Range<u32> {
        m.first..m.first + m.count
    }

    /// (layer fs, layer-local inode number) behind a merged inode.
    fn local(&self, ino: Ino) -> Result<(&LayerFs<R>, Ino), FsError> {
        let m = self.merged(ino)?;
        Ok((self.layer_of(m)?, Ino::from(m.node) + 1))
    }
}

impl<R: ReadAt + Send + Sync + 'static> ReadOnlyFs for MergedFs<R> {
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.attr(self.merged(ino)?)
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        let dir = self.dir(parent)?;
        match name {
            b"." => return self.attr(dir),
            b".." => return self.attr(self.nodes.get(dir.parent as usize).ok_or(FsError::Io)?),
            _ => {}
        }
        // Children are in name order: binary search their id range.
        let ids = self.child_ids(dir);
        let (mut lo, mut hi) = (ids.start, ids.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let m = self.nodes.get(mid as usize).ok_or(FsError::NotFound)?;
            match self.name_of(m).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.attr(m),
            }
        }
        Err(FsError::NotFound)
    }

    fn parent(&self, ino: Ino) -> Result<Ino, FsError> {
        let dir = self.dir(ino)?;
        Ok(Ino::from(dir.parent) + 1)
    }

    fn readdir(&self, ino: Ino, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<(), FsError> {
        let dir = self.dir(ino)?;
        if offset == 0 && !add(DirEntry { next_offset: 1, name: b".", attr: self.attr(dir)? }) {
            return Ok(());
        }
        let parent = self.nodes.get(dir.parent as usize).ok_or(FsError::Io)?;
        if offset <= 1 && !add(DirEntry { next_offset: 2, name: b"..", attr: self.attr(parent)? }) {
            return Ok(());
        }
        let start = usize::try_from(offset.saturating_sub(2)).unwrap_or(usize::MAX);
        for (i, c) in self.child_ids(dir).enumerate().skip(start) {
            let Some(m) = self.nodes.get(c as usize) else { break };
            let entry = DirEntry { next_offset: i as u64 + 3, name: self.name_of(m), attr: self.attr(m)? };
            if !add(entry) {
                break;
            }
        }
        Ok(())
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let (fs, local) = self.local(ino)?;
        fs.readlink(local).map(<[u8]>::to_vec)
    }

    fn open(&self, ino: Ino) -> Result<(), FsError> {
        let (fs, local) = self.local(ino)?;
        fs.open(local)
    }

    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let (fs, local) = self.local(ino)?;
        fs.read(local, offset, size)
    }

    fn read_with(&self, ino: Ino, offset: u64, size: u32, sink: &mut dyn FnMut(&[u8])) -> Result<(), FsError> {
        let (fs, local) = self.local(ino)?;
        fs.read_with(local, offset, size, sink)
    }

    fn read_if_cached(&self, ino: Ino, offset: u64, size: u32) -> Option<Result<Vec<u8>, FsError>> {
        match self.local(ino) {
            Ok((fs, local)) => fs.read_if_cached(local, offset, size),
            Err(e) => Some(Err(e)),
        }
    }

    fn take_whole_chunk(&self, ino: Ino, offset: u64) -> Option<WholeChunk> {
        let (fs, local) = self.local(ino).ok()?;
        fs.take_whole_chunk(local, offset)
    }

    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let (fs, local) = self.local(ino)?;
        fs.getxattr(local, name)
    }

    fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let (fs, local) = self.local(ino)?;
        fs.listxattr(local)
    }

    fn statfs(&self) -> StatFs {
        self.statfs
    }

    fn has_xattrs(&self) -> bool {
        self.layers.iter().any(|l| l.layer().index().has_xattrs())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crfs_core::FileReadAt;

    /// The one-layer shortcut gives the array the general merge gives that layer, numbering
    /// included (NFS file handles carry these numbers), whiteouts and hardlinks too.
    #[test]
    fn one_layer_merges_as_the_general_merge_would() {
        for fixture in ["all-types.esgz", "many.esgz", "all-types.zstdchunked"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fixtures").join(fixture);
            let layer = Arc::new(Layer::open(FileReadAt::open(&path).unwrap()).unwrap());
            let layers = vec![LayerFs::new(layer, Options::default())];
            let mut general = merge_layers(&layers).unwrap();
            let mut shortcut = single_layer(layers[0].layer().index());
            assert_eq!(shortcut, general, "{fixture}");
            assert_eq!(number_inodes(&layers, &mut shortcut).unwrap(), number_inodes(&layers, &mut general).unwrap());
            assert_eq!(shortcut, general, "{fixture}");
            let index = layers[0].layer().index();
            assert!(shortcut.iter().all(|m| !index.name(m.node).starts_with(WHITEOUT_PREFIX)), "{fixture}");
        }
    }
}
