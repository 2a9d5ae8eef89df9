//! Triage inside the inspector, as plain data and pure functions: the scan's results against
//! ground truth, the filter and sort of the file list, the next mistake, and the rows of the
//! summary view.
//!
//! Results live in one dense vector ([`Triage::results`], in arrival order) so the summary
//! and the filters of [`crate::dataset::stats`] run on it as they are; each listed
//! [`FileEntry`](super::state::FileEntry) points at its slot.

use crate::dataset::stats::{self, Filter, ImageResult, Outcome, SortKey, Summary};
use crate::engine::Fault;
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
    /// No scan: the results were recorded by `camscope triage` (see [`super::recorded`]);
    /// `source` names them for the status bar.
    Recorded {
        source: String,
    },
}

/// Counts of the scan so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Images to scan (the listing).
    pub total: usize,
    /// Results computed by the model, and served from the cache.
    pub computed: usize,
    pub cached: usize,
    /// Images that could not be read, and images the model scored NaN (see [`Fault`]).
    pub unreadable: usize,
    pub nan_scores: usize,
    /// Images per second of the model, once known.
    pub rate: Option<f64>,
    /// Labeled images with a result, and how many of them are right (running top-1).
    pub labeled: usize,
    pub correct: usize,
    /// Recorded results only: images not found under the root.
    pub missing: usize,
}

impl Progress {
    /// Images done (a result, unreadable or NaN scores).
    pub fn done(&self) -> usize {
        self.computed + self.cached + self.unreadable + self.nan_scores
    }

    /// Count the images without a result by [`Fault`], from the file list.
    pub fn count_failures(&mut self, entries: &[FileEntry]) {
        let failed = || entries.iter().filter(|e| e.error.is_some() && e.result.is_none());
        self.unreadable = failed().filter(|e| e.fault == Fault::Unreadable).count();
        self.nan_scores = failed().filter(|e| e.fault == Fault::NonFinite).count();
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
        matches!(
            self.state,
            ScanState::Scanning | ScanState::Done { .. } | ScanState::Failed(_) | ScanState::Recorded { .. }
        )
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
        Filter::Misclassified => "mistakes".into(),
        Filter::Correct => "correct".into(),
        Filter::TrueClass(c) => format!("true {}", labels.name(*c)),
        Filter::Confusion { truth, predicted } => format!("{} → {}", labels.name(*truth), labels.name(*predicted)),
    }
}

pub fn sort_name(s: SortKey) -> &'static str {
    match s {
        SortKey::Name => "by name",
        SortKey::MistakeConfidence => "by confidence",
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
    let nan = match p.nan_scores {
        0 => String::new(),
        n => format!(", {n} with NaN scores"),
    };
    let counts = format!("{} labeled, {} unlabeled, {} unreadable{nan}", s.labeled, s.images - s.labeled, p.unreadable);
    let first = match &t.state {
        ScanState::Recorded { source } => {
            let missing = match p.missing {
                0 => String::new(),
                n => format!(" · {n} missing under the root (--root)"),
            };
            format!("{} images recorded · {counts}{missing} · by {source}, not rescanned", p.total)
        }
        state => {
            let scan = match state {
                ScanState::Scanning => format!("scanning {}/{}", p.done(), p.total),
                ScanState::Done { .. } => "scan complete".into(),
                ScanState::Failed(e) => format!("scan failed: {e}"),
                _ => String::new(),
            };
            format!("{} of {} images scanned · {counts} · {scan}", s.images, p.total)
        }
    };
    push(RowKind::Text, first);
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

#[cfg(test)]
mod tests {
    use crossterm::event::KeyCode;

    use super::super::scanner::ScanEvent;
    use super::super::state::{App, Popup, ViewMode};
    use super::super::testing::*;
    use super::super::update::{Msg, settle, update};
    use super::*;

    #[test]
    fn scan_messages_fill_the_entries_and_the_progress() {
        let mut a = triage_listed();
        assert_eq!(a.triage.state, ScanState::Waiting);
        let truths = vec![Some(9), Some(1), Some(3), Some(3), None];
        update(
            &mut a,
            Msg::Scan(ScanEvent::Truth { truths, headline: Some("folder x names no class".into()), notes: vec![] }),
        );
        assert_eq!(a.triage.state, ScanState::Scanning);
        assert_eq!(a.message.as_deref(), Some("folder x names no class"), "reported once, on the status line");
        assert_eq!(a.files.entries[1].truth, Some(1), "the truth is known before the results");
        let mut first = triage_results();
        let rest = first.split_off(2);
        update(&mut a, progress(first, 1, 1));
        assert_eq!(a.files.entries[1].result, Some(1));
        assert_eq!(a.files.entries[1].prediction, Some((9, 0.6)), "the scan fills in the prediction");
        assert_eq!(outcome(&a.triage, &a.files.entries[0]), Some(Outcome::Correct));
        assert_eq!(outcome(&a.triage, &a.files.entries[1]), Some(Outcome::Wrong));
        assert_eq!(outcome(&a.triage, &a.files.entries[2]), None, "not scanned yet");
        let p = &a.triage.progress;
        assert_eq!((p.total, p.done(), p.labeled, p.correct, p.rate), (5, 2, 2, 1, Some(12.5)));
        // A result for an index past the listing is ignored; an unreadable image is counted.
        let mut rest = rest;
        rest.push((99, result("zz.png", (0, 1.0), None)));
        update(
            &mut a,
            Msg::Scan(ScanEvent::Progress {
                results: rest,
                unreadable: vec![(4, "e.png: corrupt".into(), crate::engine::Fault::Unreadable)],
                computed: 4,
                cached: 1,
                rate: None,
            }),
        );
        assert_eq!(a.triage.results.len(), 5);
        assert_eq!(a.triage.progress.done(), 5, "4 computed and 1 cached (e.png's error is its own result)");
        assert_eq!(a.triage.progress.rate, Some(12.5), "the last known rate stays");
        assert_eq!(a.files.entries[4].error.as_deref(), Some("e.png: corrupt"));
        update(&mut a, Msg::Scan(ScanEvent::Finished { seconds: 2.0, note: Some("scan cache discarded".into()) }));
        assert_eq!(a.triage.state, ScanState::Done { seconds: 2.0 });
        assert!(a.triage.notes.iter().any(|n| n.contains("cache discarded")));
    }

    #[test]
    fn no_ground_truth_says_so_and_the_triage_keys_explain_themselves() {
        let mut a = triage_listed();
        update(&mut a, ch('f'));
        assert!(a.message.as_deref().unwrap().contains("when the listing is complete"), "{:?}", a.message);
        a.message = None;
        update(&mut a, Msg::Scan(ScanEvent::NoTruth { reason: None, notes: vec![] }));
        assert_eq!(a.triage.state, ScanState::NoTruth);
        assert_eq!(a.message, None, "a folder of images without classes is not a mistake: quiet");
        update(
            &mut a,
            Msg::Scan(ScanEvent::NoTruth { reason: Some("l.csv names none of the images".into()), notes: vec![] }),
        );
        assert!(a.message.as_deref().unwrap().contains("l.csv names none"));
        for key in ['t', 'f', 'o', 'n', 'x'] {
            a.message = None;
            update(&mut a, ch(key));
            assert!(a.message.as_deref().is_some_and(|m| m.contains("ground truth")), "{key}: {:?}", a.message);
            assert_eq!((&a.triage.filter, a.popup.clone(), a.view), (&Filter::All, Popup::None, ViewMode::Overlay));
        }
        // A single image: no triage at all, and nothing in the status bar about it.
        let mut a = listed(&["a.png"]);
        update(&mut a, ch('n'));
        assert!(a.message.as_deref().unwrap().contains("folder of images"));
    }

    #[test]
    fn filters_cycle_and_keep_the_selection_while_visible() {
        let mut a = triaged();
        update(&mut a, ch('j')); // b.png
        let cmds = update(&mut a, ch('f'));
        assert_eq!(a.triage.filter, Filter::Misclassified);
        assert_eq!(visible(&a), vec!["b.png", "d.png"]);
        assert_eq!(a.files.cursor, 0, "b.png is still selected, now first");
        assert!(shows(&cmds).is_empty(), "the image on screen does not change");
        let cmds = update(&mut a, ch('f'));
        assert_eq!(a.triage.filter, Filter::Correct);
        assert_eq!(visible(&a), vec!["a.png", "c.png"]);
        assert_eq!(shows(&cmds), vec![(3, "a.png".into(), None)], "b.png is hidden: the first row is shown");
        update(&mut a, ch('f'));
        assert_eq!(a.triage.filter, Filter::All);
        assert_eq!(visible(&a), TRIAGE_NAMES.to_vec());
        assert_eq!(a.files.cursor, 0);
    }

    #[test]
    fn sorts_cycle_both_ways_and_unscanned_images_come_last() {
        let mut a = triage_listed();
        let truths = triage_results().into_iter().map(|(_, r)| r.truth).collect();
        update(&mut a, Msg::Scan(ScanEvent::Truth { truths, headline: None, notes: vec![] }));
        let mut results = triage_results();
        results.remove(0); // a.png not scanned yet
        update(&mut a, progress(results, 4, 0));
        update(&mut a, ch('o'));
        assert_eq!(a.triage.sort, SortKey::MistakeConfidence);
        assert_eq!(visible(&a), vec!["d.png", "b.png", "c.png", "e.png", "a.png"]);
        update(&mut a, ch('o'));
        assert_eq!(a.triage.sort, SortKey::Margin);
        update(&mut a, ch('o'));
        assert_eq!(a.triage.sort, SortKey::Loss);
        assert_eq!(visible(&a), vec!["d.png", "b.png", "c.png", "e.png", "a.png"]);
        update(&mut a, ch('O'));
        update(&mut a, ch('O'));
        update(&mut a, ch('O'));
        assert_eq!(a.triage.sort, SortKey::Name, "O goes back");
        // a.png's result arrives under a sort: the order is rebuilt once per frame, by settle.
        update(&mut a, ch('o'));
        assert_eq!(a.files.selected().unwrap().name, "a.png", "the selection follows its image");
        update(&mut a, progress(vec![triage_results().remove(0)], 5, 0));
        assert!(a.triage.order_stale);
        assert_eq!(visible(&a), vec!["d.png", "b.png", "c.png", "e.png", "a.png"], "not yet");
        assert!(settle(&mut a).is_empty(), "a.png stays selected: nothing new to show");
        assert_eq!(visible(&a), vec!["d.png", "b.png", "a.png", "c.png", "e.png"]);
        assert_eq!(a.files.cursor, 2);
        assert!(!a.triage.order_stale);
    }

    #[test]
    fn n_and_shift_n_walk_the_mistakes_and_wrap() {
        let mut a = triaged();
        let at = |a: &App| a.files.selected().unwrap().name.clone();
        update(&mut a, ch('n'));
        assert_eq!(at(&a), "b.png");
        update(&mut a, ch('n'));
        assert_eq!(at(&a), "d.png");
        let cmds = update(&mut a, ch('n'));
        assert_eq!(at(&a), "b.png", "wraps past the end");
        assert_eq!(shows(&cmds).len(), 1);
        update(&mut a, ch('N'));
        assert_eq!(at(&a), "d.png", "wraps before the start");
        // No mistake in the list: a message, and the selection stays.
        update(&mut a, ch('f'));
        update(&mut a, ch('f'));
        assert_eq!(a.triage.filter, Filter::Correct);
        let before = a.files.cursor;
        update(&mut a, ch('n'));
        assert_eq!(a.files.cursor, before);
        assert!(a.message.as_deref().unwrap().contains("no misclassified image"));
    }

    #[test]
    fn summary_rows_select_filters_and_images() {
        let mut a = triaged();
        update(&mut a, ch('t'));
        let Popup::Summary(p) = &a.popup else { panic!("t opens the summary") };
        assert_eq!(p.selected, Some(SummaryItem::Confusion { truth: 1, predicted: 9 }), "the first item");
        let s = a.triage.summary.clone().unwrap();
        let items = summary_items(&summary_rows(&a.triage, &s, &a.files, &a.info.labels));
        assert_eq!(
            items,
            vec![
                SummaryItem::Confusion { truth: 1, predicted: 9 },
                SummaryItem::Confusion { truth: 3, predicted: 2 },
                SummaryItem::Image(3),
                SummaryItem::Image(1),
                SummaryItem::Image(2),
                SummaryItem::Image(0),
                SummaryItem::Class(1),
                SummaryItem::Class(3),
                SummaryItem::Class(9),
            ]
        );
        update(&mut a, ch('j'));
        let cmds = update(&mut a, press(KeyCode::Enter));
        assert_eq!(a.popup, Popup::None);
        assert_eq!(a.triage.filter, Filter::Confusion { truth: 3, predicted: 2 });
        assert_eq!(visible(&a), vec!["d.png"]);
        assert_eq!(shows(&cmds), vec![(2, "d.png".into(), None)]);
        // The last class row filters by that class; Esc closes without changing anything.
        update(&mut a, ch('t'));
        update(&mut a, ch('G'));
        update(&mut a, ch('k'));
        update(&mut a, press(KeyCode::Enter));
        assert_eq!(a.triage.filter, Filter::TrueClass(3));
        assert_eq!(visible(&a), vec!["c.png", "d.png"]);
        update(&mut a, ch('t'));
        update(&mut a, press(KeyCode::Down));
        update(&mut a, press(KeyCode::Esc));
        assert_eq!((a.popup.clone(), &a.triage.filter), (Popup::None, &Filter::TrueClass(3)));
        assert!(!a.quit, "Esc closes the summary, not the inspector");
        // An image row selects the image, leaving the filter when it hides the image.
        update(&mut a, ch('t'));
        for _ in 0..3 {
            update(&mut a, ch('j'));
        }
        update(&mut a, press(KeyCode::Enter));
        assert_eq!(a.triage.filter, Filter::All);
        assert_eq!(a.files.selected().unwrap().name, "b.png");
    }

    #[test]
    fn the_summary_follows_the_scan() {
        let mut a = triage_listed();
        let truths = triage_results().into_iter().map(|(_, r)| r.truth).collect();
        update(&mut a, Msg::Scan(ScanEvent::Truth { truths, headline: None, notes: vec![] }));
        update(&mut a, progress(triage_results()[..2].to_vec(), 2, 0));
        update(&mut a, ch('t'));
        assert_eq!(a.triage.summary.as_ref().unwrap().labeled, 2);
        update(&mut a, progress(triage_results()[2..].to_vec(), 5, 0));
        assert!(a.triage.summary.is_none(), "stale");
        settle(&mut a);
        assert_eq!(a.triage.summary.as_ref().unwrap().labeled, 4, "recomputed while the view is open");
    }

    #[test]
    fn compare_is_offered_for_mistakes_only() {
        let mut a = triaged();
        update(&mut a, loaded_msg(1, "a.png"));
        update(&mut a, map_msg(1, "a.png", 9, 0));
        update(&mut a, ch('x'));
        assert_eq!(a.view, ViewMode::Overlay);
        assert!(a.message.as_deref().unwrap().contains("classified correctly"), "{:?}", a.message);
        // v skips the compare view on a correct image.
        for _ in 0..4 {
            update(&mut a, ch('v'));
        }
        assert_eq!(a.view, ViewMode::Overlay);
        // b.png is a mistake (known from the scan before its image is loaded).
        let cmds = update(&mut a, ch('n'));
        assert_eq!(versus(&cmds), vec![None], "not in the compare view: one map");
        let cmds = update(&mut a, ch('x'));
        assert_eq!(a.view, ViewMode::Compare);
        assert_eq!(versus(&cmds), vec![Some(1)], "the true class's map and the contrast are asked for");
        assert_eq!(a.map_serial, 3);
        update(&mut a, loaded_msg(2, "b.png"));
        assert_eq!(a.picture.as_ref().unwrap().images.len(), 1, "no compare maps yet");
        assert!(a.picture.as_ref().unwrap().note.is_some());
        // The answer to the first request (no compare maps) is stale; the second one is shown.
        update(&mut a, map_msg(2, "b.png", 9, 0));
        assert!(a.current.as_ref().unwrap().map.is_none());
        update(&mut a, compare_map_msg(3, "b.png", 9, 1));
        let pic = a.picture.as_ref().unwrap();
        assert_eq!(pic.images.len(), 3);
        let titles: Vec<&str> = pic.captions.iter().map(|c| c.title.as_str()).collect();
        assert!(titles[0].starts_with("predicted ") && titles[1].starts_with("true "), "{titles:?}");
        assert_eq!(titles[2], "predicted − true");
        assert_eq!(pic.captions[2].detail, "class 9 over class 1");
        // Moving on in the compare view: the next mistake comes with its compare maps.
        let cmds = update(&mut a, ch('n'));
        assert_eq!(versus(&cmds), vec![Some(3)], "d.png is class 3, known from the scan");
        // On a correct image the view stays, showing the overlay with a note.
        update(&mut a, press(KeyCode::Home));
        let serial = a.map_serial;
        update(&mut a, loaded_msg(serial, "a.png"));
        update(&mut a, map_msg(serial, "a.png", 9, 0));
        assert_eq!(a.view, ViewMode::Compare);
        let pic = a.picture.as_ref().unwrap();
        assert_eq!(pic.images.len(), 1);
        assert!(pic.note.as_deref().unwrap().contains("classified correctly"));
        update(&mut a, ch('x'));
        assert_eq!(a.view, ViewMode::Overlay, "x leaves the compare view");
    }

    #[test]
    fn an_unknown_prediction_upgrades_the_request_once_the_image_is_loaded() {
        let mut a = triage_listed();
        let truths = vec![Some(1), Some(1), Some(3), Some(3), None];
        update(&mut a, Msg::Scan(ScanEvent::Truth { truths, headline: None, notes: vec![] }));
        // a.png's result is known (a mistake for this check: truth 1), b.png's is not.
        update(&mut a, progress(vec![(0, result("a.png", (9, 0.6), Some((1, 0.3))))], 1, 0));
        update(&mut a, ch('x'));
        assert_eq!(a.view, ViewMode::Compare);
        let cmds = update(&mut a, ch('j'));
        assert_eq!(versus(&cmds), vec![None], "b.png's prediction is unknown yet");
        // Its image says class 9, its truth is 1: a mistake, so the compare maps are asked for.
        let serial = a.map_serial;
        let cmds = update(&mut a, loaded_msg(serial, "b.png"));
        assert_eq!(versus(&cmds), vec![Some(1)]);
    }
}
