//! The docs stay design pages, not lab notebooks: the two pages that grew
//! dated sittings before stay under a screenful-bound length (sittings go
//! to `benches/results/`), and nothing in the tree cites the number of an
//! issue in a tracker readers do not have (say the reason instead).

use std::fs;
use std::path::{Path, PathBuf};

/// Design pages that once mixed sittings into the design, and their
/// length bound in lines.
const PAGES_BOUNDED: [(&str, usize); 2] =
    [("docs/multi-group.md", 300), ("docs/cpu-per-write.md", 300)];

/// Text files of the tree under `dir`: sources, docs, manifests, scripts.
fn text_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(items) = fs::read_dir(dir) else {
        return;
    };
    for item in items.flatten() {
        let path = item.path();
        let name = item.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            text_files(&path, found);
        } else if ["rs", "md", "toml", "sh"]
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
        {
            found.push(path);
        }
    }
}

/// Where `text` cites "issue N" (any case): line numbers, 1 first.
fn tracker_citations(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    for (at, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let cites = lower.match_indices("issue ").any(|(i, m)| {
            lower[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        });
        if cites {
            lines.push(at + 1);
        }
    }
    lines
}

#[test]
fn design_pages_stay_under_their_length_bound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for (page, lines_max) in PAGES_BOUNDED {
        let text = fs::read_to_string(root.join(page)).unwrap();
        let lines = text.lines().count();
        assert!(
            lines < lines_max,
            "{page} has {lines} lines (bound {lines_max}): move dated sittings to \
             benches/results/ and keep the page to how it works and the latest figures"
        );
    }
}

#[test]
fn nothing_cites_an_issue_number_of_a_tracker_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    text_files(root, &mut files);
    assert!(files.len() > 100, "walked only {} files", files.len());
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in tracker_citations(&text) {
            found.push(format!(
                "{}:{line}",
                file.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "say the reason, not the issue number: {found:?}"
    );
}

#[test]
fn a_citation_is_an_issue_followed_by_its_number() {
    // Built at run time, so this file does not cite one itself.
    let text = format!("see Issue {}\nissue #3\nan issue\nissues 4", 12);
    assert_eq!(tracker_citations(&text), vec![1]);
}
