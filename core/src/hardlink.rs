//! Hardlink resolution: one walk that the reader runs over its tree and the writer over its
//! input's entries, so the writer refuses exactly the links its reader would.
//!
//! Each link names a target; the target may itself be a link, so links form chains that end at
//! the one inode they all share. The rules: a link whose own target does not exist is at fault
//! (checked for every link before any chain is walked, so the first such link in order is the
//! one named); a chain that ends at a directory is refused, naming the link whose target it is;
//! a chain that comes back to itself is refused, naming the link that closes the cycle. Chains
//! are walked iteratively and each link is resolved once, so n links cost O(n) steps here (plus
//! the caller's lookups), never a recursion n deep.

use alloc::vec::Vec;

/// Where one link's own target leads, as the caller looked it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// No such name.
    Missing,
    /// A directory (the root included).
    Dir,
    /// Another link: its position in the caller's list of links.
    Link(u32),
    /// Anything else: the inode the chain ends at, in the caller's numbering.
    Final(u32),
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Its target does not exist.
    Missing,
    /// Its chain ends at a directory.
    Dir,
    /// Its chain comes back to itself.
    Cycle,
}

/// Follows every link of `direct` (link `i`'s own target is `direct[i]`) to the inode its chain
/// ends at. On a fault, returns the position of the link at fault and why.
pub(crate) fn resolve(direct: &[Target]) -> Result<Vec<u32>, (usize, Fault)> {
    if let Some(i) = direct.iter().position(|t| *t == Target::Missing) {
        return Err((i, Fault::Missing));
    }
    const UNRESOLVED: u32 = u32::MAX;
    const IN_PROGRESS: u32 = u32::MAX - 1;
    let mut resolved: Vec<u32> = alloc::vec![UNRESOLVED; direct.len()];
    let mut walk: Vec<usize> = Vec::new();
    for start in 0..direct.len() {
        if resolved.get(start) != Some(&UNRESOLVED) {
            continue;
        }
        let mut cur = start;
        let target = loop {
            // `cur` is `start` or a `Link` position checked below, so both lookups hit; a miss
            // is a target out of the list, which is a dangling link.
            let (Some(state), Some(&next)) = (resolved.get_mut(cur), direct.get(cur)) else {
                return Err((cur, Fault::Missing));
            };
            *state = IN_PROGRESS;
            walk.push(cur);
            match next {
                Target::Missing => return Err((cur, Fault::Missing)),
                Target::Dir => return Err((cur, Fault::Dir)),
                Target::Final(inode) => break inode,
                Target::Link(k) => {
                    let k = k as usize;
                    match resolved.get(k) {
                        None => return Err((cur, Fault::Missing)),
                        Some(&UNRESOLVED) => cur = k,
                        Some(&IN_PROGRESS) => return Err((cur, Fault::Cycle)),
                        Some(&done) => break done,
                    }
                }
            }
        };
        for &i in &walk {
            if let Some(state) = resolved.get_mut(i) {
                *state = target;
            }
        }
        walk.clear();
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Target::*;

    #[test]
    fn chains_end_at_their_inode() {
        // 0 -> 1 -> 2 -> inode 7; 3 -> inode 9; 4 -> 1.
        let direct = [Link(1), Link(2), Final(7), Final(9), Link(1)];
        assert_eq!(resolve(&direct), Ok(alloc::vec![7, 7, 7, 9, 7]));
        assert_eq!(resolve(&[]), Ok(alloc::vec![]));
    }

    #[test]
    fn faults_name_the_link_at_fault() {
        // The first missing target in order, even when a chain walked earlier would meet another.
        assert_eq!(resolve(&[Link(2), Final(1), Missing, Missing]), Err((2, Fault::Missing)));
        assert_eq!(resolve(&[Link(1), Dir]), Err((1, Fault::Dir)));
        // 0 -> 1 -> 2 -> 1: link 2 closes the cycle; link 0 only leads into it.
        assert_eq!(resolve(&[Link(1), Link(2), Link(1)]), Err((2, Fault::Cycle)));
        assert_eq!(resolve(&[Link(0)]), Err((0, Fault::Cycle)));
        assert_eq!(resolve(&[Link(5)]), Err((0, Fault::Missing)));
    }
}
