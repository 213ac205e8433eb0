//! The application's files, in memory, keyed by their path relative to the application root.
//!
//! Both entry points build one: the CLI from a directory, the service from an upload. The same
//! limits and the same path rules apply to both, so an analysis never depends on where the
//! files came from.

use std::{collections::BTreeMap, path::Path};

/// Largest total size of an application's files, in bytes.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Largest number of files in one analysis.
pub const MAX_FILES: usize = 10_000;

/// Directories never read: dependencies, build output and VCS internals. Their content says
/// nothing the manifests need and can be huge.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "target",
    "vendor",
    "__pycache__",
    ".venv",
    "venv",
    ".next",
    "dist",
    "build",
    "bin",
    "obj",
    ".gradle",
    ".idea",
    ".vscode",
    ".mypy_cache",
    ".pytest_cache",
    ".tox",
    "coverage",
];

/// Why a set of files cannot be analysed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    /// A path is absolute, empty, or escapes the root.
    #[error("path `{path}` {reason}")]
    BadPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The files exceed [`MAX_TOTAL_BYTES`].
    #[error("the application's files exceed {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// There are more than [`MAX_FILES`] files.
    #[error("the application has more than {limit} files")]
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// The directory could not be read.
    #[error("reading {path}: {message}")]
    Io {
        /// What was being read.
        path: String,
        /// The cause.
        message: String,
    },
}

/// An application's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTree {
    files: BTreeMap<String, Vec<u8>>,
    total: u64,
}

/// Returns the normalised form of an upload path, or why it is refused. Paths use `/`, are
/// relative, and may not contain `..`, empty or `.` segments after normalisation, backslashes
/// or NUL bytes.
pub fn normalize_path(path: &str) -> Result<String, TreeError> {
    let bad = |reason| Err(TreeError::BadPath { path: path.to_owned(), reason });
    if path.is_empty() {
        return bad("is empty");
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    if path.contains('\\') {
        return bad("contains `\\`; use `/` as the separator");
    }
    if path.starts_with('/') || (path.len() >= 2 && path.as_bytes()[1] == b':') {
        return bad("is absolute; paths must be relative to the application root");
    }
    let mut parts = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return bad("escapes the application root (`..`)"),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return bad("names no file");
    }
    Ok(parts.join("/"))
}

impl SourceTree {
    /// Returns an empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file, enforcing the path rules and the limits. A second file with the same path
    /// replaces the first.
    pub fn insert(&mut self, path: &str, content: Vec<u8>) -> Result<(), TreeError> {
        let path = normalize_path(path)?;
        self.check_room(&path, content.len() as u64)?;
        if let Some(old) = self.files.insert(path, content.clone()) {
            self.total -= old.len() as u64;
        }
        self.total += content.len() as u64;
        Ok(())
    }

    /// Appends bytes to a file, creating it if needed; for chunked uploads.
    pub fn append(&mut self, path: &str, data: &[u8]) -> Result<(), TreeError> {
        let path = normalize_path(path)?;
        if !self.files.contains_key(&path) {
            self.check_room(&path, data.len() as u64)?;
        } else if self.total + data.len() as u64 > MAX_TOTAL_BYTES {
            return Err(TreeError::TooLarge { limit: MAX_TOTAL_BYTES });
        }
        self.files.entry(path).or_default().extend_from_slice(data);
        self.total += data.len() as u64;
        Ok(())
    }

    fn check_room(&self, path: &str, size: u64) -> Result<(), TreeError> {
        let replaced = self.files.get(path).map_or(0, |f| f.len() as u64);
        if !self.files.contains_key(path) && self.files.len() >= MAX_FILES {
            return Err(TreeError::TooManyFiles { limit: MAX_FILES });
        }
        if self.total - replaced + size > MAX_TOTAL_BYTES {
            return Err(TreeError::TooLarge { limit: MAX_TOTAL_BYTES });
        }
        Ok(())
    }

    /// Reads a directory: every regular file except those under [`SKIPPED_DIRS`] (but keeping
    /// `.git/config`, which names the repository). Symbolic links are not followed, so nothing
    /// outside the directory is read.
    pub fn from_dir(root: &Path) -> Result<Self, TreeError> {
        let io = |path: &Path, e: &dyn std::fmt::Display| TreeError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(root).map_err(|e| io(root, &e))?;
        if !meta.is_dir() {
            return Err(io(root, &"not a directory"));
        }
        let mut tree = Self::new();
        let git_config = root.join(".git/config");
        if git_config.is_file() {
            let content = std::fs::read(&git_config).map_err(|e| io(&git_config, &e))?;
            tree.insert(".git/config", content)?;
        }
        let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter();
        let entries = walker.filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir() && SKIPPED_DIRS.contains(&e.file_name().to_string_lossy().as_ref()))
        });
        for entry in entries {
            let entry = entry.map_err(|e| io(root, &e))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(root).map_err(|e| io(entry.path(), &e))?;
            let Some(rel) = rel.to_str() else { continue };
            let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
            let len = entry.metadata().map_err(|e| io(entry.path(), &e))?.len();
            if tree.total + len > MAX_TOTAL_BYTES {
                return Err(TreeError::TooLarge { limit: MAX_TOTAL_BYTES });
            }
            let content = std::fs::read(entry.path()).map_err(|e| io(entry.path(), &e))?;
            tree.insert(&rel, content)?;
        }
        Ok(tree)
    }

    /// Returns the bytes of a file.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Returns a file as text, if it exists and is UTF-8.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Returns whether a file exists.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Returns every path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Returns every file, sorted by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Returns the number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Returns whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Returns the total size in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Returns the files under `dir` (relative to the root; `""` is the root), re-rooted there.
    pub fn subtree(&self, dir: &str) -> SourceTree {
        let dir = dir.trim_start_matches("./").trim_matches('/');
        if dir.is_empty() || dir == "." {
            return self.clone();
        }
        let prefix = format!("{dir}/");
        let mut sub = SourceTree::new();
        // The paths under `dir` sort together, from `dir/` on.
        let under =
            self.files.range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded));
        for (path, content) in under.map_while(|(path, content)| Some((path.strip_prefix(&prefix)?, content))) {
            sub.total += content.len() as u64;
            sub.files.insert(path.to_owned(), content.clone());
        }
        sub
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused() {
        assert_eq!(normalize_path("./src//main.go").unwrap(), "src/main.go");
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", "C:/x", "a\\b", ".", "./"] {
            assert!(matches!(normalize_path(bad), Err(TreeError::BadPath { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_hold_for_inserts_and_appends() {
        let mut tree = SourceTree::new();
        tree.insert("a", vec![0; 10]).unwrap();
        tree.insert("a", vec![0; 4]).unwrap();
        assert_eq!(tree.total_bytes(), 4);
        tree.append("a", &[1, 2]).unwrap();
        assert_eq!(tree.get("a").unwrap().len(), 6);
        let big = vec![0; (MAX_TOTAL_BYTES - 6) as usize];
        tree.insert("b", big).unwrap();
        assert_eq!(tree.append("a", &[0]), Err(TreeError::TooLarge { limit: MAX_TOTAL_BYTES }));
    }

    #[test]
    fn subtree_reroots_files() {
        let mut tree = SourceTree::new();
        tree.insert("api/Dockerfile", b"FROM x".to_vec()).unwrap();
        tree.insert("web/Dockerfile", b"FROM y".to_vec()).unwrap();
        let api = tree.subtree("./api/");
        assert_eq!(api.paths().collect::<Vec<_>>(), ["Dockerfile"]);
    }
}
