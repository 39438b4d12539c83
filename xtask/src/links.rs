//! A test that README.md and docs/*.md link only to what exists: every
//! relative link names a file or folder inside the repository (a clone of it
//! alone, so nothing reached through `..` from the root), and every
//! `#anchor` names a heading of the Markdown file it points to, with the
//! anchors GitHub derives from headings. Links to web addresses are not
//! fetched.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// The Markdown files whose links are checked, relative to the root.
fn checked_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
            .collect();
        docs.sort();
        files.extend(docs);
    }
    files
}

/// Markdown text without fenced code blocks and inline code spans, where
/// `](...)` is not a link.
fn without_code(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            let mut in_code = false;
            for part in line.split('`') {
                if !in_code {
                    out.push_str(part);
                }
                in_code = !in_code;
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of inline links and images, `[text](target)`.
fn link_targets(markdown: &str) -> Vec<String> {
    let text = without_code(markdown);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        targets.push(target.trim_matches(['<', '>']).to_owned());
        rest = &rest[end..];
    }
    targets
}

/// The anchors GitHub gives the headings of `markdown`: lowercase, code
/// marks and punctuation other than `-` and `_` dropped, spaces as `-`, and
/// `-1`, `-2`... on repeats.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c.to_lowercase().next().unwrap_or(c)),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut n = 1;
        while seen.contains(&unique) {
            unique = format!("{slug}-{n}");
            n += 1;
        }
        seen.insert(unique);
    }
    seen
}

/// `path` with `.` and `..` resolved lexically; `None` if it climbs above
/// its first component.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// What is wrong with one link of `file` (relative to `root`), if anything.
fn broken(root: &Path, file: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".to_owned());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let dir = file.parent().unwrap_or(root);
    let resolved = if path.is_empty() {
        Some(file.to_path_buf())
    } else if path.starts_with('/') {
        return Some("an absolute path (breaks outside this machine)".to_owned());
    } else {
        let relative = dir.strip_prefix(root).unwrap_or(Path::new("")).join(path);
        normalize(&relative).map(|inside| root.join(inside))
    };
    let Some(resolved) = resolved else {
        return Some("leaves the repository".to_owned());
    };
    if !resolved.exists() {
        return Some(format!("{} does not exist", resolved.display()));
    }
    if let Some(anchor) = anchor {
        if resolved.extension().is_some_and(|ext| ext == "md") {
            let text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&text).contains(anchor) {
                return Some(format!("no heading #{anchor} in {}", resolved.display()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_and_docs_link_only_to_what_exists_in_the_repository() {
        let root = crate::util::workspace_root();
        let mut problems = Vec::new();
        for file in checked_files(&root) {
            let text = std::fs::read_to_string(&file).expect("reading a Markdown file");
            for target in link_targets(&text) {
                if let Some(problem) = broken(&root, &file, &target) {
                    let name = file.strip_prefix(&root).unwrap_or(&file).display();
                    problems.push(format!("{name}: ({target}): {problem}"));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "broken links:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn a_link_out_of_the_repository_a_missing_file_or_heading_is_broken() {
        let root = crate::util::workspace_root();
        let readme = root.join("README.md");
        let doc = root.join("docs").join("lab.md");
        assert!(broken(&root, &readme, "../shared/seed/lab.md").is_some());
        assert!(broken(&root, &doc, "../../x.md").is_some());
        assert!(broken(&root, &readme, "docs/no-such-page.md").is_some());
        assert!(broken(&root, &readme, "docs/lab.md#no-such-heading").is_some());
        assert!(broken(&root, &readme, "/etc/passwd").is_some());
        assert_eq!(broken(&root, &readme, "docs/lab.md#the-pods"), None);
        assert_eq!(broken(&root, &doc, "../README.md"), None);
        assert_eq!(broken(&root, &readme, "https://kubernetes.io/"), None);
    }

    #[test]
    fn anchors_follow_githubs_rules_and_code_is_not_a_link() {
        let text = "# Production use: `log-aggregator --follow`\n## Metrics\n## Metrics\n\
                    ```\n# not a heading\n[x](nowhere.md)\n```\nsee `[y](nor-here.md)` and [z](here.md)\n";
        let found = anchors(text);
        for anchor in [
            "production-use-log-aggregator---follow",
            "metrics",
            "metrics-1",
        ] {
            assert!(found.contains(anchor), "{anchor} in {found:?}");
        }
        assert!(!found.contains("not-a-heading"));
        assert_eq!(link_targets(text), ["here.md"]);
    }
}
