//! Ground truth: which class each image really is.
//!
//! Two sources, both resolved through [`Labels::lookup`] (forgiving names, synonyms, or an
//! index):
//! - **ImageFolder**: the name of an image's parent folder is its class
//!   (`samples/tabby/chelsea.png` is a tabby). Images directly in the root have no truth.
//!   A folder that names no class, or several, is reported once and its images are unlabeled.
//! - **CSV** (`--labels FILE.csv`): a header naming `path` and `label` columns (any order,
//!   any case, other columns ignored), one row per image.
//!
//! ## CSV rules, and why
//! Paths are resolved against the dataset root **lexically**: `.` and `..` are folded
//! without touching the file system, so rows may name files that do not exist (yet), and
//! the rule is the same one the scan uses to name images (`root` joined with the entries it
//! walks, symbolic links not resolved). A path that climbs out of the root with `..`, or an
//! absolute path that is not under the root (as given, or with its links resolved), is an
//! error: ground truth for files outside the dataset is a mistake in the file.
//!
//! Every problem in a row is fatal, and all of them are collected before failing, so one
//! run lists everything to fix: a silently skipped row would change the accuracy without a
//! word. Exceptions, reported as [`CsvWarning`]s: an exact duplicate row (same image, same
//! class) is harmless and ignored. Rows naming files the scan does not find, and images
//! without a row, are not errors either (a CSV may cover several folders, or only some
//! images): [`CsvTruth::rows_without_image`] lists the former for the summary, and the
//! latter are unlabeled.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::model::{Labels, LookupError};

/// A folder whose name is not exactly one class: reported once, its images unlabeled.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderProblem {
    /// The folder as the scan names it (root joined with the folder's path in the dataset).
    pub folder: PathBuf,
    pub error: LookupError,
}

impl std::fmt::Display for FolderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let folder = self.folder.display();
        let fix = "rename the folder after a label or a class index, or give --labels FILE.csv";
        match &self.error {
            LookupError::Unknown { query, suggestions } => {
                let closest: Vec<String> = suggestions.iter().map(|(i, n)| format!("{i} \"{n}\"")).collect();
                write!(f, "{folder}: folder name \"{query}\" matches no class (closest: {}); ", closest.join(", "))?;
            }
            LookupError::Ambiguous { query, candidates } => {
                let all: Vec<String> = candidates.iter().map(|(i, n)| format!("{i} \"{n}\"")).collect();
                write!(f, "{folder}: folder name \"{query}\" names several classes: {}; ", all.join(", "))?;
            }
            other => write!(f, "{folder}: {other}; ")?,
        }
        write!(f, "its images are unlabeled; {fix}")
    }
}

/// ImageFolder ground truth, resolved folder by folder as the scan goes (each folder's name
/// is looked up once, however many images it holds).
#[derive(Debug, Clone)]
pub struct FolderTruth {
    root: PathBuf,
    labels: Labels,
    folders: HashMap<PathBuf, Option<usize>>,
    problems: Vec<FolderProblem>,
}

impl FolderTruth {
    /// Truth for images under `root`, with the model's `labels`.
    pub fn new(root: &Path, labels: Labels) -> Self {
        Self { root: root.to_owned(), labels, folders: HashMap::new(), problems: Vec::new() }
    }

    /// The true class of `image` (a path from the scan of the root), or `None` when it is
    /// directly in the root or its folder is not one class.
    pub fn truth(&mut self, image: &Path) -> Option<usize> {
        let rel = image.strip_prefix(&self.root).unwrap_or(image);
        let folder = rel.parent().filter(|p| p.file_name().is_some())?;
        if let Some(&known) = self.folders.get(folder) {
            return known;
        }
        let name = folder.file_name().expect("filtered above").to_string_lossy();
        let class = match self.labels.lookup(&name) {
            Ok(class) => Some(class),
            Err(error) => {
                self.problems.push(FolderProblem { folder: self.root.join(folder), error });
                None
            }
        };
        self.folders.insert(folder.to_owned(), class);
        class
    }

    /// Folders seen so far that match no class or several, in the order met (the scan's).
    pub fn problems(&self) -> &[FolderProblem] {
        &self.problems
    }
}

/// Why a labels CSV cannot be used as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{}: cannot read labels CSV: {source}; check the path given to --labels", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:1: no header; the first line must name the columns, e.g. `path,label`", path.display())]
    NoHeader { path: PathBuf },
    #[error("{}:1: missing column{} {} (found: {}); the first line must name the columns `path` and `label`",
        path.display(), if missing.len() > 1 { "s" } else { "" }, missing.join(" and "), found.join(", "))]
    MissingColumns { path: PathBuf, missing: Vec<&'static str>, found: Vec<String> },
    #[error("{}:1: column `{column}` appears twice; keep one", path.display())]
    DuplicateColumn { path: PathBuf, column: &'static str },
    #[error("{}: no rows after the header; add one `path,label` row per image", path.display())]
    NoRows { path: PathBuf },
    #[error("{}{}", problems[0], if problems.len() > 1 { format!(" (and {} more problems in this file)", problems.len() - 1) } else { String::new() })]
    Rows { path: PathBuf, problems: Vec<RowProblem> },
}

/// One bad row: `file:line: what is wrong; how to fix it`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}: {kind}", file.display())]
pub struct RowProblem {
    pub file: PathBuf,
    pub line: u64,
    pub kind: RowProblemKind,
}

/// What is wrong with a row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowProblemKind {
    #[error("malformed CSV ({0}); quote fields that hold commas or quotes, e.g. \"a, b.png\"")]
    Malformed(String),
    #[error("no `{0}` field; every row needs a path and a label")]
    MissingField(&'static str),
    #[error("empty `{0}`; every row needs a path and a label")]
    EmptyField(&'static str),
    #[error("path \"{path}\" is outside the dataset root {}; give paths relative to the root, without `..` leaving it", root.display())]
    OutsideRoot { path: String, root: PathBuf },
    #[error("{0}")]
    Label(LookupError),
    #[error("\"{path}\" is labelled {label} here but {first_label} on line {first_line}; keep one row per image")]
    Conflict { path: String, label: String, first_label: String, first_line: u64 },
}

/// A harmless oddity in a labels CSV, reported and otherwise ignored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvWarning {
    #[error("{}:{line}: repeats line {first_line} for \"{path}\"; the duplicate is ignored (delete it)", file.display())]
    Duplicate { file: PathBuf, line: u64, first_line: u64, path: String },
}

/// Ground truth from a `path,label` CSV.
#[derive(Debug, Clone)]
pub struct CsvTruth {
    file: PathBuf,
    roots: Vec<PathBuf>,
    /// Path relative to the root (lexically normal) → (class, line).
    rows: HashMap<PathBuf, (usize, u64)>,
    warnings: Vec<CsvWarning>,
}

impl CsvTruth {
    /// Read `csv` for the dataset at `root`.
    pub fn read(csv: &Path, root: &Path, labels: &Labels) -> Result<Self, CsvError> {
        let bytes =
            crate::fsutil::read_regular(csv).map_err(|source| CsvError::Read { path: csv.to_owned(), source })?;
        Self::parse(&bytes, csv, root, labels)
    }

    /// Parse CSV `bytes`; `csv` names the file in messages.
    pub fn parse(bytes: &[u8], csv: &Path, root: &Path, labels: &Labels) -> Result<Self, CsvError> {
        let file = csv.to_owned();
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
        let mut records = reader.records();
        let header = match records.next() {
            None => return Err(CsvError::NoHeader { path: file }),
            Some(Err(e)) => {
                let line = e.position().map_or(1, csv::Position::line);
                let problem = RowProblem { file: file.clone(), line, kind: RowProblemKind::Malformed(csv_detail(&e)) };
                return Err(CsvError::Rows { path: file, problems: vec![problem] });
            }
            Some(Ok(h)) => h,
        };
        let found: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
        let column = |name: &'static str| -> Result<Option<usize>, CsvError> {
            let mut at = found.iter().enumerate().filter(|(_, h)| h.eq_ignore_ascii_case(name)).map(|(i, _)| i);
            let first = at.next();
            if at.next().is_some() {
                return Err(CsvError::DuplicateColumn { path: file.clone(), column: name });
            }
            Ok(first)
        };
        let (path_col, label_col) = match (column("path")?, column("label")?) {
            (Some(p), Some(l)) => (p, l),
            (p, l) => {
                let missing = [("path", p), ("label", l)].into_iter().filter(|(_, c)| c.is_none()).map(|(n, _)| n);
                return Err(CsvError::MissingColumns { path: file, missing: missing.collect(), found });
            }
        };

        let roots = root_forms(root);
        let mut truth = Self { file: file.clone(), roots, rows: HashMap::new(), warnings: Vec::new() };
        let mut problems = Vec::new();
        let mut row_count = 0usize;
        for record in records {
            let problem = |line: u64, kind| RowProblem { file: file.clone(), line, kind };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    problems.push(problem(
                        e.position().map_or(0, csv::Position::line),
                        RowProblemKind::Malformed(csv_detail(&e)),
                    ));
                    continue;
                }
            };
            let line = record.position().map_or(0, csv::Position::line);
            if record.iter().all(|f| f.trim().is_empty()) {
                continue; // a blank line
            }
            row_count += 1;
            let field = |col: usize, name: &'static str| match record.get(col).map(str::trim) {
                None => Err(RowProblemKind::MissingField(name)),
                Some("") => Err(RowProblemKind::EmptyField(name)),
                Some(v) => Ok(v),
            };
            let (raw_path, raw_label) = match (field(path_col, "path"), field(label_col, "label")) {
                (Ok(p), Ok(l)) => (p, l),
                (Err(e), _) | (_, Err(e)) => {
                    problems.push(problem(line, e));
                    continue;
                }
            };
            let key = match truth.key(Path::new(raw_path)) {
                Some(k) => k,
                None => {
                    let kind = RowProblemKind::OutsideRoot { path: raw_path.to_owned(), root: root.to_owned() };
                    problems.push(problem(line, kind));
                    continue;
                }
            };
            let class = match labels.lookup(raw_label) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(problem(line, RowProblemKind::Label(e)));
                    continue;
                }
            };
            match truth.rows.get(&key) {
                None => {
                    truth.rows.insert(key, (class, line));
                }
                Some(&(first, first_line)) if first == class => truth.warnings.push(CsvWarning::Duplicate {
                    file: file.clone(),
                    line,
                    first_line,
                    path: raw_path.to_owned(),
                }),
                Some(&(first, first_line)) => problems.push(problem(
                    line,
                    RowProblemKind::Conflict {
                        path: raw_path.to_owned(),
                        label: format!("{class} \"{}\"", labels.name(class)),
                        first_label: format!("{first} \"{}\"", labels.name(first)),
                        first_line,
                    },
                )),
            }
        }
        if !problems.is_empty() {
            return Err(CsvError::Rows { path: file, problems });
        }
        if row_count == 0 {
            return Err(CsvError::NoRows { path: file });
        }
        Ok(truth)
    }

    /// The true class of `image` (a path from the scan of the root), if a row names it.
    pub fn truth(&self, image: &Path) -> Option<usize> {
        self.rows.get(&self.image_key(image)?).map(|&(class, _)| class)
    }

    /// Non-fatal findings (duplicate rows), in file order.
    pub fn warnings(&self) -> &[CsvWarning] {
        &self.warnings
    }

    /// Number of images the file labels.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows naming no image of the scan (`images`), as `(line, path relative to the root)`
    /// in line order: misspelt paths or files removed since the CSV was written.
    pub fn rows_without_image(&self, images: &[PathBuf]) -> Vec<(u64, PathBuf)> {
        let seen: std::collections::HashSet<PathBuf> = images.iter().filter_map(|i| self.image_key(i)).collect();
        let mut missing: Vec<(u64, PathBuf)> =
            self.rows.iter().filter(|(k, _)| !seen.contains(*k)).map(|(k, &(_, line))| (line, k.clone())).collect();
        missing.sort();
        missing
    }

    /// The file the truth came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A scanned image's key: its path relative to the root.
    fn image_key(&self, image: &Path) -> Option<PathBuf> {
        match image.strip_prefix(&self.roots[0]) {
            Ok(rel) => fold_relative(rel),
            Err(_) => self.key(image),
        }
    }

    /// A CSV path's key: relative paths are taken from the root; absolute ones must lie under
    /// one of the root's forms. `None`: outside the root.
    fn key(&self, path: &Path) -> Option<PathBuf> {
        if !path.has_root() {
            return fold_relative(path);
        }
        let abs = fold_absolute(path);
        self.roots.iter().find_map(|root| abs.strip_prefix(root).ok()).and_then(fold_relative)
    }
}

/// The root as given (first, for scan paths), absolute with `.`/`..` folded, and with links
/// resolved (when it exists): an absolute CSV path under any of them is inside.
fn root_forms(root: &Path) -> Vec<PathBuf> {
    let mut forms = vec![root.to_owned()];
    if let Ok(abs) = std::path::absolute(root) {
        forms.push(fold_absolute(&abs));
    }
    if let Ok(canon) = root.canonicalize() {
        forms.push(canon);
    }
    forms
}

/// Fold `.` and `..` in a relative path; `None` if `..` climbs above its start.
fn fold_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Fold `.` and `..` in an absolute path (`..` at the top stays at the top, as the OS does).
pub(crate) fn fold_absolute(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The csv crate's error without its own position prefix (we print `file:line`).
fn csv_detail(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

/// Ground truth from whichever source the user chose.
#[derive(Debug, Clone)]
pub enum GroundTruth {
    /// No truth: every image unlabeled.
    None,
    Folders(FolderTruth),
    Csv(CsvTruth),
}

impl GroundTruth {
    /// The true class of a scanned image, if known.
    pub fn truth(&mut self, image: &Path) -> Option<usize> {
        match self {
            Self::None => None,
            Self::Folders(f) => f.truth(image),
            Self::Csv(c) => c.truth(image),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels::parse("tabby, tabby cat\nespresso\ncrane\ncrane\nwall clock\n", Path::new("l.txt")).unwrap()
    }

    fn parse(text: &str) -> Result<CsvTruth, CsvError> {
        CsvTruth::parse(text.as_bytes(), Path::new("truth.csv"), Path::new("data"), &labels())
    }

    fn problems(text: &str) -> Vec<RowProblem> {
        match parse(text) {
            Err(CsvError::Rows { problems, .. }) => problems,
            other => panic!("expected row problems, got {other:?}"),
        }
    }

    #[test]
    fn folder_names_resolve_and_problems_are_reported_once() {
        let mut t = FolderTruth::new(Path::new("data"), labels());
        assert_eq!(t.truth(Path::new("data/Tabby_Cat/1.png")), Some(0));
        assert_eq!(t.truth(Path::new("data/wall-clock/2.png")), Some(4));
        assert_eq!(t.truth(Path::new("data/x/espresso/3.png")), Some(1), "the parent folder counts");
        assert_eq!(t.truth(Path::new("data/4.png")), None, "root images have no folder truth");
        for _ in 0..3 {
            assert_eq!(t.truth(Path::new("data/astronaut/a.png")), None);
            assert_eq!(t.truth(Path::new("data/crane/b.png")), None);
        }
        assert_eq!(t.truth(Path::new("data/9/c.png")), None, "index out of range");
        let p = t.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].folder, Path::new("data/astronaut"));
        assert!(matches!(p[0].error, LookupError::Unknown { .. }));
        assert!(matches!(p[1].error, LookupError::Ambiguous { .. }));
        let msg = p[1].to_string();
        assert!(
            msg.starts_with("data/crane: folder name \"crane\" names several classes: 2 \"crane\", 3 \"crane\";"),
            "{msg}"
        );
        assert!(msg.contains("its images are unlabeled; rename the folder"), "{msg}");
        assert!(p[2].to_string().contains("out of range"), "{}", p[2]);
    }

    #[test]
    fn csv_any_column_order_quotes_and_extra_columns() {
        let t = parse(
            "\u{feff}Label,score,PATH\n\"tabby, tabby cat\",0.5,\"cats/a, b.png\"\n1,,./x/../cup.jpg\n\nwall_clock,1,sub//c.png\n",
        );
        let t = t.unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.truth(Path::new("data/cats/a, b.png")), Some(0));
        assert_eq!(t.truth(Path::new("data/cup.jpg")), Some(1));
        assert_eq!(t.truth(Path::new("data/sub/c.png")), Some(4));
        assert_eq!(t.truth(Path::new("data/other.jpg")), None);
        assert!(t.warnings().is_empty());
    }

    #[test]
    fn csv_absolute_paths_inside_the_root_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir(&root).unwrap();
        let text = format!("path,label\n{}/a.png,espresso\n{}/../b.png,tabby\n", root.display(), root.display());
        let err = CsvTruth::parse(text.as_bytes(), Path::new("t.csv"), &root, &labels()).unwrap_err();
        let CsvError::Rows { problems, .. } = err else { panic!("{err}") };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 3);
        assert!(matches!(problems[0].kind, RowProblemKind::OutsideRoot { .. }));
        let ok = format!("path,label\n{}/a.png,espresso\n", root.display());
        let t = CsvTruth::parse(ok.as_bytes(), Path::new("t.csv"), &root, &labels()).unwrap();
        assert_eq!(t.truth(&root.join("a.png")), Some(1));
    }

    #[test]
    fn csv_missing_columns_name_file_line_and_fix() {
        let err = parse("file,class\na.png,tabby\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "truth.csv:1: missing columns path and label (found: file, class); the first line must name the columns `path` and `label`"
        );
        let err = parse("path,name\na.png,tabby\n").unwrap_err();
        assert!(err.to_string().starts_with("truth.csv:1: missing column label (found: path, name)"), "{err}");
        assert!(matches!(parse("").unwrap_err(), CsvError::NoHeader { .. }));
        assert!(matches!(parse("path,label\n").unwrap_err(), CsvError::NoRows { .. }));
        assert!(matches!(
            parse("path,label,Path\na,b,c\n").unwrap_err(),
            CsvError::DuplicateColumn { column: "path", .. }
        ));
    }

    #[test]
    fn csv_paths_outside_the_root_are_errors() {
        let p = problems("path,label\n../secret.png,tabby\na/../../b.png,tabby\n/etc/c.png,tabby\nok/../d.png,tabby\n");
        assert_eq!(p.iter().map(|p| p.line).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(p.iter().all(|p| matches!(p.kind, RowProblemKind::OutsideRoot { .. })));
        assert_eq!(
            p[0].to_string(),
            "truth.csv:2: path \"../secret.png\" is outside the dataset root data; give paths relative to the root, without `..` leaving it"
        );
    }

    #[test]
    fn csv_duplicates_warn_when_identical_and_fail_when_conflicting() {
        let t = parse("path,label\na.png,tabby\n./a.png,Tabby Cat\nb.png,0\nx/../b.png,tabby\n").unwrap();
        assert_eq!(t.warnings().len(), 2);
        assert_eq!(
            t.warnings()[0].to_string(),
            "truth.csv:3: repeats line 2 for \"./a.png\"; the duplicate is ignored (delete it)"
        );
        let p = problems("path,label\na.png,tabby\nb.png,espresso\na.png,espresso\n");
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].to_string(),
            "truth.csv:4: \"a.png\" is labelled 1 \"espresso\" here but 0 \"tabby\" on line 2; keep one row per image"
        );
    }

    #[test]
    fn csv_unknown_ambiguous_and_out_of_range_labels() {
        let p = problems("path,label\na.png,espreso\nb.png,crane\nc.png,7\nd.png,\ne.png\n");
        assert_eq!(p.iter().map(|p| p.line).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
        let msg = p[0].to_string();
        assert!(msg.starts_with("truth.csv:2: no class named \"espreso\" (closest: 1 \"espresso\""), "{msg}");
        assert!(matches!(p[1].kind, RowProblemKind::Label(LookupError::Ambiguous { .. })));
        assert!(matches!(p[2].kind, RowProblemKind::Label(LookupError::OutOfRange { index: 7, len: 5 })));
        assert_eq!(p[3].kind, RowProblemKind::EmptyField("label"));
        assert_eq!(p[4].kind, RowProblemKind::MissingField("label"));
        let err = parse("path,label\na.png,espreso\nb.png,crane\n").unwrap_err().to_string();
        assert!(err.ends_with("(and 1 more problems in this file)"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn csv_invalid_utf8_is_a_row_problem() {
        let mut bytes = b"path,label\na.png,tabby\n".to_vec();
        bytes.extend_from_slice(b"b\xff.png,tabby\n");
        let err = CsvTruth::parse(&bytes, Path::new("t.csv"), Path::new("data"), &labels()).unwrap_err();
        let CsvError::Rows { problems, .. } = err else { panic!() };
        assert_eq!(problems[0].line, 3);
        assert!(matches!(problems[0].kind, RowProblemKind::Malformed(_)));
    }

    #[test]
    fn rows_without_an_image_are_listed() {
        let t = parse("path,label\na.png,tabby\nsub/b.png,espresso\nc.png,0\n").unwrap();
        let images = [PathBuf::from("data/a.png"), PathBuf::from("data/other.png")];
        assert_eq!(t.rows_without_image(&images), vec![(3, PathBuf::from("sub/b.png")), (4, PathBuf::from("c.png"))]);
    }

    #[test]
    fn ground_truth_dispatches_to_its_source() {
        let img = Path::new("data/espresso/a.png");
        assert_eq!(GroundTruth::None.truth(img), None);
        assert_eq!(GroundTruth::Folders(FolderTruth::new(Path::new("data"), labels())).truth(img), Some(1));
        let csv = parse("path,label\nespresso/a.png,wall clock\n").unwrap();
        assert_eq!(GroundTruth::Csv(csv).truth(img), Some(4), "the CSV, not the folder name");
    }

    #[test]
    fn csv_read_names_a_missing_file() {
        let err = CsvTruth::read(Path::new("/nonexistent/t.csv"), Path::new("."), &labels()).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/t.csv: cannot read labels CSV:"), "{err}");
    }
}
