//! Triage inside the inspector, as plain data and pure functions: the scan's results against
//! ground truth, the filter and sort of the file list, the next mistake, and the rows of the
//! summary view.
//!
//! Results live in one dense vector ([`Triage::results`], in arrival order) so the summary
//! and the filters of [`crate::dataset::stats`] run on it as they are; each listed
//! [`FileEntry`](super::state::FileEntry) points at its slot.

use crate::dataset::stats::{self, Filter, ImageResult, Outcome, SortKey, Summary};
use crate::model::Labels;

use super::state::{FileEntry, FileList};

/// Examples kept in each list of the summary (confident mistakes, unsure correct answers).
pub const SUMMARY_EXAMPLES: usize = 10;
/// Confusions listed by the summary view.
pub const SUMMARY_CONFUSIONS: usize = 50;

/// Where the background scan is.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanState {
    /// No triage: the path is one image.
    Off,
    /// Waiting for the listing to finish.
    Waiting,
    /// No image has ground truth (the reason is in the status message).
    NoTruth,
    Scanning,
    Done {
        seconds: f64,
    },
    Failed(String),
}

/// Counts of the scan so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Images to scan (the listing).
    pub total: usize,
    /// Results computed by the model, and served from the cache.
    pub computed: usize,
    pub cached: usize,
    pub unreadable: usize,
    /// Images per second of the model, once known.
    pub rate: Option<f64>,
    /// Labeled images with a result, and how many of them are right (running top-1).
    pub labeled: usize,
    pub correct: usize,
}

impl Progress {
    /// Images done (a result or unreadable).
    pub fn done(&self) -> usize {
        self.computed + self.cached + self.unreadable
    }
}

/// The triage state of the inspector.
#[derive(Debug, Clone)]
pub struct Triage {
    pub state: ScanState,
    /// Results in arrival order; [`FileEntry::result`] indexes this.
    pub results: Vec<ImageResult>,
    /// Entry (listing index) of each result.
    pub entry_of: Vec<usize>,
    pub filter: Filter,
    pub sort: SortKey,
    pub progress: Progress,
    /// The summary of `results`, computed when the summary view needs it; `None` once stale.
    pub summary: Option<Summary>,
    /// What the user should know about the ground truth (folders that name no class, CSV
    /// warnings) and the cache; shown in the summary view.
    pub notes: Vec<String>,
    /// Whether the file list's order must be rebuilt (new results under a filter or a sort).
    pub order_stale: bool,
}

impl Triage {
    pub fn new(enabled: bool) -> Self {
        Self {
            state: if enabled { ScanState::Waiting } else { ScanState::Off },
            results: Vec::new(),
            entry_of: Vec::new(),
            filter: Filter::All,
            sort: SortKey::Name,
            progress: Progress::default(),
            summary: None,
            notes: Vec::new(),
            order_stale: false,
        }
    }

    /// Whether ground truth is known for some images (the triage keys work).
    pub fn active(&self) -> bool {
        matches!(self.state, ScanState::Scanning | ScanState::Done { .. } | ScanState::Failed(_))
    }

    /// Whether the file list shows something else than every image in listing order.
    pub fn custom_order(&self) -> bool {
        self.filter != Filter::All || self.sort != SortKey::Name
    }

    /// The result of an entry, if scanned.
    pub fn result<'a>(&'a self, e: &FileEntry) -> Option<&'a ImageResult> {
        e.result.map(|slot| &self.results[slot])
    }

    /// Store a result for entry `index` (replacing an earlier one).
    pub fn insert(&mut self, entries: &mut [FileEntry], index: usize, result: ImageResult) {
        let Some(e) = entries.get_mut(index) else { return };
        if e.prediction.is_none() {
            e.prediction = result.predicted().map(|c| (c, result.confidence()));
        }
        e.truth = e.truth.or(result.truth);
        let p = &mut self.progress;
        let slot = match e.result {
            Some(slot) => {
                let old = &self.results[slot];
                if old.truth.is_some() {
                    p.labeled -= 1;
                    p.correct -= usize::from(old.outcome() == Outcome::Correct);
                }
                slot
            }
            None => {
                self.results.push(result.clone());
                self.entry_of.push(index);
                self.results.len() - 1
            }
        };
        if result.truth.is_some() {
            p.labeled += 1;
            p.correct += usize::from(result.outcome() == Outcome::Correct);
        }
        self.results[slot] = result;
        e.result = Some(slot);
        self.summary = None;
        if self.custom_order() {
            self.order_stale = true;
        }
    }

    /// The summary of the results so far (computed once per change).
    pub fn summary(&mut self) -> &Summary {
        self.summary.get_or_insert_with(|| stats::summarize(&self.results, SUMMARY_EXAMPLES))
    }
}

/// The outcome of an entry: `None` until scanned.
pub fn outcome(t: &Triage, e: &FileEntry) -> Option<Outcome> {
    t.result(e).map(ImageResult::outcome)
}

/// The visible rows (entry indices) for the triage's filter and sort. Sorting by name keeps
/// the listing's order; under the `All` filter, images not scanned yet follow the sorted ones.
pub fn visible_order(files: &FileList, t: &Triage) -> Vec<usize> {
    if !t.custom_order() {
        return (0..files.entries.len()).collect();
    }
    let mut order: Vec<usize> = if t.sort == SortKey::Name {
        let mut v: Vec<usize> =
            (0..t.results.len()).filter(|&s| t.filter.matches(&t.results[s])).map(|s| t.entry_of[s]).collect();
        v.sort_unstable();
        v
    } else {
        stats::select(&t.results, &t.filter, t.sort).into_iter().map(|s| t.entry_of[s]).collect()
    };
    if t.filter == Filter::All {
        order.extend((0..files.entries.len()).filter(|&i| files.entries[i].result.is_none()));
    }
    order
}

/// From the cursor, the position of the next (`forward`) or previous misclassified row,
/// wrapping around; `None` if no visible row is a mistake.
pub fn next_mistake(files: &FileList, t: &Triage, forward: bool) -> Option<usize> {
    let n = files.order.len();
    let at = files.cursor.min(n.saturating_sub(1));
    (1..=n)
        .map(|k| if forward { (at + k) % n } else { (at + n - k % n) % n })
        .find(|&pos| outcome(t, &files.entries[files.order[pos]]) == Some(Outcome::Wrong))
}

/// `f`: all → misclassified → correct → all; a class or confusion filter goes back to all.
pub fn next_filter(f: &Filter) -> Filter {
    match f {
        Filter::All => Filter::Misclassified,
        Filter::Misclassified => Filter::Correct,
        _ => Filter::All,
    }
}

/// The sorts `o` cycles through.
pub const SORTS: [SortKey; 4] = [SortKey::Name, SortKey::MistakeConfidence, SortKey::Margin, SortKey::Loss];

/// The filter as the files pane's title shows it.
pub fn filter_name(f: &Filter, labels: &Labels) -> String {
    match f {
        Filter::All => "all".into(),
        Filter::Misclassified => "misclassified".into(),
        Filter::Correct => "correct".into(),
        Filter::TrueClass(c) => format!("true {}", labels.name(*c)),
        Filter::Confusion { truth, predicted } => format!("{} → {}", labels.name(*truth), labels.name(*predicted)),
    }
}

pub fn sort_name(s: SortKey) -> &'static str {
    match s {
        SortKey::Name => "by name",
        SortKey::MistakeConfidence => "by mistake confidence",
        SortKey::Margin => "by margin",
        SortKey::Loss => "by loss",
    }
}

/// What a row of the summary view selects (Enter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryItem {
    /// Filter the file list to this confusion.
    Confusion { truth: usize, predicted: usize },
    /// Select this image (an entry index).
    Image(usize),
    /// Filter the file list to this true class.
    Class(usize),
}

/// How a summary row reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Heading,
    Text,
    Note,
    Item(SummaryItem),
}

/// One line of the summary view.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub kind: RowKind,
    pub text: String,
}

fn pct(part: usize, whole: usize) -> String {
    if whole == 0 { "n/a".into() } else { format!("{:.1}%", part as f64 * 100.0 / whole as f64) }
}

/// The summary view, top to bottom: counts and accuracy, notes, confusions, the most
/// confident mistakes, the least confident correct answers, and per-class accuracy (worst
/// first). `s` must be the summary of `t.results`.
pub fn summary_rows(t: &Triage, s: &Summary, files: &FileList, labels: &Labels) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    let mut push = |kind, text: String| rows.push(SummaryRow { kind, text });
    let p = &t.progress;
    let scan = match &t.state {
        ScanState::Scanning => format!("scanning {}/{}", p.done(), p.total),
        ScanState::Done { .. } => "scan complete".into(),
        ScanState::Failed(e) => format!("scan failed: {e}"),
        _ => String::new(),
    };
    push(
        RowKind::Text,
        format!(
            "{} of {} images scanned · {} labeled, {} unlabeled, {} unreadable · {scan}",
            s.images,
            p.total,
            s.labeled,
            s.images - s.labeled,
            p.unreadable
        ),
    );
    push(
        RowKind::Text,
        format!(
            "top-1 accuracy {} ({}/{}) · top-5 accuracy {} ({}/{})",
            pct(s.top1_correct, s.labeled),
            s.top1_correct,
            s.labeled,
            pct(s.top5_correct, s.labeled),
            s.top5_correct,
            s.labeled
        ),
    );
    for n in &t.notes {
        push(RowKind::Note, format!("note: {n}"));
    }
    let name = |entry: usize| files.entries.get(entry).map_or("?", |e| e.name.as_str()).to_owned();
    let answer = |slot: usize| {
        let r = &t.results[slot];
        let pred = r.predicted().map_or_else(|| "?".into(), |c| labels.name(c));
        let conf = r.confidence() * 100.0;
        match r.truth {
            Some(truth) if r.outcome() == Outcome::Wrong => {
                format!("{} → {pred} {conf:.0}% (true {:.0}%)", labels.name(truth), r.p_truth.unwrap_or(0.0) * 100.0)
            }
            _ => format!("{pred} {conf:.0}%"),
        }
    };
    push(RowKind::Text, String::new());
    push(RowKind::Heading, "Most frequent confusions (true → predicted, count)".into());
    if s.confusions.is_empty() {
        push(RowKind::Text, "  none yet".into());
    }
    for c in s.confusions.iter().take(SUMMARY_CONFUSIONS) {
        let pair = format!("{} → {}", labels.name(c.truth), labels.name(c.predicted));
        push(
            RowKind::Item(SummaryItem::Confusion { truth: c.truth, predicted: c.predicted }),
            format!("  {pair:<48} {:>5}", c.count),
        );
    }
    if s.confusions.len() > SUMMARY_CONFUSIONS {
        push(RowKind::Text, format!("  … {} more", s.confusions.len() - SUMMARY_CONFUSIONS));
    }
    push(RowKind::Text, String::new());
    push(RowKind::Heading, "Most confident mistakes".into());
    if s.confident_mistakes.is_empty() {
        push(RowKind::Text, "  none yet".into());
    }
    for &slot in &s.confident_mistakes {
        let entry = t.entry_of[slot];
        push(RowKind::Item(SummaryItem::Image(entry)), format!("  {:<40} {}", name(entry), answer(slot)));
    }
    push(RowKind::Text, String::new());
    push(RowKind::Heading, "Least confident correct predictions".into());
    if s.unsure_correct.is_empty() {
        push(RowKind::Text, "  none yet".into());
    }
    for &slot in &s.unsure_correct {
        let entry = t.entry_of[slot];
        push(RowKind::Item(SummaryItem::Image(entry)), format!("  {:<40} {}", name(entry), answer(slot)));
    }
    push(RowKind::Text, String::new());
    push(RowKind::Heading, "Per-class accuracy, worst first (images, correct)".into());
    let mut classes: Vec<_> = s.per_class.iter().collect();
    classes.sort_by(|a, b| {
        a.accuracy()
            .total_cmp(&b.accuracy())
            .then(b.images.cmp(&a.images))
            .then_with(|| labels.name(a.class).cmp(&labels.name(b.class)))
    });
    for c in classes {
        push(
            RowKind::Item(SummaryItem::Class(c.class)),
            format!("  {:<40} {:>6} {:>6} {:>7}", labels.name(c.class), c.images, c.correct, pct(c.correct, c.images)),
        );
    }
    rows
}

/// The selectable items of the summary view, in order.
pub fn summary_items(rows: &[SummaryRow]) -> Vec<SummaryItem> {
    rows.iter()
        .filter_map(|r| match r.kind {
            RowKind::Item(i) => Some(i),
            _ => None,
        })
        .collect()
}
