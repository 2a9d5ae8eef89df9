//! What the model got right and wrong over a dataset: per-image results, the summary, and
//! the filters and sorts the TUI and the triage report use. Pure functions over a slice of
//! [`ImageResult`]s; indices into that slice identify images.
//!
//! ## Definitions
//! - **predicted**: the top-1 class; **correct**: predicted == true class.
//! - **top-5 correct**: the true class is among the first five of `top` (all of them when
//!   the model has fewer classes).
//! - **margin** (signed): `p(true) − max p(any other class)`. Positive when correct (then it
//!   is `p(top1) − p(second)`: how far from flipping), negative for a mistake (then it is
//!   `−(p(predicted) − p(true))`: how much the model preferred its wrong answer). Sorting by
//!   margin ascending puts the most lopsided mistakes first, then the narrowest correct
//!   answers. For an unlabeled image it is `p(top1) − p(second)` (its decisiveness).
//! - **loss**: the cross-entropy `−ln p(true)`, with `p` floored at the smallest positive
//!   `f32` so a zero probability gives a large finite loss (about 87.3), never infinity.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// How many of the top classes count for top-5 accuracy.
pub const TOP5: usize = 5;

/// One class with its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassProb {
    pub class: usize,
    pub probability: f32,
}

/// Whether an image was classified correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Unlabeled,
    Correct,
    Wrong,
}

/// The model's answer for one image, with its ground truth when known.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageResult {
    pub path: PathBuf,
    /// True class, when the dataset says.
    pub truth: Option<usize>,
    /// The most probable classes, most probable first (at least two when the model has two
    /// classes or more, so the margin is defined; [`TOP5`] or more for top-5 accuracy).
    pub top: Vec<ClassProb>,
    /// Probability of the true class (`Some` exactly when `truth` is), wherever it ranks.
    pub p_truth: Option<f32>,
}

impl ImageResult {
    /// From a full probability vector: keeps the `k` best classes and `p(truth)`.
    /// Ties rank the lower class index first, as [`crate::scores::ClassScores::top_k`] does.
    pub fn from_probabilities(path: PathBuf, truth: Option<usize>, probabilities: &[f32], k: usize) -> Self {
        Self { path, truth, top: top_k(probabilities, k), p_truth: truth.and_then(|t| probabilities.get(t).copied()) }
    }

    /// The top-1 class (`None` only for a model with no classes).
    pub fn predicted(&self) -> Option<usize> {
        self.top.first().map(|c| c.class)
    }

    /// Probability of the top-1 class.
    pub fn confidence(&self) -> f32 {
        self.top.first().map_or(0.0, |c| c.probability)
    }

    pub fn outcome(&self) -> Outcome {
        match self.truth {
            None => Outcome::Unlabeled,
            Some(t) if self.predicted() == Some(t) => Outcome::Correct,
            Some(_) => Outcome::Wrong,
        }
    }

    /// Whether the true class is among the first `k` predictions (`None` when unlabeled).
    pub fn in_top(&self, k: usize) -> Option<bool> {
        self.truth.map(|t| self.top.iter().take(k).any(|c| c.class == t))
    }

    /// Signed margin, see the module docs.
    pub fn margin(&self) -> f32 {
        let p = |i: usize| self.top.get(i).map_or(0.0, |c| c.probability);
        match (self.truth, self.p_truth) {
            (Some(t), Some(pt)) => {
                let best_other = self.top.iter().find(|c| c.class != t).map_or(0.0, |c| c.probability);
                pt - best_other
            }
            _ => p(0) - p(1),
        }
    }

    /// `−ln p(true)`, see the module docs (`None` when unlabeled).
    pub fn loss(&self) -> Option<f64> {
        self.p_truth.map(|p| -f64::from(p.max(f32::MIN_POSITIVE)).ln())
    }
}

/// The `k` most probable classes, ties by lower index (NaN ranks last).
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<ClassProb> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    let key = |i: usize| if probabilities[i].is_nan() { f32::NEG_INFINITY } else { probabilities[i] };
    let cmp = |a: &usize, b: &usize| key(*b).total_cmp(&key(*a)).then(a.cmp(b));
    if k < order.len() {
        order.select_nth_unstable_by(k, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    order.into_iter().map(|class| ClassProb { class, probability: probabilities[class] }).collect()
}

/// Accuracy of one true class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub class: usize,
    pub images: usize,
    pub correct: usize,
}

impl ClassAccuracy {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images as f64
    }
}

/// Images of class `truth` predicted as `predicted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub truth: usize,
    pub predicted: usize,
    pub count: usize,
}

/// The triage summary over a set of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub images: usize,
    /// Images with ground truth; accuracies are over these.
    pub labeled: usize,
    pub top1_correct: usize,
    pub top5_correct: usize,
    /// Every true class present, by class index.
    pub per_class: Vec<ClassAccuracy>,
    /// Every (true, predicted) pair of the mistakes, most frequent first, then by classes.
    pub confusions: Vec<Confusion>,
    /// Indices of mistakes, most confident (highest p(predicted)) first, at most `n`.
    pub confident_mistakes: Vec<usize>,
    /// Indices of correct results, least confident (lowest p(true)) first, at most `n`.
    pub unsure_correct: Vec<usize>,
}

impl Summary {
    /// Top-1 accuracy over labeled images (`None` when none is labeled).
    pub fn top1_accuracy(&self) -> Option<f64> {
        (self.labeled > 0).then(|| self.top1_correct as f64 / self.labeled as f64)
    }

    /// Top-5 accuracy over labeled images.
    pub fn top5_accuracy(&self) -> Option<f64> {
        (self.labeled > 0).then(|| self.top5_correct as f64 / self.labeled as f64)
    }
}

/// Summarise `results`, keeping `n` examples in each list of examples.
pub fn summarize(results: &[ImageResult], n: usize) -> Summary {
    let mut b = SummaryBuilder::new(n);
    for (i, r) in results.iter().enumerate() {
        b.add(i, r);
    }
    b.finish()
}

/// [`summarize`], one result at a time, in memory that does not grow with the number of
/// results (one entry per class and per confusion, and the `n` examples of each list): a
/// million-image triage writes its results out as they come instead of holding them all to
/// summarise them. `index` is what the example lists return for a result.
#[derive(Debug, Clone)]
pub struct SummaryBuilder {
    n: usize,
    images: usize,
    labeled: usize,
    top1: usize,
    top5: usize,
    per_class: BTreeMap<usize, ClassAccuracy>,
    confusions: BTreeMap<(usize, usize), usize>,
    /// (p(predicted), path, index), most confident first.
    confident_mistakes: Vec<(f32, PathBuf, usize)>,
    /// (p(true), path, index), least confident first.
    unsure_correct: Vec<(f32, PathBuf, usize)>,
}

impl SummaryBuilder {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            images: 0,
            labeled: 0,
            top1: 0,
            top5: 0,
            per_class: BTreeMap::new(),
            confusions: BTreeMap::new(),
            confident_mistakes: Vec::new(),
            unsure_correct: Vec::new(),
        }
    }

    pub fn add(&mut self, index: usize, r: &ImageResult) {
        self.images += 1;
        let Some(t) = r.truth else { return };
        self.labeled += 1;
        let correct = r.outcome() == Outcome::Correct;
        self.top1 += usize::from(correct);
        self.top5 += usize::from(r.in_top(TOP5) == Some(true));
        let entry = self.per_class.entry(t).or_insert(ClassAccuracy { class: t, images: 0, correct: 0 });
        entry.images += 1;
        entry.correct += usize::from(correct);
        if let (false, Some(p)) = (correct, r.predicted()) {
            *self.confusions.entry((t, p)).or_default() += 1;
        }
        // The orders of `select(.., Misclassified, MistakeConfidence)` and of p(true)
        // ascending, ties by path, as an unsharded summary has always listed them.
        if r.outcome() == Outcome::Wrong {
            keep_first(&mut self.confident_mistakes, self.n, (r.confidence(), &r.path, index), |a, b| b.total_cmp(&a));
        } else if correct {
            let p = r.p_truth.unwrap_or(0.0);
            keep_first(&mut self.unsure_correct, self.n, (p, &r.path, index), |a, b| a.total_cmp(&b));
        }
    }

    /// The paths of the examples kept so far, by the index they were added with: what a
    /// caller that does not keep every path (`merge`, streaming its shards) names them by.
    pub fn example_paths(&self) -> impl Iterator<Item = (usize, &std::path::Path)> {
        self.confident_mistakes.iter().chain(&self.unsure_correct).map(|(_, path, i)| (*i, path.as_path()))
    }

    pub fn finish(self) -> Summary {
        let mut confusions: Vec<Confusion> = self
            .confusions
            .into_iter()
            .map(|((truth, predicted), count)| Confusion { truth, predicted, count })
            .collect();
        confusions.sort_by(|a, b| b.count.cmp(&a.count).then((a.truth, a.predicted).cmp(&(b.truth, b.predicted))));
        Summary {
            images: self.images,
            labeled: self.labeled,
            top1_correct: self.top1,
            top5_correct: self.top5,
            per_class: self.per_class.into_values().collect(),
            confusions,
            confident_mistakes: self.confident_mistakes.into_iter().map(|e| e.2).collect(),
            unsure_correct: self.unsure_correct.into_iter().map(|e| e.2).collect(),
        }
    }
}

/// Insert `item` into the sorted `list` (by `key_order`, then path) if it is among the first `n`.
fn keep_first(
    list: &mut Vec<(f32, PathBuf, usize)>,
    n: usize,
    (key, path, index): (f32, &std::path::Path, usize),
    key_order: impl Fn(f32, f32) -> Ordering,
) {
    let at = list.partition_point(|e| key_order(e.0, key).then_with(|| e.1.as_path().cmp(path)) != Ordering::Greater);
    if at < n {
        list.insert(at, (key, path.to_owned(), index));
        list.truncate(n);
    }
}

/// Which results to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Labeled and wrong.
    Misclassified,
    /// Labeled and right.
    Correct,
    /// Labeled with this true class.
    TrueClass(usize),
    /// This true class predicted as this other one.
    Confusion {
        truth: usize,
        predicted: usize,
    },
}

impl Filter {
    pub fn matches(&self, r: &ImageResult) -> bool {
        match *self {
            Self::All => true,
            Self::Misclassified => r.outcome() == Outcome::Wrong,
            Self::Correct => r.outcome() == Outcome::Correct,
            Self::TrueClass(t) => r.truth == Some(t),
            Self::Confusion { truth, predicted } => r.truth == Some(truth) && r.predicted() == Some(predicted),
        }
    }
}

/// How to order results. Ties, and images a key does not apply to, go by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Mistakes first, the most confident (highest p(predicted)) first; then the rest by path.
    MistakeConfidence,
    /// Signed margin ascending: the worst mistakes first, then the narrowest correct answers.
    Margin,
    /// Loss descending; unlabeled images last.
    Loss,
    /// Path ascending (the scan's order).
    Name,
}

/// Indices of the results passing `filter`, in `sort` order.
pub fn select(results: &[ImageResult], filter: &Filter, sort: SortKey) -> Vec<usize> {
    let mut order = indices(results, filter);
    order.sort_by(|&a, &b| compare(&results[a], &results[b], sort).then_with(|| results[a].path.cmp(&results[b].path)));
    order
}

fn indices(results: &[ImageResult], filter: &Filter) -> Vec<usize> {
    (0..results.len()).filter(|&i| filter.matches(&results[i])).collect()
}

fn compare(a: &ImageResult, b: &ImageResult, sort: SortKey) -> Ordering {
    match sort {
        SortKey::MistakeConfidence => {
            let key = |r: &ImageResult| (r.outcome() == Outcome::Wrong).then(|| r.confidence());
            match (key(a), key(b)) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (x, y) => y.is_some().cmp(&x.is_some()),
            }
        }
        SortKey::Margin => a.margin().total_cmp(&b.margin()),
        SortKey::Loss => match (a.loss(), b.loss()) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (x, y) => y.is_some().cmp(&x.is_some()),
        },
        SortKey::Name => Ordering::Equal,
    }
}

/// From position `at` in `order` (indices into `results`), the position of the next
/// (`forward`) or previous misclassified image, wrapping around; `None` if there is none.
/// This is the TUI's `n`/`N`.
pub fn step_misclassified(results: &[ImageResult], order: &[usize], at: usize, forward: bool) -> Option<usize> {
    let n = order.len();
    (1..=n)
        .map(|k| if forward { (at + k) % n } else { (at + n - k % n) % n })
        .find(|&pos| results[order[pos]].outcome() == Outcome::Wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result with `top` as (class, p) and the true class `truth` with probability `pt`.
    fn r(path: &str, truth: Option<(usize, f32)>, top: &[(usize, f32)]) -> ImageResult {
        ImageResult {
            path: PathBuf::from(path),
            truth: truth.map(|t| t.0),
            top: top.iter().map(|&(class, probability)| ClassProb { class, probability }).collect(),
            p_truth: truth.map(|t| t.1),
        }
    }

    /// Classes: 0 cat, 1 dog, 2 fox, 3..9 others.
    fn results() -> Vec<ImageResult> {
        vec![
            r("a.png", Some((0, 0.9)), &[(0, 0.9), (1, 0.05), (2, 0.01), (3, 0.01), (4, 0.01)]), // right, sure
            r("b.png", Some((0, 0.45)), &[(0, 0.45), (1, 0.40), (2, 0.1), (3, 0.01), (4, 0.01)]), // right, narrow
            r("c.png", Some((0, 0.3)), &[(1, 0.6), (0, 0.3), (2, 0.05), (3, 0.01), (4, 0.01)]),  // cat as dog
            r("d.png", Some((0, 0.001)), &[(1, 0.95), (2, 0.02), (3, 0.01), (4, 0.01), (5, 0.005)]), // cat as dog, top-5 miss
            r("e.png", Some((1, 0.1)), &[(2, 0.7), (3, 0.15), (1, 0.1), (4, 0.01), (5, 0.01)]),      // dog as fox
            r("f.png", None, &[(2, 0.5), (0, 0.3), (1, 0.1), (3, 0.05), (4, 0.01)]),                 // unlabeled
        ]
    }

    #[test]
    fn per_image_definitions() {
        let rs = results();
        assert_eq!(rs[0].outcome(), Outcome::Correct);
        assert_eq!(rs[2].outcome(), Outcome::Wrong);
        assert_eq!(rs[5].outcome(), Outcome::Unlabeled);
        assert!((rs[0].margin() - 0.85).abs() < 1e-6, "p(true) - p(second)");
        assert!((rs[2].margin() + 0.3).abs() < 1e-6, "-(p(pred) - p(true))");
        assert!((rs[5].margin() - 0.2).abs() < 1e-6, "unlabeled: p1 - p2");
        assert!((rs[0].loss().unwrap() - 0.10536).abs() < 1e-4);
        assert_eq!(rs[5].loss(), None);
        assert_eq!(rs[2].in_top(5), Some(true));
        assert_eq!(rs[3].in_top(5), Some(false));
        let zero = r("z.png", Some((7, 0.0)), &[(0, 1.0), (1, 0.0)]);
        assert!(zero.loss().unwrap().is_finite() && zero.loss().unwrap() > 80.0);
    }

    #[test]
    fn from_probabilities_keeps_top_k_and_p_true() {
        let probs = [0.1, 0.5, 0.05, 0.3, 0.05];
        let x = ImageResult::from_probabilities("x.png".into(), Some(4), &probs, 3);
        assert_eq!(x.top.iter().map(|c| c.class).collect::<Vec<_>>(), vec![1, 3, 0]);
        assert_eq!(x.p_truth, Some(0.05));
        assert_eq!(x.outcome(), Outcome::Wrong);
        assert!((x.margin() + 0.45).abs() < 1e-6);
        // Ties rank lower indices first; k beyond the class count keeps all.
        assert_eq!(top_k(&[0.2, 0.4, 0.4], 10).iter().map(|c| c.class).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(top_k(&[f32::NAN, 0.1], 2)[0].class, 1);
    }

    #[test]
    fn summary_counts_accuracy_classes_and_confusions() {
        let s = summarize(&results(), 2);
        assert_eq!((s.images, s.labeled, s.top1_correct, s.top5_correct), (6, 5, 2, 4));
        assert_eq!(s.top1_accuracy(), Some(0.4));
        assert_eq!(s.top5_accuracy(), Some(0.8));
        assert_eq!(
            s.per_class,
            vec![ClassAccuracy { class: 0, images: 4, correct: 2 }, ClassAccuracy { class: 1, images: 1, correct: 0 }]
        );
        assert_eq!(s.per_class[0].accuracy(), 0.5);
        assert_eq!(
            s.confusions,
            vec![Confusion { truth: 0, predicted: 1, count: 2 }, Confusion { truth: 1, predicted: 2, count: 1 }]
        );
        assert_eq!(s.confident_mistakes, vec![3, 4], "d (0.95) then e (0.7); c (0.6) cut at n = 2");
        assert_eq!(s.unsure_correct, vec![1, 0]);
        let none = summarize(&[], 5);
        assert_eq!((none.top1_accuracy(), none.confusions.len()), (None, 0));
    }

    #[test]
    fn filters_select_the_right_images() {
        let rs = results();
        let pick = |f: Filter| select(&rs, &f, SortKey::Name);
        assert_eq!(pick(Filter::All), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(pick(Filter::Misclassified), vec![2, 3, 4]);
        assert_eq!(pick(Filter::Correct), vec![0, 1]);
        assert_eq!(pick(Filter::TrueClass(0)), vec![0, 1, 2, 3]);
        assert_eq!(pick(Filter::Confusion { truth: 0, predicted: 1 }), vec![2, 3]);
        assert_eq!(pick(Filter::Confusion { truth: 1, predicted: 0 }), Vec::<usize>::new());
    }

    #[test]
    fn sorts_order_by_their_keys() {
        let rs = results();
        let all = |k| select(&rs, &Filter::All, k);
        assert_eq!(all(SortKey::MistakeConfidence), vec![3, 4, 2, 0, 1, 5]);
        // margins: a .85, b .05, c -.3, d -.949, e -.6, f .2
        assert_eq!(all(SortKey::Margin), vec![3, 4, 2, 1, 5, 0]);
        // losses: a .105, b .80, c 1.20, d 6.9, e 2.3, f none
        assert_eq!(all(SortKey::Loss), vec![3, 4, 2, 1, 0, 5]);
        let mut shuffled = rs.clone();
        shuffled.reverse();
        assert_eq!(select(&shuffled, &Filter::All, SortKey::Name), vec![5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn step_to_next_and_previous_mistake_wraps() {
        let rs = results();
        let order = select(&rs, &Filter::All, SortKey::Name);
        assert_eq!(step_misclassified(&rs, &order, 0, true), Some(2));
        assert_eq!(step_misclassified(&rs, &order, 2, true), Some(3));
        assert_eq!(step_misclassified(&rs, &order, 4, true), Some(2), "wraps past the end");
        assert_eq!(step_misclassified(&rs, &order, 2, false), Some(4), "wraps before the start");
        assert_eq!(step_misclassified(&rs, &order, 3, false), Some(2));
        let correct = select(&rs, &Filter::Correct, SortKey::Name);
        assert_eq!(step_misclassified(&rs, &correct, 0, true), None);
        assert_eq!(step_misclassified(&rs, &[], 0, true), None);
    }
}
