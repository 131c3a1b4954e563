//! The mount's path grammar, once: [`Node::parse`] turns a path into what
//! it names, and `Display` turns a node back into its path. Lookup,
//! listing, content, cache validity and the snapshot diff all go through
//! it, so a path means the same thing everywhere.
//!
//! ```text
//! <ns>/current/...                 promoted files + builtins (an include root)
//! <ns>/staged/...                  the proposed tree, same shape
//! <ns>/current.binpb, staged.binpb descriptor sets of those trees
//! <ns>/schemas/<s>/current|staged  symlinks to versions/<N>
//! <ns>/schemas/<s>/versions/<N>/   files, descriptor.binpb, version.json
//! <ns>/history/<seq>/              the current tree after commit <seq>
//! .protoshelf/stats                counters
//! ```

use std::fmt;

use super::core::{FsError, FsResult};

/// The directory of the mount's own files.
pub const STATS_DIR: &str = ".protoshelf";

/// The file name of a namespace's descriptor set (`staged`: of its
/// proposed tree).
pub fn set_name(staged: bool) -> &'static str {
    if staged {
        "staged.binpb"
    } else {
        "current.binpb"
    }
}

/// Which of a namespace's trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeName {
    Current,
    Staged,
    /// The current tree right after commit `seq`.
    History(u64),
}

/// Which pointer of a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    Current,
    Staged,
}

impl Pointer {
    fn name(self) -> &'static str {
        match self {
            Pointer::Current => "current",
            Pointer::Staged => "staged",
        }
    }
}

/// What is below `versions/<N>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionItem {
    /// The version's directory itself.
    Dir,
    Descriptor,
    Json,
    /// A file or directory of the version's sources (never empty).
    Path(String),
}

/// What a mount path names (not whether it exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Root,
    StatsDir,
    Stats,
    Namespace(String),
    /// A file or directory of a tree; `path` is "" for the tree's root.
    Tree {
        ns: String,
        tree: TreeName,
        path: String,
    },
    /// `current.binpb` (`staged: false`) or `staged.binpb`.
    Set {
        ns: String,
        staged: bool,
    },
    Schemas(String),
    Schema {
        ns: String,
        schema: String,
    },
    /// `schemas/<s>/current|staged`, a symlink to `versions/<N>`.
    Link {
        ns: String,
        schema: String,
        pointer: Pointer,
    },
    Versions {
        ns: String,
        schema: String,
    },
    Version {
        ns: String,
        schema: String,
        version: u64,
        item: VersionItem,
    },
    /// `history/`, the directory of commits.
    History(String),
}

/// A numeric path segment (a version or a commit).
fn number(segment: &str) -> FsResult<u64> {
    segment.parse().map_err(|_| FsError::NotFound)
}

impl Node {
    /// What `path` ("a/b/c", no leading slash; empty segments ignored)
    /// names, or `NotFound` when no path of the grammar looks like it.
    pub fn parse(path: &str) -> FsResult<Node> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let own = |s: &str| s.to_string();
        Ok(match parts.as_slice() {
            [] => Node::Root,
            [STATS_DIR] => Node::StatsDir,
            [STATS_DIR, "stats"] => Node::Stats,
            [STATS_DIR, ..] => return Err(FsError::NotFound),
            [ns] => Node::Namespace(own(ns)),
            [ns, tree @ ("current" | "staged"), tail @ ..] => Node::Tree {
                ns: own(ns),
                tree: if *tree == "current" {
                    TreeName::Current
                } else {
                    TreeName::Staged
                },
                path: tail.join("/"),
            },
            [ns, set @ ("current.binpb" | "staged.binpb")] => Node::Set {
                ns: own(ns),
                staged: *set == "staged.binpb",
            },
            [ns, "schemas"] => Node::Schemas(own(ns)),
            [ns, "schemas", schema] => Node::Schema {
                ns: own(ns),
                schema: own(schema),
            },
            [ns, "schemas", schema, link @ ("current" | "staged")] => Node::Link {
                ns: own(ns),
                schema: own(schema),
                pointer: if *link == "current" {
                    Pointer::Current
                } else {
                    Pointer::Staged
                },
            },
            [ns, "schemas", schema, "versions"] => Node::Versions {
                ns: own(ns),
                schema: own(schema),
            },
            [ns, "schemas", schema, "versions", v, tail @ ..] => Node::Version {
                ns: own(ns),
                schema: own(schema),
                version: number(v)?,
                item: match tail {
                    [] => VersionItem::Dir,
                    ["descriptor.binpb"] => VersionItem::Descriptor,
                    ["version.json"] => VersionItem::Json,
                    _ => VersionItem::Path(tail.join("/")),
                },
            },
            [ns, "history"] => Node::History(own(ns)),
            [ns, "history", seq, tail @ ..] => Node::Tree {
                ns: own(ns),
                tree: TreeName::History(number(seq)?),
                path: tail.join("/"),
            },
            _ => return Err(FsError::NotFound),
        })
    }

    /// The namespace the node is in (None at the root and in `.protoshelf`).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Node::Root | Node::StatsDir | Node::Stats => None,
            Node::Namespace(ns) | Node::Schemas(ns) | Node::History(ns) => Some(ns),
            Node::Tree { ns, .. }
            | Node::Set { ns, .. }
            | Node::Schema { ns, .. }
            | Node::Link { ns, .. }
            | Node::Versions { ns, .. }
            | Node::Version { ns, .. } => Some(ns),
        }
    }

    /// A file or directory of one of a namespace's trees.
    pub fn tree(ns: &str, tree: TreeName, path: &str) -> Node {
        Node::Tree {
            ns: ns.to_string(),
            tree,
            path: path.to_string(),
        }
    }

    /// The node's path (what [`Node::parse`] reads back).
    pub fn path(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "" joins nothing: a tree's root is the tree's directory.
        let tail = |f: &mut fmt::Formatter<'_>, path: &str| {
            if path.is_empty() {
                Ok(())
            } else {
                write!(f, "/{path}")
            }
        };
        match self {
            Node::Root => Ok(()),
            Node::StatsDir => f.write_str(STATS_DIR),
            Node::Stats => write!(f, "{STATS_DIR}/stats"),
            Node::Namespace(ns) => f.write_str(ns),
            Node::Tree { ns, tree, path } => {
                match tree {
                    TreeName::Current => write!(f, "{ns}/current")?,
                    TreeName::Staged => write!(f, "{ns}/staged")?,
                    TreeName::History(seq) => write!(f, "{ns}/history/{seq}")?,
                }
                tail(f, path)
            }
            Node::Set { ns, staged } => write!(f, "{ns}/{}", set_name(*staged)),
            Node::Schemas(ns) => write!(f, "{ns}/schemas"),
            Node::Schema { ns, schema } => write!(f, "{ns}/schemas/{schema}"),
            Node::Link {
                ns,
                schema,
                pointer,
            } => write!(f, "{ns}/schemas/{schema}/{}", pointer.name()),
            Node::Versions { ns, schema } => write!(f, "{ns}/schemas/{schema}/versions"),
            Node::Version {
                ns,
                schema,
                version,
                item,
            } => {
                write!(f, "{ns}/schemas/{schema}/versions/{version}")?;
                match item {
                    VersionItem::Dir => Ok(()),
                    VersionItem::Descriptor => f.write_str("/descriptor.binpb"),
                    VersionItem::Json => f.write_str("/version.json"),
                    VersionItem::Path(p) => tail(f, p),
                }
            }
            Node::History(ns) => write!(f, "{ns}/history"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_of_path_parses_to_its_node() {
        let cases = [
            ("", Node::Root),
            (".protoshelf", Node::StatsDir),
            (".protoshelf/stats", Node::Stats),
            ("shop", Node::Namespace("shop".into())),
            ("shop/current", Node::tree("shop", TreeName::Current, "")),
            (
                "shop/staged/a/b.proto",
                Node::tree("shop", TreeName::Staged, "a/b.proto"),
            ),
            (
                "shop/history/7/x.proto",
                Node::tree("shop", TreeName::History(7), "x.proto"),
            ),
            (
                "shop/staged.binpb",
                Node::Set {
                    ns: "shop".into(),
                    staged: true,
                },
            ),
            (
                "shop/schemas/o/current",
                Node::Link {
                    ns: "shop".into(),
                    schema: "o".into(),
                    pointer: Pointer::Current,
                },
            ),
            (
                "shop/schemas/o/versions/2/descriptor.binpb",
                Node::Version {
                    ns: "shop".into(),
                    schema: "o".into(),
                    version: 2,
                    item: VersionItem::Descriptor,
                },
            ),
            (
                "shop/schemas/o/versions/2/a/descriptor.binpb",
                Node::Version {
                    ns: "shop".into(),
                    schema: "o".into(),
                    version: 2,
                    item: VersionItem::Path("a/descriptor.binpb".into()),
                },
            ),
            ("shop/history", Node::History("shop".into())),
        ];
        for (path, node) in cases {
            assert_eq!(Node::parse(path).unwrap(), node, "{path}");
            assert_eq!(node.path(), path);
        }
        for bad in [
            ".protoshelf/x",
            "shop/other",
            "shop/history/x",
            "shop/schemas/o/versions/x",
            "shop/schemas/o/other",
            "shop/current.binpb/x",
        ] {
            assert_eq!(Node::parse(bad), Err(FsError::NotFound), "{bad}");
        }
    }

    proptest! {
        /// Whatever a path is, if it parses, its node prints back to the
        /// same path (without empty segments): one grammar both ways.
        #[test]
        fn parse_and_print_agree(segs in prop::collection::vec(
            prop_oneof![
                Just("shop".to_string()), Just("current".to_string()),
                Just("staged".to_string()), Just("schemas".to_string()),
                Just("versions".to_string()), Just("history".to_string()),
                Just("3".to_string()), Just("current.binpb".to_string()),
                Just("descriptor.binpb".to_string()), Just("version.json".to_string()),
                Just(".protoshelf".to_string()), Just("stats".to_string()),
                "[a-z.]{1,6}",
            ], 0..7)) {
            let path = segs.join("/");
            if let Ok(node) = Node::parse(&path) {
                prop_assert_eq!(node.path(), path.clone());
                prop_assert_eq!(Node::parse(&node.path()).unwrap(), node);
            }
        }
    }
}
