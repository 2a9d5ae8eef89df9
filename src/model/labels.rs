//! Class labels: one class per line, in output-index order. A line may list synonyms
//! separated by commas (`tabby, tabby cat`), as ImageNet's WordNet lemmas do; the first is
//! the display name, every one of them can be searched and matched.
//!
//! Matching is forgiving because names arrive from folder names (`wall_clock`), CSV cells
//! (`Wall Clock`) and a search box: case, spaces, underscores and hyphens (and runs of them)
//! are all the same. The same lookup serves ground truth, `--class LABEL` and the TUI's `/`.

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

/// Why a class name or index did not resolve to exactly one class. The messages name no
/// file: callers (CSV reader, folder truth, CLI) add where the query came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    #[error("empty class name; give a label from the labels file or a class index")]
    Empty,
    #[error("class index {index} is out of range; the model has {len} classes (0..={})", len.saturating_sub(1))]
    OutOfRange { index: usize, len: usize },
    #[error("\"{query}\" names several classes: {}; use the class index instead", list(candidates))]
    Ambiguous { query: String, candidates: Vec<(usize, String)> },
    #[error("no class named \"{query}\"{}; use a label from the labels file or a class index", closest(suggestions))]
    Unknown { query: String, suggestions: Vec<(usize, String)> },
}

fn list(classes: &[(usize, String)]) -> String {
    classes.iter().map(|(i, name)| format!("{i} \"{name}\"")).collect::<Vec<_>>().join(", ")
}

fn closest(suggestions: &[(usize, String)]) -> String {
    if suggestions.is_empty() { String::new() } else { format!(" (closest: {})", list(suggestions)) }
}

/// How a search hit matched, best first (the derived order ranks hits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchKind {
    /// The query is the class index.
    Index,
    /// The whole first (display) name.
    FirstName,
    /// The whole of a later synonym.
    Synonym,
    /// The start of a name.
    Prefix,
    /// The start of a word inside a name (`cat` in `tabby cat`).
    WordPrefix,
    /// Anywhere inside a name.
    Substring,
}

/// One ranked result of [`Labels::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub index: usize,
    /// The synonym that matched (as written in the labels file).
    pub matched: String,
    pub kind: MatchKind,
}

/// Number of suggestions offered for an unknown name.
pub const SUGGESTIONS: usize = 3;

/// Class names in output order.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    classes: Vec<Vec<String>>,
    /// `classes` through [`normalize`], computed once: lookups run per folder and per keystroke.
    normalized: Vec<Vec<String>>,
}

impl Labels {
    /// Read a labels file (UTF-8, one class per line; a trailing newline is fine).
    pub fn read(path: &Path) -> Result<Self, LabelsError> {
        let text = crate::fsutil::read_regular_string(path)
            .map_err(|source| LabelsError::Read { path: path.to_owned(), source })?;
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
        Ok(Self::from_classes(classes))
    }

    /// Placeholder names `class 0`, `class 1`, ... for models shipped without labels.
    pub fn numbered(n: usize) -> Self {
        Self::from_classes((0..n).map(|i| vec![format!("class {i}")]).collect())
    }

    /// A binary classifier's two classes, the complement first: from a labels file naming
    /// the positive class only (`pneumonia` gives `not pneumonia`, `pneumonia`), or
    /// `negative`/`positive` without one.
    pub fn binary(positive: Option<&Labels>) -> Self {
        match positive.and_then(|l| l.classes.first()) {
            Some(names) => Self::from_classes(vec![names.iter().map(|n| format!("not {n}")).collect(), names.clone()]),
            None => Self::from_classes(vec![vec!["negative".into()], vec!["positive".into()]]),
        }
    }

    /// Labels from synonym lists in output order; private because every list must be
    /// non-empty (display name first), which `parse` and `numbered` guarantee.
    fn from_classes(classes: Vec<Vec<String>>) -> Self {
        let normalized = classes.iter().map(|names| names.iter().map(|n| normalize(n)).collect()).collect();
        Self { classes, normalized }
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

    /// Resolve a class name or index to one class.
    ///
    /// A query of ASCII digits is an index (range-checked), even where a label is itself a
    /// number. Names compare after [`normalize`]. A class whose first (display) name matches
    /// beats classes where only a later synonym does: ImageNet's `missile` is 657, not 744
    /// `projectile, missile`. A tie at the best level (ImageNet's two `crane`s, 134 and 517) is
    /// [`LookupError::Ambiguous`]; no match at all is [`LookupError::Unknown`] with the
    /// [`SUGGESTIONS`] closest names. A query with commas is a whole labels line
    /// (`tabby, tabby cat`, as some CSVs carry them) and must match a line exactly.
    pub fn lookup(&self, query: &str) -> Result<usize, LookupError> {
        let q = normalize(query);
        if q.is_empty() {
            return Err(LookupError::Empty);
        }
        if let Some(index) = parse_index(&q) {
            return if index < self.len() {
                Ok(index)
            } else {
                Err(LookupError::OutOfRange { index, len: self.len() })
            };
        }
        if q.contains(',') {
            // A whole labels line pasted as is (`tabby, tabby cat`) names its class.
            let line: Vec<String> = q.split(',').map(normalize).filter(|n| !n.is_empty()).collect();
            let lines: Vec<usize> = (0..self.len()).filter(|&i| self.normalized[i] == line).collect();
            return match lines.as_slice() {
                [one] => Ok(*one),
                [] => Err(LookupError::Unknown {
                    query: query.trim().to_owned(),
                    suggestions: self.named(self.suggest(&line[..line.len().min(1)].concat(), SUGGESTIONS)),
                }),
                many => Err(LookupError::Ambiguous {
                    query: query.trim().to_owned(),
                    candidates: self.named(many.to_vec()),
                }),
            };
        }
        let first: Vec<usize> = (0..self.len()).filter(|&i| self.normalized[i][0] == q).collect();
        let matches = if first.is_empty() {
            (0..self.len()).filter(|&i| self.normalized[i][1..].contains(&q)).collect()
        } else {
            first
        };
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(LookupError::Unknown {
                query: query.trim().to_owned(),
                suggestions: self.named(self.suggest(query, SUGGESTIONS)),
            }),
            many => {
                Err(LookupError::Ambiguous { query: query.trim().to_owned(), candidates: self.named(many.to_vec()) })
            }
        }
    }

    /// The `n` classes whose names are closest to `query`, closest first: edit distance
    /// (Levenshtein over characters) between normalised names, any synonym counting; a name
    /// containing the query as a whole word counts as distance 1, so `cat` suggests the cats
    /// rather than `cab`. Ties go to display names, then to lower indices.
    pub fn suggest(&self, query: &str, n: usize) -> Vec<usize> {
        let q: Vec<char> = normalize(query).chars().collect();
        let mut scored: Vec<(usize, bool, usize)> = (0..self.len())
            .map(|i| {
                self.normalized[i]
                    .iter()
                    .enumerate()
                    .map(|(k, name)| {
                        let word = !q.is_empty() && name.split(' ').any(|w| w.chars().eq(q.iter().copied()));
                        let d = levenshtein(&q, &name.chars().collect::<Vec<_>>());
                        (if word { d.min(1) } else { d }, k > 0, i)
                    })
                    .min()
                    .expect("every class has a name")
            })
            .collect();
        scored.sort_unstable();
        scored.into_iter().take(n).map(|(_, _, i)| i).collect()
    }

    /// Classes matching a partial query, best first, at most `limit`: the index (when the
    /// query is a number), whole names, then prefixes, word prefixes and substrings of any
    /// synonym. Within a kind, shorter matched names first, then lower indices. An empty
    /// query lists classes in index order (the TUI shows them all before typing).
    pub fn search(&self, query: &str, limit: usize) -> Vec<SearchHit> {
        let q = normalize(query);
        if q.is_empty() {
            return (0..self.len().min(limit))
                .map(|i| SearchHit { index: i, matched: self.classes[i][0].clone(), kind: MatchKind::Index })
                .collect();
        }
        let mut hits: Vec<(MatchKind, usize, usize, usize)> = Vec::new(); // kind, name length, index, synonym
        if let Some(index) = parse_index(&q).filter(|&i| i < self.len()) {
            hits.push((MatchKind::Index, 0, index, 0));
        }
        for (i, names) in self.normalized.iter().enumerate() {
            let best = names
                .iter()
                .enumerate()
                .filter_map(|(k, name)| {
                    let kind = if *name == q {
                        if k == 0 { MatchKind::FirstName } else { MatchKind::Synonym }
                    } else if name.starts_with(&q) {
                        MatchKind::Prefix
                    } else if name.match_indices(&q).any(|(at, _)| name[..at].ends_with(' ')) {
                        MatchKind::WordPrefix
                    } else if name.contains(&q) {
                        MatchKind::Substring
                    } else {
                        return None;
                    };
                    Some((kind, name.len(), i, k))
                })
                .min();
            hits.extend(best);
        }
        hits.sort_unstable();
        // The index hit may repeat as a name hit (labels that are numbers): keep the first.
        let mut seen = std::collections::HashSet::new();
        hits.retain(|&(_, _, i, _)| seen.insert(i));
        hits.truncate(limit);
        hits.into_iter()
            .map(|(kind, _, i, k)| SearchHit { index: i, matched: self.classes[i][k].clone(), kind })
            .collect()
    }

    fn named(&self, indices: Vec<usize>) -> Vec<(usize, String)> {
        indices.into_iter().map(|i| (i, self.name(i))).collect()
    }
}

/// The form names are compared in: lower case, with spaces, underscores and hyphens (and
/// runs of them) folded to one space and none at either end. `Wall_Clock`, `wall-clock`
/// and ` wall  clock ` all become `wall clock`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split(|c: char| c.is_whitespace() || c == '_' || c == '-').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// A normalised query that is all ASCII digits, as an index (`None` for names, or numbers
/// too large for `usize`, which are out of range anyway and reported as unknown names).
fn parse_index(q: &str) -> Option<usize> {
    if q.bytes().all(|b| b.is_ascii_digit()) { q.parse().ok() } else { None }
}

/// Levenshtein distance with one row of memory.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imagenet() -> Labels {
        Labels::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagenet_labels.txt")).unwrap()
    }

    fn synthetic(text: &str) -> Labels {
        Labels::parse(text, Path::new("test.txt")).unwrap()
    }

    #[test]
    fn normalize_folds_case_and_separators() {
        assert_eq!(normalize("Wall_Clock"), "wall clock");
        assert_eq!(normalize("  wall -_ clock "), "wall clock");
        assert_eq!(normalize("black-and-tan coonhound"), "black and tan coonhound");
        assert_eq!(normalize("__"), "");
    }

    #[test]
    fn sample_folder_names_resolve_in_imagenet() {
        let l = imagenet();
        assert_eq!(l.len(), 1000);
        for (name, want) in [
            ("tabby", 281),
            ("espresso", 967),
            ("tripod", 872),
            ("wall_clock", 892),
            ("missile", 657),
            ("palace", 698),
            ("military_uniform", 652),
        ] {
            assert_eq!(l.lookup(name), Ok(want), "{name}");
        }
    }

    #[test]
    fn any_synonym_matches_forgivingly() {
        let l = imagenet();
        assert_eq!(l.lookup("Tabby-Cat"), Ok(281));
        assert_eq!(l.lookup("tabby  cat"), Ok(281));
        assert_eq!(l.lookup("Carassius_auratus"), Ok(1));
        assert_eq!(l.lookup("man eater"), Ok(2));
        assert_eq!(l.lookup("Black and Tan Coonhound"), Ok(165));
        assert_eq!(l.lookup("Tabby, tabby_cat"), Ok(281), "a whole line");
        assert_eq!(l.lookup("projectile,missile"), Ok(744));
        let Err(LookupError::Unknown { suggestions, .. }) = l.lookup("tabby, house cat") else { panic!() };
        assert_eq!(suggestions[0].0, 281);
    }

    #[test]
    fn first_name_beats_later_synonym() {
        let l = imagenet();
        assert_eq!(l.synonyms(744), ["projectile", "missile"]);
        assert_eq!(l.lookup("missile"), Ok(657));
        assert_eq!(l.lookup("projectile"), Ok(744));
        let s = synthetic("b, a\na\nc, a\n");
        assert_eq!(s.lookup("a"), Ok(1));
    }

    #[test]
    fn ties_are_ambiguous_with_candidates() {
        let l = imagenet();
        let err = l.lookup("Crane").unwrap_err();
        assert_eq!(
            err,
            LookupError::Ambiguous {
                query: "Crane".into(),
                candidates: vec![(134, "crane".into()), (517, "crane".into())]
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("134") && msg.contains("517") && msg.contains("index"), "{msg}");
        assert!(matches!(l.lookup("maillot"), Err(LookupError::Ambiguous { candidates, .. }) if candidates.len() == 2));
        // Only later synonyms match, in two classes: ambiguous too.
        let s = synthetic("x, shared\ny, shared\n");
        assert!(matches!(s.lookup("shared"), Err(LookupError::Ambiguous { .. })));
    }

    #[test]
    fn numbers_are_range_checked_indices() {
        let l = imagenet();
        assert_eq!(l.lookup("281"), Ok(281));
        assert_eq!(l.lookup(" 0 "), Ok(0));
        assert_eq!(l.lookup("999"), Ok(999));
        let err = l.lookup("1000").unwrap_err();
        assert_eq!(err, LookupError::OutOfRange { index: 1000, len: 1000 });
        assert!(err.to_string().contains("0..=999"), "{err}");
        assert_eq!(l.lookup(""), Err(LookupError::Empty));
        assert_eq!(l.lookup(" _ "), Err(LookupError::Empty));
    }

    #[test]
    fn unknown_names_get_three_closest_suggestions() {
        let l = imagenet();
        let Err(LookupError::Unknown { query, suggestions }) = l.lookup("espreso") else { panic!("espreso resolved") };
        assert_eq!(query, "espreso");
        assert_eq!(suggestions.len(), SUGGESTIONS);
        assert_eq!(suggestions[0], (967, "espresso".into()));
        let Err(err @ LookupError::Unknown { .. }) = l.lookup("wall_clok") else { panic!() };
        assert!(err.to_string().contains("892 \"wall clock\""), "{err}");
        assert!(matches!(l.lookup("astronaut"), Err(LookupError::Unknown { .. })));
        // A whole word of a name beats a one-letter edit of a short name.
        let cats = l.suggest("cat", 3);
        assert!(cats.iter().all(|&i| l.synonyms(i).iter().any(|n| n.ends_with(" cat"))), "{cats:?}");
    }

    #[test]
    fn suggestions_prefer_closer_then_display_names() {
        let s = synthetic("apple\nzzz, appla\nbanana\n");
        assert_eq!(s.suggest("appl", 3), vec![0, 1, 2]);
        assert_eq!(s.suggest("banan", 1), vec![2]);
    }

    #[test]
    fn search_ranks_index_names_prefixes_words_substrings() {
        let s = synthetic("cat\ncatamaran\ntabby cat\nbobcat, bay lynx\nconcat\n");
        let got: Vec<(usize, MatchKind)> = s.search("cat", 10).iter().map(|h| (h.index, h.kind)).collect();
        assert_eq!(
            got,
            vec![
                (0, MatchKind::FirstName),
                (1, MatchKind::Prefix),
                (2, MatchKind::WordPrefix),
                (3, MatchKind::Substring),
                (4, MatchKind::Substring)
            ]
        );
        let hit = &s.search("LYNX", 10)[0];
        assert_eq!((hit.index, hit.matched.as_str(), hit.kind), (3, "bay lynx", MatchKind::WordPrefix));
        assert_eq!(s.search("cat", 2).len(), 2);
        assert!(s.search("dog", 10).is_empty());
        assert_eq!(s.search("", 3).iter().map(|h| h.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn search_by_index_and_partial_imagenet_names() {
        let l = imagenet();
        let hits = l.search("281", 5);
        assert_eq!((hits[0].index, hits[0].kind), (281, MatchKind::Index));
        assert!(l.search("5000", 5).is_empty());
        let hits = l.search("wall c", 5);
        assert_eq!(hits[0].index, 892);
        let hits = l.search("espr", 5);
        assert_eq!((hits[0].index, hits[0].kind), (967, MatchKind::Prefix));
        // Every class whose display name is `crane` is found.
        let cranes: Vec<usize> =
            l.search("crane", 10).iter().filter(|h| h.kind == MatchKind::FirstName).map(|h| h.index).collect();
        assert_eq!(cranes, vec![134, 517]);
    }
}
