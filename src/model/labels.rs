//! Class labels: one class per line, in output-index order. A line may list synonyms
//! separated by commas (`tabby, tabby cat`), as ImageNet's WordNet lemmas do; the first is
//! the display name, every one of them can be searched and matched.

use std::path::{Path, PathBuf};

/// Why a labels file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{}: cannot read labels file: {source}; fix `labels` in the model card or create the file", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: labels file has no classes; it needs one class name per line", path.display())]
    Empty { path: PathBuf },
    #[error("{}: line {line} is empty; every class needs a name (use `class {index}` if unknown)", path.display())]
    BlankLine { path: PathBuf, line: usize, index: usize },
}

/// Class names in output order.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    classes: Vec<Vec<String>>,
}

impl Labels {
    /// Read a labels file (UTF-8, one class per line; a trailing newline is fine).
    pub fn read(path: &Path) -> Result<Self, LabelsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| LabelsError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parse label text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LabelsError> {
        let lines: Vec<&str> = text.trim_end_matches(['\n', '\r']).lines().collect();
        if lines.is_empty() || lines.iter().all(|l| l.trim().is_empty()) {
            return Err(LabelsError::Empty { path: path.to_owned() });
        }
        let mut classes = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let names: Vec<String> =
                line.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if names.is_empty() {
                return Err(LabelsError::BlankLine { path: path.to_owned(), line: i + 1, index: i });
            }
            classes.push(names);
        }
        Ok(Self { classes })
    }

    /// Placeholder names `class 0`, `class 1`, ... for models shipped without labels.
    pub fn numbered(n: usize) -> Self {
        Self { classes: (0..n).map(|i| vec![format!("class {i}")]).collect() }
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The display name of class `index` (its first synonym), or `class N` past the end.
    pub fn name(&self, index: usize) -> String {
        self.classes.get(index).map_or_else(|| format!("class {index}"), |names| names[0].clone())
    }

    /// All synonyms of class `index`.
    pub fn synonyms(&self, index: usize) -> &[String] {
        self.classes.get(index).map_or(&[], Vec::as_slice)
    }
}
