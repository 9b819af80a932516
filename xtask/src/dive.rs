//! dive's image efficiency, computed from the layer tars and corrected where dive miscounts.
//!
//! [dive](https://github.com/wagoodman/dive) (`dive/filetree/efficiency.go`) reports three figures. We keep
//! its *score* exactly, so it stays comparable with what people see in dive, and correct the other two:
//!
//! - **score**: for every path that appears as a leaf (a non-directory entry or a whiteout) in any layer,
//!   collect its occurrences; score = Σ(smallest occurrence per path) / Σ(all occurrences per path), and 1.0
//!   when nothing was found (dive's old NaN). A whiteout's occurrence is sized as dive sizes it: the files
//!   under the directory it deletes in the stack below, and 0 when it deletes a single file (dive only walks
//!   the lower node when it is a directory).
//! - **wasted bytes**: the bytes of every file some layer stores that the final filesystem does not show,
//!   because a later layer overwrote it, deleted it, or hid it. dive instead adds up every occurrence of a
//!   path seen at least twice, so the copy that is kept counts as waste too (100 B rewritten as 50 B: dive
//!   says 150 B, the truth is 100 B), and files under a deleted directory are not counted at all.
//! - **wasted user fraction**: wasted bytes over the bytes of every layer above the first, and 0.0 rather
//!   than dive's NaN for a one-layer image. Like dive's, it can exceed 1 when a thin layer deletes much of
//!   the base layer.
//!
//! Opaque directories (`dir/.wh..wh..opq`), which dive does not understand, hide everything the layers
//! below hold under `dir`: those files count as wasted, and for the score the marker is one occurrence of
//! `dir` sized like a whiteout of that directory.

use std::collections::{BTreeMap, HashMap};

use crate::model::Efficiency;

/// The prefix OCI and AUFS layers use to mark a deleted path.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The file whose presence makes its directory opaque.
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// One entry of a layer tar, classified by [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalized path: no leading `./` or `/`, no trailing `/`; empty for the root directory.
    pub path: String,
    /// The entry's own size in the tar; 0 for directories and whiteout markers.
    pub size: u64,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file, symlink, hard link or device: anything that is not a directory.
    File,
    Dir,
    /// Deletes `path` (a file or a whole directory) from the layers below.
    Whiteout,
    /// Hides everything under `path` that the layers below hold; the directory itself stays.
    OpaqueDir,
}

/// Classifies one tar entry: normalizes its path and turns whiteout markers into what they delete.
///
/// `dir/.wh.name` becomes a [`EntryKind::Whiteout`] of `dir/name` and `dir/.wh..wh..opq` an
/// [`EntryKind::OpaqueDir`] of `dir`. Other `.wh..wh.` names are AUFS bookkeeping that image builders no
/// longer write; they are kept as ordinary entries.
pub fn classify(path_in_tar: &str, is_dir: bool, size: u64) -> Entry {
    let path = normalize(path_in_tar);
    let (parent, name) = match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path.as_str()),
    };
    if name == OPAQUE_MARKER {
        return Entry {
            path: parent.to_owned(),
            size: 0,
            kind: EntryKind::OpaqueDir,
        };
    }
    if let Some(deleted) = name.strip_prefix(WHITEOUT_PREFIX) {
        if !deleted.is_empty() && !deleted.starts_with(WHITEOUT_PREFIX) {
            return Entry {
                path: join(parent, deleted),
                size: 0,
                kind: EntryKind::Whiteout,
            };
        }
    }
    if is_dir {
        Entry {
            path,
            size: 0,
            kind: EntryKind::Dir,
        }
    } else {
        Entry {
            path,
            size,
            kind: EntryKind::File,
        }
    }
}

/// Strips every leading `./` and `/` and every trailing `/`.
fn normalize(path: &str) -> String {
    let mut rest = path;
    loop {
        if let Some(stripped) = rest.strip_prefix("./") {
            rest = stripped;
        } else if let Some(stripped) = rest.strip_prefix('/') {
            rest = stripped;
        } else {
            break;
        }
    }
    let rest = rest.trim_end_matches('/');
    if rest == "." {
        String::new()
    } else {
        rest.to_owned()
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Computes the image efficiency of `layers` (bottom first), given each layer's size in bytes.
///
/// `layer_sizes` only feeds the denominator of `wasted_user_fraction`: the sum of every size but the first.
pub fn efficiency(layers: &[Vec<Entry>], layer_sizes: &[u64]) -> Efficiency {
    let mut stack = Stack::default();
    let mut occurrences: HashMap<&str, Occurrences> = HashMap::new();
    for layer in layers {
        for entry in layer.iter().filter(|e| e.kind != EntryKind::Dir) {
            let score_size = match entry.kind {
                EntryKind::File => entry.size,
                EntryKind::Whiteout if stack.is_file(&entry.path) => 0,
                _ => stack.size_under(&entry.path),
            };
            occurrences
                .entry(entry.path.as_str())
                .or_default()
                .add(score_size);
        }
        stack.apply(layer);
    }

    let (kept, seen) = occurrences.values().fold((0u64, 0u64), |(kept, seen), o| {
        (kept + o.min, seen + o.total)
    });
    let user_bytes: u64 = layer_sizes.iter().skip(1).sum();
    Efficiency {
        score: if seen == 0 {
            1.0
        } else {
            kept as f64 / seen as f64
        },
        wasted_bytes: stack.wasted,
        wasted_user_fraction: if user_bytes == 0 {
            0.0
        } else {
            stack.wasted as f64 / user_bytes as f64
        },
    }
}

/// Every occurrence of one path, reduced to what the score needs.
#[derive(Debug, Default)]
struct Occurrences {
    min: u64,
    total: u64,
    count: u32,
}

impl Occurrences {
    fn add(&mut self, size: u64) {
        self.min = if self.count == 0 {
            size
        } else {
            self.min.min(size)
        };
        self.total += size;
        self.count += 1;
    }
}

/// The stacked filesystem of the layers applied so far, and the bytes it no longer shows.
#[derive(Debug, Default)]
struct Stack {
    /// Every visible path; directories are present when a layer listed them explicitly.
    nodes: BTreeMap<String, Node>,
    wasted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

impl Stack {
    fn is_file(&self, path: &str) -> bool {
        matches!(self.nodes.get(path), Some(Node::File(_)))
    }

    /// Bytes of the files at or under `path` (the whole tree for the root, `""`).
    fn size_under(&self, path: &str) -> u64 {
        self.subtree(path, true)
            .iter()
            .filter_map(|p| self.file_size(p))
            .sum()
    }

    fn file_size(&self, path: &str) -> Option<u64> {
        match self.nodes.get(path) {
            Some(Node::File(size)) => Some(*size),
            _ => None,
        }
    }

    /// Paths strictly under `path`, plus `path` itself when `inclusive`.
    fn subtree(&self, path: &str, inclusive: bool) -> Vec<String> {
        if path.is_empty() {
            return self.nodes.keys().cloned().collect();
        }
        let prefix = format!("{path}/");
        let below = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone());
        let own = (inclusive && self.nodes.contains_key(path)).then(|| path.to_owned());
        own.into_iter().chain(below).collect()
    }

    /// Removes these paths, counting the files among them as wasted.
    fn hide(&mut self, paths: Vec<String>) {
        for path in paths {
            if let Some(Node::File(size)) = self.nodes.remove(&path) {
                self.wasted += size;
            }
        }
    }

    /// Applies one layer: its deletions act on the layers below only (as the OCI spec says, an entry next to
    /// an opaque marker in the same layer survives), then its entries are added in order.
    fn apply(&mut self, layer: &[Entry]) {
        for entry in layer {
            match entry.kind {
                EntryKind::Whiteout => self.hide(self.subtree(&entry.path, true)),
                EntryKind::OpaqueDir => self.hide(self.subtree(&entry.path, false)),
                EntryKind::File | EntryKind::Dir => {}
            }
        }
        for entry in layer {
            let node = match entry.kind {
                EntryKind::File => Node::File(entry.size),
                EntryKind::Dir => Node::Dir,
                EntryKind::Whiteout | EntryKind::OpaqueDir => continue,
            };
            self.add(&entry.path, node);
        }
    }

    fn add(&mut self, path: &str, node: Node) {
        if path.is_empty() {
            return;
        }
        // A file at `a` becomes a directory when a later layer writes `a/b`: the file is gone.
        let ancestors: Vec<String> = path
            .match_indices('/')
            .map(|(i, _)| path[..i].to_owned())
            .filter(|a| self.is_file(a))
            .collect();
        self.hide(ancestors);
        match node {
            // A file replaces whatever was at its path, including a whole directory.
            Node::File(_) => self.hide(self.subtree(path, true)),
            Node::Dir if self.is_file(path) => self.hide(vec![path.to_owned()]),
            Node::Dir => {}
        }
        self.nodes.insert(path.to_owned(), node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        classify(path, false, size)
    }

    fn dir(path: &str) -> Entry {
        classify(path, true, 0)
    }

    #[test]
    fn classify_normalizes_paths() {
        assert_eq!(
            file("./usr/bin/app", 7),
            Entry {
                path: "usr/bin/app".into(),
                size: 7,
                kind: EntryKind::File
            }
        );
        assert_eq!(
            dir("./usr/lib/"),
            Entry {
                path: "usr/lib".into(),
                size: 0,
                kind: EntryKind::Dir
            }
        );
        assert_eq!(
            dir("./"),
            Entry {
                path: String::new(),
                size: 0,
                kind: EntryKind::Dir
            }
        );
        assert_eq!(file("/etc/passwd", 3).path, "etc/passwd");
    }

    #[test]
    fn classify_turns_markers_into_what_they_delete() {
        assert_eq!(
            file("./etc/.wh.motd", 0),
            Entry {
                path: "etc/motd".into(),
                size: 0,
                kind: EntryKind::Whiteout
            }
        );
        assert_eq!(
            file(".wh.tmp", 0),
            Entry {
                path: "tmp".into(),
                size: 0,
                kind: EntryKind::Whiteout
            }
        );
        assert_eq!(
            file("var/cache/.wh..wh..opq", 0),
            Entry {
                path: "var/cache".into(),
                size: 0,
                kind: EntryKind::OpaqueDir
            }
        );
        assert_eq!(file(".wh..wh..opq", 0).kind, EntryKind::OpaqueDir);
        assert_eq!(file("var/.wh..wh.plnk", 5).kind, EntryKind::File);
    }

    #[test]
    fn empty_image_is_fully_efficient() {
        let e = efficiency(&[], &[]);
        assert_eq!(
            e,
            Efficiency {
                score: 1.0,
                wasted_bytes: 0,
                wasted_user_fraction: 0.0
            }
        );
    }

    #[test]
    fn one_layer_image_has_no_nan() {
        let e = efficiency(&[vec![dir("app"), file("app/bin", 500)]], &[500]);
        assert_eq!(
            e,
            Efficiency {
                score: 1.0,
                wasted_bytes: 0,
                wasted_user_fraction: 0.0
            }
        );
    }

    #[test]
    fn overwritten_file_wastes_the_first_copy_only() {
        // Occurrences of `a`: [100, 50] → score (50 + 10) / (150 + 10) = 0.375; dive would say 150 B wasted.
        let layers = [vec![file("a", 100), file("keep", 10)], vec![file("a", 50)]];
        let e = efficiency(&layers, &[110, 50]);
        assert_eq!(e.score, 60.0 / 160.0);
        assert_eq!(e.wasted_bytes, 100);
        assert_eq!(e.wasted_user_fraction, 100.0 / 50.0);
    }

    #[test]
    fn deleted_file_is_wasted_once() {
        // Occurrences of `a`: [100, 0] (dive sizes a file's whiteout 0) → score 0 / 100; waste 100 B.
        let layers = [vec![file("a", 100)], vec![file(".wh.a", 0)]];
        let e = efficiency(&layers, &[100, 0]);
        assert_eq!(e.score, 0.0);
        assert_eq!(e.wasted_bytes, 100);
        assert_eq!(e.wasted_user_fraction, 0.0);
    }

    #[test]
    fn deleted_directory_wastes_every_file_under_it() {
        // Layer 1 writes d/x 30, d/sub/y 70 and z 5; layer 2 rewrites z as 5 and deletes d.
        // Score paths: d/x [30], d/sub/y [70], z [5, 5], d [whiteout sized 30 + 70 = 100]
        //   → (30 + 70 + 5 + 100) / (30 + 70 + 10 + 100) = 205 / 210.
        // Waste: d/x 30 + d/sub/y 70 + the first z 5 = 105, over layer 2's 10 bytes.
        let layers = [
            vec![
                dir("d"),
                file("d/x", 30),
                dir("d/sub"),
                file("d/sub/y", 70),
                file("z", 5),
            ],
            vec![file("z", 5), file(".wh.d", 0)],
        ];
        let e = efficiency(&layers, &[105, 10]);
        assert_eq!(e.score, 205.0 / 210.0);
        assert_eq!(e.wasted_bytes, 105);
        assert_eq!(e.wasted_user_fraction, 10.5);
    }

    #[test]
    fn opaque_directory_hides_lower_files_but_keeps_its_own() {
        // Layer 1: c/old 40, c/also 60, other 1. Layer 2 makes c opaque and writes c/new 20 next to the marker.
        // Score paths: c/old [40], c/also [60], other [1], c [opaque sized 100], c/new [20]
        //   → every path seen once: score 1. Waste: c/old + c/also = 100, over layer 2's 20 bytes.
        let layers = [
            vec![file("c/old", 40), file("c/also", 60), file("other", 1)],
            vec![dir("c"), file("c/new", 20), file("c/.wh..wh..opq", 0)],
        ];
        let e = efficiency(&layers, &[101, 20]);
        assert_eq!(e.score, 1.0);
        assert_eq!(e.wasted_bytes, 100);
        assert_eq!(e.wasted_user_fraction, 5.0);
    }

    #[test]
    fn identical_file_in_two_layers_wastes_one_copy() {
        // Occurrences of `lib.so`: [80, 80] → score 80 / 160; the lower copy (80 B) is hidden.
        let layers = [vec![file("lib.so", 80)], vec![file("lib.so", 80)]];
        let e = efficiency(&layers, &[80, 80]);
        assert_eq!(e.score, 0.5);
        assert_eq!(e.wasted_bytes, 80);
        assert_eq!(e.wasted_user_fraction, 1.0);
    }

    #[test]
    fn file_replacing_a_directory_hides_its_contents() {
        // Layer 2 writes a file where layer 1 had directory `t` with t/a 7 and t/b 3: both are wasted.
        let layers = [vec![file("t/a", 7), file("t/b", 3)], vec![file("t", 1)]];
        let e = efficiency(&layers, &[10, 1]);
        assert_eq!(e.wasted_bytes, 10);
        assert_eq!(e.score, 1.0);
    }

    #[test]
    fn whiteout_of_something_absent_costs_nothing() {
        let layers = [vec![file("a", 9)], vec![file(".wh.missing", 0)]];
        let e = efficiency(&layers, &[9, 0]);
        assert_eq!(
            e,
            Efficiency {
                score: 1.0,
                wasted_bytes: 0,
                wasted_user_fraction: 0.0
            }
        );
    }
}
