//! Datasets for triage: which images a folder holds, what each one truly is, what the model
//! said about them, and a cache of that so reopening a large folder is instant.
//!
//! | module | one job |
//! | --- | --- |
//! | [`scan`] | list the images under a path, lazily, in a stable order |
//! | [`paths`] | a listing's paths packed in one buffer (a million-image triage holds them all) |
//! | [`truth`] | ground truth from folder names (ImageFolder) or a `path,label` CSV |
//! | [`stats`] | per-image results, accuracy, confusions, filters and sorts (pure) |
//! | [`cache`] | model scores per image on disk, keyed by model hash + path + size + mtime |
//! | [`json_stream`] | a large JSON report read field by field and row by row (merge's shards) |
//! | [`journal`] | crash-safe output folders: atomic outputs and an append-only record of what is done |
//! | [`table`] | the per-image tables of triage and batch as Parquet (one schema for a run and `merge`) |
//! | [`shard`] | which slice of a dataset a cluster job takes (`--shard K/N`, Slurm, Kubernetes), and whether slices make a whole |
//!
//! Nothing here runs a model: the engine's worker feeds scores in, the TUI and the batch
//! report read results out.

pub mod cache;
pub mod journal;
pub mod json_stream;
pub mod paths;
pub mod scan;
pub mod shard;
pub mod stats;
pub mod table;
pub mod truth;

pub use self::cache::{CacheError, CachedScores, FileStamp, LoadOutcome, ModelHash, ScanCache};
pub use self::scan::{Listing, Scan, ScanError, ScanStats};
pub use self::stats::{ClassProb, Filter, ImageResult, Outcome, SortKey, Summary};
pub use self::truth::{CsvError, CsvTruth, FolderProblem, FolderTruth, GroundTruth};
