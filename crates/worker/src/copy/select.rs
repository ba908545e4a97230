//! Which files a COPY/ADD reads: source paths cleaned and clamped to the source root (`../x`
//! is `x`, as in BuildKit), wildcards matched with Go's `filepath.Match` per component, the
//! top-level path followed through symlinks *inside* the source root, `.dockerignore` applied
//! to the context, then every selected directory walked (symlinks not followed), sorted.
//!
//! `.dockerignore` patterns match a path in the context; `COPY --exclude` patterns, as in
//! BuildKit, match a path below the source being copied (`COPY --exclude=storage/views app/ .`
//! leaves out `app/storage/views`), and a source that is a file by its name
//! (`COPY --exclude=*.txt hom* /d/` copies no `home.txt`).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rbuild_frontend::dockerignore::{go_clean, go_match, IgnoreRules};
use rbuild_solver::WorkerError;
use rustix::fs::OFlags;

use crate::fsutil::{fd_path, open_in_root, open_root};

/// The version of the rules above. Key parts computed by a COPY from a committed snapshot are
/// memoised beside it under this version (`LocalWorker::selection_memo`): bump it whenever the
/// same op and files would now select something else, or hash to other parts (2: `--exclude`
/// matches below each source; 3: BLAKE3 digests).
pub const RULES_VERSION: u32 = 3;

/// Where sources are read from.
#[derive(Debug)]
pub struct SourceRoot<'a> {
    /// Host directory (the context, or a view of a stage).
    pub root: &'a Path,
    /// `.dockerignore` of the context (paths relative to the context root).
    pub ignore: Option<&'a IgnoreRules>,
    /// `COPY --exclude` patterns (paths relative to each source).
    pub excludes: Option<IgnoreRules>,
    /// The build context: owners are not part of the content (they become 0:0).
    pub is_context: bool,
}

/// One thing a COPY source selected, with everything below it.
#[derive(Debug)]
pub struct Selected {
    /// Cleaned path inside the source root ("" for the root itself).
    pub rel: String,
    /// Whether it came from a wildcard.
    pub wildcard: bool,
    /// The tree: the selected path first (`rel` ""), then what is below it, parents first.
    pub entries: Vec<Entry>,
}

/// A file, directory, symlink or special file in a selected tree.
#[derive(Debug)]
pub struct Entry {
    /// Relative to the selected path ("" for the selected path itself).
    pub rel: String,
    pub host: PathBuf,
    pub meta: Metadata,
    pub link_target: Option<PathBuf>,
}

impl Selected {
    pub fn is_dir(&self) -> bool {
        self.entries.first().is_some_and(|e| e.meta.is_dir())
    }

    /// Where `entry`, one of this selection's, is in the source root ("" for the root).
    pub fn path_of(&self, entry: &Entry) -> String {
        if entry.rel.is_empty() {
            self.rel.clone()
        } else {
            join(&self.rel, &entry.rel)
        }
    }
}

/// The entries below one directory, or why they could not be listed.
type Subtree = Result<Vec<Entry>, WorkerError>;

fn has_wildcard(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// The cleaned, root-relative form of a source path.
pub fn clean(source: &str) -> String {
    go_clean(&format!("/{source}"))
        .trim_start_matches('/')
        .to_string()
}

impl SourceRoot<'_> {
    /// Whether `.dockerignore` leaves out the context path `context_rel`.
    fn ignored(&self, context_rel: &str) -> bool {
        !context_rel.is_empty()
            && self
                .ignore
                .is_some_and(|rules| rules.is_excluded(context_rel))
    }

    /// Whether an entry is left out: by `.dockerignore` (its path in the context) or by
    /// `COPY --exclude` (its path below the source, `source_rel`).
    fn hidden(&self, context_rel: &str, source_rel: &str) -> bool {
        self.ignored(context_rel)
            || (!source_rel.is_empty()
                && self
                    .excludes
                    .as_ref()
                    .is_some_and(|rules| rules.is_excluded(source_rel)))
    }

    /// Whether a rule could admit something below the hidden directory: no rule set that
    /// hides it hides everything below it too.
    fn may_admit_below(&self, context_rel: &str, source_rel: &str) -> bool {
        let skippable = |rules: &IgnoreRules, rel: &str| {
            !rel.is_empty() && rules.is_excluded(rel) && rules.can_skip_dir(rel)
        };
        !self.ignore.is_some_and(|r| skippable(r, context_rel))
            && !self
                .excludes
                .as_ref()
                .is_some_and(|r| skippable(r, source_rel))
    }

    /// Selects every source of a COPY.
    pub fn select(&self, sources: &[String]) -> Result<Vec<Selected>, WorkerError> {
        let root_fd = open_root(self.root)?;
        let mut out = Vec::new();
        for source in sources {
            let rel = clean(source);
            if has_wildcard(&rel) {
                let mut any = false;
                for m in self.glob(&rel)? {
                    // A match left out (a directory: holding nothing admitted) is none.
                    if let Some(selected) =
                        self.selected_unless_left_out(&root_fd, &m, true, source)?
                    {
                        out.push(selected);
                        any = true;
                    }
                }
                if !any {
                    return Err(WorkerError::new(format!(
                        "no source files were specified: `{source}` matches nothing"
                    )));
                }
            } else {
                out.push(self.selected(&root_fd, &rel, false, source)?);
            }
        }
        Ok(out)
    }

    /// Selects one path as it is written, without wildcard expansion (a `RUN --mount` source:
    /// `data[1]` names the directory `data[1]`, as the mount then binds it).
    pub fn select_path(&self, source: &str) -> Result<Selected, WorkerError> {
        let root_fd = open_root(self.root)?;
        self.selected(&root_fd, &clean(source), false, source)
    }

    fn not_found(&self, source: &str, rel: &str) -> WorkerError {
        let mut message = format!(
            "\"/{rel}\" not found: COPY source `{source}` is not in the {}",
            if self.is_context {
                "build context"
            } else {
                "source stage"
            }
        );
        if let Some(rule) = self.ignore.and_then(|r| r.excluded_by(rel)) {
            message.push_str(&format!(
                " (it is excluded by .dockerignore line {}: `{}`)",
                rule.line, rule
            ));
        } else if self.excluded_file(rel) {
            message.push_str(" (the COPY's --exclude leaves it out)");
        }
        WorkerError::new(message)
    }

    /// Whether `COPY --exclude` leaves out the source `rel` when it is a file: by its name.
    fn excluded_file(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.hidden("", name)
    }

    /// The selection of `rel`; an error when it is not there or the rules leave it out.
    fn selected(
        &self,
        root_fd: &std::os::fd::OwnedFd,
        rel: &str,
        wildcard: bool,
        source: &str,
    ) -> Result<Selected, WorkerError> {
        self.selected_unless_left_out(root_fd, rel, wildcard, source)?
            .ok_or_else(|| self.not_found(source, rel))
    }

    /// The selection of `rel`, `None` when the rules leave it out (an excluded file, or an
    /// excluded directory holding nothing admitted); an error when it is not there.
    fn selected_unless_left_out(
        &self,
        root_fd: &std::os::fd::OwnedFd,
        rel: &str,
        wildcard: bool,
        source: &str,
    ) -> Result<Option<Selected>, WorkerError> {
        let fd =
            open_in_root(root_fd, rel, OFlags::PATH).map_err(|_| self.not_found(source, rel))?;
        // The rules apply to where the path really leads: `alias/key` through a symlink to an
        // ignored directory is as ignored as the directory.
        let host = fd_path(&fd)?;
        let real_root = fd_path(root_fd)?;
        let resolved_rel = host
            .strip_prefix(&real_root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = std::fs::symlink_metadata(&host).map_err(|_| self.not_found(source, rel))?;
        // An excluded directory is there only as the parent of what an exception (`!...`)
        // admits below it, as in the context BuildKit receives. A file source may also be
        // excluded by name; a directory source is the root `--exclude` patterns start from.
        let excluded = self.ignored(rel)
            || self.ignored(&resolved_rel)
            || (!meta.is_dir() && self.excluded_file(rel));
        if excluded
            && !(meta.is_dir()
                && self.may_admit_below(rel, "")
                && self.may_admit_below(&resolved_rel, ""))
        {
            return Ok(None);
        }
        let mut entries = vec![Entry {
            rel: String::new(),
            host: host.clone(),
            meta,
            link_target: None,
        }];
        if entries[0].meta.is_dir() {
            self.walk(&host, &resolved_rel, "", &mut entries, true)?;
        }
        if excluded && entries.len() == 1 {
            return Ok(None);
        }
        Ok(Some(Selected {
            rel: rel.to_string(),
            wildcard,
            entries,
        }))
    }

    /// Appends the tree below `dir` (sorted by name, parents first). With `parallel`, the
    /// first directory level with two or more subdirectories has their trees walked on up to
    /// one thread per core (a large context is statx-bound; the order of `out` is the same).
    fn walk(
        &self,
        dir: &Path,
        context_rel: &str,
        rel: &str,
        out: &mut Vec<Entry>,
        parallel: bool,
    ) -> Result<(), WorkerError> {
        let children = self.list(dir, context_rel, rel)?;
        let subdirs: Vec<usize> = children
            .iter()
            .enumerate()
            .filter(|(_, (entry, _))| entry.meta.is_dir())
            .map(|(i, _)| i)
            .collect();
        let workers = if parallel && subdirs.len() >= 2 {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(subdirs.len())
        } else {
            1
        };
        if workers < 2 {
            for (entry, child_context) in children {
                let descend = entry
                    .meta
                    .is_dir()
                    .then(|| (entry.host.clone(), entry.rel.clone()));
                let kept_as_parent = descend.is_some() && self.hidden(&child_context, &entry.rel);
                let mark = out.len();
                out.push(entry);
                if let Some((host, child_rel)) = descend {
                    self.walk(&host, &child_context, &child_rel, out, parallel)?;
                }
                // An excluded directory that ends up holding nothing admitted is not there.
                if kept_as_parent && out.len() == mark + 1 {
                    out.pop();
                }
            }
            return Ok(());
        }
        let trees = self.walk_subtrees(&children, &subdirs, workers);
        let mut trees = trees.into_iter();
        for (entry, child_context) in children {
            let is_dir = entry.meta.is_dir();
            let kept_as_parent = is_dir && self.hidden(&child_context, &entry.rel);
            out.push(entry);
            if is_dir {
                let tree = trees
                    .next()
                    .ok_or_else(|| WorkerError::new("internal error: a subtree went missing"))??;
                if kept_as_parent && tree.is_empty() {
                    out.pop();
                }
                out.extend(tree);
            }
        }
        Ok(())
    }

    /// The trees below `children[i]` for every `i` of `subdirs`, in that order, walked by
    /// `workers` threads taking the next directory as they finish one.
    fn walk_subtrees(
        &self,
        children: &[(Entry, String)],
        subdirs: &[usize],
        workers: usize,
    ) -> Vec<Subtree> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Subtree>>> = subdirs
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = subdirs.get(i) else { break };
                    let (entry, child_context) = &children[index];
                    let mut tree = Vec::new();
                    let walked = self
                        .walk(&entry.host, child_context, &entry.rel, &mut tree, false)
                        .map(|()| tree);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(walked);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Err(WorkerError::new("a context walker thread failed")))
            })
            .collect()
    }

    /// The children of `dir` that the ignore rules admit, sorted by name, each with its
    /// context-relative path.
    fn list(
        &self,
        dir: &Path,
        context_rel: &str,
        rel: &str,
    ) -> Result<Vec<(Entry, String)>, WorkerError> {
        let read = std::fs::read_dir(dir)
            .map_err(|e| WorkerError::new(format!("cannot read {}: {e}", dir.display())))?;
        // DirEntry::metadata is an fstatat on the open directory (no symlink followed), far
        // cheaper than a stat of the whole path for every file of a large context.
        let mut children: Vec<(std::ffi::OsString, std::fs::DirEntry)> = read
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name(), e))
            .collect();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(children.len());
        for (name, dir_entry) in children {
            let name = name.to_string_lossy().into_owned();
            let child_context = join(context_rel, &name);
            let child_rel = join(rel, &name);
            let host = dir.join(&name);
            let meta = dir_entry
                .metadata()
                .map_err(|e| WorkerError::new(format!("cannot stat {}: {e}", host.display())))?;
            // An excluded directory is walked only when a rule could admit something below it
            // (and dropped by `walk` if nothing is).
            if self.hidden(&child_context, &child_rel)
                && (!meta.is_dir() || !self.may_admit_below(&child_context, &child_rel))
            {
                continue;
            }
            let link_target = if meta.file_type().is_symlink() {
                std::fs::read_link(&host).ok()
            } else {
                None
            };
            out.push((
                Entry {
                    rel: child_rel,
                    host,
                    meta,
                    link_target,
                },
                child_context,
            ));
        }
        Ok(out)
    }

    /// The names of the children of the directory `dir` (at `context_rel` in the root) that the
    /// rules admit, sorted as a selection lists them.
    pub fn admitted_names(
        &self,
        dir: &Path,
        context_rel: &str,
    ) -> Result<Vec<String>, WorkerError> {
        Ok(self
            .list(dir, context_rel, "")?
            .into_iter()
            .map(|(entry, _)| entry.rel)
            .collect())
    }

    /// Expands a wildcard path component by component (matches sorted, ignored ones dropped).
    /// Every directory listed is opened inside the root first, so a symlink in the source
    /// cannot make it list a directory of the host.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, WorkerError> {
        let root_fd = open_root(self.root)?;
        let mut current = vec![String::new()];
        for component in pattern.split('/') {
            let mut next = Vec::new();
            for base in &current {
                if !has_wildcard(component) {
                    let candidate = join(base, component);
                    if open_in_root(&root_fd, &candidate, OFlags::PATH).is_ok() {
                        next.push(candidate);
                    }
                    continue;
                }
                let Ok(dir_fd) = open_in_root(&root_fd, base, OFlags::PATH | OFlags::DIRECTORY)
                else {
                    continue;
                };
                let Ok(read) = std::fs::read_dir(fd_path(&dir_fd)?) else {
                    continue;
                };
                let mut names: Vec<String> = read
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names {
                    let matched = go_match(component, &name)
                        .map_err(|_| WorkerError::new(format!("invalid pattern `{pattern}`")))?;
                    if matched {
                        next.push(join(base, &name));
                    }
                }
            }
            current = next;
        }
        // Excluded matches go, except directories an exception could admit something below
        // (`selected` then keeps them only if it does).
        Ok(current
            .into_iter()
            .filter(|m| {
                !self.ignored(m)
                    || (self.may_admit_below(m, "")
                        && open_in_root(&root_fd, m, OFlags::PATH | OFlags::DIRECTORY).is_ok())
            })
            .collect())
    }
}

/// `name` below `base` ("" for the root).
pub(crate) fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// The type letter of an entry, for checksums.
pub fn kind(meta: &Metadata) -> char {
    let t = meta.file_type();
    if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_file() {
        'f'
    } else {
        's'
    }
}

/// (uid, gid) as they will be copied.
pub fn owner_of(meta: &Metadata, is_context: bool) -> (u32, u32) {
    if is_context {
        (0, 0)
    } else {
        (meta.uid(), meta.gid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in [
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("c.log", "c"),
            ("sub/d.txt", "d"),
            ("sub/deep/e.txt", "e"),
        ] {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).expect("symlink");
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).expect("symlink");
        dir
    }

    fn select(
        root: &SourceRoot<'_>,
        sources: &[&str],
    ) -> Result<Vec<(String, Vec<String>)>, WorkerError> {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        Ok(root
            .select(&sources)?
            .into_iter()
            .map(|s| (s.rel, s.entries.iter().map(|e| e.rel.clone()).collect()))
            .collect())
    }

    #[test]
    fn the_parallel_walk_gives_the_sequential_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for top in ["b", "a", "c", "d e", "f"] {
            for sub in ["y", "x"] {
                for file in ["2", "1", "10"] {
                    let p = dir.path().join(top).join(sub).join(file);
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&p, file).expect("write");
                }
            }
        }
        std::fs::write(dir.path().join("top.txt"), "t").expect("write");
        let rules = IgnoreRules::from_patterns(["c/x", "f"]).expect("rules");
        let root = SourceRoot {
            root: dir.path(),
            ignore: Some(&rules),
            excludes: None,
            is_context: true,
        };
        let walk = |parallel: bool| {
            let mut out = Vec::new();
            root.walk(dir.path(), "", "", &mut out, parallel)
                .expect("walk");
            out.into_iter().map(|e| e.rel).collect::<Vec<_>>()
        };
        let sequential = walk(false);
        assert_eq!(walk(true), sequential);
        // a, b, d e: 1 + 2 x (1 + 3); c without c/x: 1 + 4; top.txt.
        assert_eq!(sequential.len(), 3 * 9 + 5 + 1, "{sequential:?}");
        assert_eq!(&sequential[..4], ["a", "a/x", "a/x/1", "a/x/10"]);
        assert!(!sequential
            .iter()
            .any(|p| p.starts_with("f") || p.starts_with("c/x")));
    }

    #[test]
    fn sources_are_cleaned_and_clamped_to_the_root() {
        assert_eq!(clean("../../a.txt"), "a.txt");
        assert_eq!(clean("./sub/../b.txt"), "b.txt");
        assert_eq!(clean("/"), "");
        assert_eq!(clean("sub/"), "sub");
    }

    #[test]
    fn wildcards_match_per_component_and_dirs_are_walked_sorted() {
        let dir = tree();
        let root = SourceRoot {
            root: dir.path(),
            ignore: None,
            excludes: None,
            is_context: true,
        };
        let got = select(&root, &["*.txt", "sub"]).expect("select");
        assert_eq!(got[0].0, "a.txt");
        assert_eq!(got[1].0, "b.txt");
        assert_eq!(
            got[2],
            (
                "sub".to_string(),
                vec![
                    "".into(),
                    "d.txt".into(),
                    "deep".into(),
                    "deep/e.txt".into()
                ]
            )
        );
        assert!(
            select(&root, &["*.none"]).is_err(),
            "a wildcard matching nothing is an error"
        );
    }

    #[test]
    fn dockerignore_hides_files_and_symlinks_resolve_inside_the_root() {
        let dir = tree();
        let rules = IgnoreRules::parse("*.log\nsub/deep\n").expect("rules");
        let root = SourceRoot {
            root: dir.path(),
            ignore: Some(&rules),
            excludes: None,
            is_context: true,
        };
        let err = select(&root, &["c.log"]).expect_err("ignored");
        assert!(
            err.message.contains(".dockerignore line 1"),
            "{}",
            err.message
        );
        let got = select(&root, &["sub"]).expect("select");
        assert_eq!(got[0].1, vec!["".to_string(), "d.txt".into()]);
        // A symlink named as a source is followed, inside the root only.
        let got = root.select(&["link".to_string()]).expect("link");
        assert!(got[0].entries[0].meta.is_file());
        assert!(
            select(&root, &["escape"]).is_err(),
            "followed /etc/passwd of the host"
        );
    }
}
