//! Shards: one slice of a dataset per job of a cluster array (Slurm array jobs, Kubernetes
//! Indexed Jobs), so `batch` and `triage` scale out on the scheduler users already have, and
//! `camscope merge` puts the slices back together.
//!
//! An image belongs to shard `K/N` when `fnv1a64(path relative to the dataset root) % N ==
//! K - 1`. The hash is fixed (FNV-1a, 64 bits, over the relative path's bytes; never Rust's
//! randomized hasher) so every job of an array computes the same assignment, and it depends
//! on nothing but the image's own name: adding or removing files never moves the others to
//! another shard, so a rerun of one shard after the dataset grew redoes only new images.
//!
//! Which shard a job is comes from `--shard K/N`, or else from the scheduler's environment
//! ([`Shard::from_env`], given a lookup function so it is testable without touching the
//! process environment).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a shard could not be determined, or shard outputs do not make a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {spec}: not a shard; write K/N with 1 <= K <= N, e.g. --shard 2/4")]
    Syntax { spec: String },
    #[error("--shard {spec}: shard {k} of {n} does not exist; K counts from 1 to N, e.g. --shard 1/{n}")]
    OutOfRange { spec: String, k: u64, n: u64 },
    #[error("{var}={value}: not a whole number; cannot tell which shard this job is (or pass --shard K/N)")]
    EnvNumber { var: &'static str, value: String },
    #[error(
        "SLURM_ARRAY_TASK_ID={id} is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is; pass --shard K/N"
    )]
    SlurmCount { id: u64 },
    #[error("SLURM_ARRAY_TASK_ID={id} is outside the array ({detail}); pass --shard K/N")]
    SlurmRange { id: u64, detail: String },
    #[error(
        "JOB_COMPLETION_INDEX={index} is set but Kubernetes does not export the number of shards; pass --shards N (the Job's completions)"
    )]
    K8sCount { index: u64 },
    #[error("JOB_COMPLETION_INDEX={index} is not below --shards {n}; pass the Job's completions as --shards")]
    K8sRange { index: u64, n: u64 },
    #[error(
        "--shards {n} is the array size seen by the scheduler, but {source_name} says {other}; remove --shards or fix it"
    )]
    CountMismatch { n: u64, source_name: &'static str, other: u64 },
    #[error(
        "--shards {n} needs a shard index: run it as a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or pass --shard K/N"
    )]
    CountWithoutIndex { n: u64 },
    #[error("--shards 0: a dataset is split into at least one shard")]
    ZeroCount,
}

/// Shard `index` of `count`, counting from 1 (as users and `--shard K/N` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A shard and where it came from, for the line a job prints about which shard it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub shard: Shard,
    /// `--shard`, or the environment variables that said so.
    pub source: String,
}

impl Shard {
    /// Parse `K/N` (1 <= K <= N).
    pub fn parse(spec: &str) -> Result<Self, ShardError> {
        let syntax = || ShardError::Syntax { spec: spec.to_owned() };
        let (k, n) = spec.trim().split_once('/').ok_or_else(syntax)?;
        let num = |s: &str| s.trim().parse::<u64>().map_err(|_| syntax());
        let (k, n) = (num(k)?, num(n)?);
        if n == 0 {
            return Err(syntax());
        }
        if k == 0 || k > n {
            return Err(ShardError::OutOfRange { spec: spec.to_owned(), k, n });
        }
        Ok(Shard { index: k, count: n })
    }

    /// The shard of this job: `--shard` when given, else the scheduler's environment read
    /// through `env` (Slurm array jobs first, then Kubernetes Indexed Jobs, whose number of
    /// shards comes from `shards` since Kubernetes does not export it). `None`: not sharded.
    pub fn detect(
        spec: Option<&str>,
        shards: Option<u64>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Detected>, ShardError> {
        if shards == Some(0) {
            return Err(ShardError::ZeroCount);
        }
        if let Some(spec) = spec {
            let shard = Shard::parse(spec)?;
            return Ok(Some(Detected { shard, source: "--shard".into() }));
        }
        let num = |var: &'static str| -> Result<Option<u64>, ShardError> {
            match env(var) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| ShardError::EnvNumber { var, value: v }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let max = num("SLURM_ARRAY_TASK_MAX")?;
            let count = num("SLURM_ARRAY_TASK_COUNT")?;
            // `--array=0-15:4` runs ids 0, 4, 8, 12: COUNT 4, MAX 12, so a step of 4.
            let (n, step) = match (count, max) {
                (Some(c), Some(m)) if c > 1 && m > min && (m - min) % (c - 1) == 0 => (c, (m - min) / (c - 1)),
                (Some(c), _) => (c, 1),
                (None, Some(m)) if m >= min => (m - min + 1, 1),
                _ => return Err(ShardError::SlurmCount { id }),
            };
            let range = || ShardError::SlurmRange {
                id,
                detail: format!("min {min}, max {}, count {n}", max.map_or("unset".into(), |m| m.to_string())),
            };
            if id < min || (id - min) % step != 0 || (id - min) / step >= n {
                return Err(range());
            }
            if let Some(s) = shards.filter(|&s| s != n) {
                return Err(ShardError::CountMismatch { n: s, source_name: "Slurm's array", other: n });
            }
            let shard = Shard { index: (id - min) / step + 1, count: n };
            let source = format!(
                "SLURM_ARRAY_TASK_ID={id}{}",
                match (count, max) {
                    (Some(c), _) => format!(", SLURM_ARRAY_TASK_COUNT={c}"),
                    (None, Some(m)) => format!(", SLURM_ARRAY_TASK_MAX={m}"),
                    _ => String::new(),
                }
            );
            return Ok(Some(Detected { shard, source }));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let n = shards.ok_or(ShardError::K8sCount { index })?;
            if index >= n {
                return Err(ShardError::K8sRange { index, n });
            }
            let shard = Shard { index: index + 1, count: n };
            return Ok(Some(Detected { shard, source: format!("JOB_COMPLETION_INDEX={index}, --shards {n}") }));
        }
        match shards {
            Some(n) => Err(ShardError::CountWithoutIndex { n }),
            None => Ok(None),
        }
    }

    /// Whether the image at `rel` (its path relative to the dataset root) is in this shard.
    pub fn contains(&self, rel: &Path) -> bool {
        of(rel, self.count) == self.index
    }
}

/// The shard (1..=count) of the image at `rel`, relative to the dataset root.
pub fn of(rel: &Path, count: u64) -> u64 {
    fnv1a64(rel.as_os_str().as_encoded_bytes()) % count.max(1) + 1
}

/// FNV-1a, 64 bits: fixed, fast, and good enough to spread file names evenly.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Check that the shards of a merge make a whole: all of one count, none twice, none
/// missing. `shards` pairs each input's name (for the messages) with its shard (`None`: an
/// output of an unsharded run).
pub fn check_complete(shards: &[(String, Option<Shard>)]) -> Result<u64, MergeShardError> {
    let mut count = None;
    let mut seen: std::collections::BTreeMap<u64, &str> = std::collections::BTreeMap::new();
    for (name, shard) in shards {
        let Some(shard) = shard else {
            return Err(MergeShardError::NotAShard { name: name.clone() });
        };
        match count {
            None => count = Some((shard.count, name.as_str())),
            Some((n, first)) if n != shard.count => {
                return Err(MergeShardError::Counts {
                    first: first.to_owned(),
                    n,
                    name: name.clone(),
                    other: shard.count,
                });
            }
            _ => {}
        }
        if let Some(prev) = seen.insert(shard.index, name) {
            return Err(MergeShardError::Duplicate { a: prev.to_owned(), b: name.clone(), shard: *shard });
        }
    }
    let n = count.map_or(0, |c| c.0);
    let missing: Vec<String> = (1..=n).filter(|k| !seen.contains_key(k)).map(|k| format!("{k}/{n}")).collect();
    if !missing.is_empty() {
        return Err(MergeShardError::Missing { missing: missing.join(", "), n, got: shards.len() });
    }
    Ok(n)
}

/// Why shard outputs do not make a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeShardError {
    #[error("{name}: is not a shard's output (written without --shard); merge takes the outputs of --shard K/N runs")]
    NotAShard { name: String },
    #[error("{first} is a shard of {n} but {name} is a shard of {other}; merge the outputs of one array")]
    Counts { first: String, n: u64, name: String, other: u64 },
    #[error("{a} and {b} are both shard {shard}; give each shard once")]
    Duplicate { a: String, b: String, shard: Shard },
    #[error("shard {missing} is missing ({got} of {n} given); wait for it to finish or rerun it, then merge again")]
    Missing { missing: String, n: u64, got: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::parse("1/1"), Ok(Shard { index: 1, count: 1 }));
        for bad in ["0/4", "5/4"] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(matches!(e, ShardError::OutOfRange { .. }), "{bad}");
            assert!(e.to_string().contains("K counts from 1 to N"), "{e}");
        }
        for bad in ["a/b", "3", "1/0", "", "1/2/3", "-1/4"] {
            assert!(matches!(Shard::parse(bad), Err(ShardError::Syntax { .. })), "{bad}");
        }
    }

    #[test]
    fn the_environment_gives_the_shard_and_the_flag_wins() {
        let none = env(&[]);
        assert_eq!(Shard::detect(None, None, &none), Ok(None));
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let d = Shard::detect(None, None, &slurm).unwrap().unwrap();
        assert_eq!(d.shard, Shard { index: 3, count: 4 });
        assert!(d.source.contains("SLURM_ARRAY_TASK_ID=2"), "{}", d.source);
        assert_eq!(Shard::detect(Some("1/2"), None, &slurm).unwrap().unwrap().shard, Shard { index: 1, count: 2 });
        // 1-based arrays, MAX without COUNT, stepped arrays.
        let one_based =
            env(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")]);
        assert_eq!(Shard::detect(None, None, &one_based).unwrap().unwrap().shard, Shard { index: 1, count: 4 });
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "12"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::detect(None, None, &stepped).unwrap().unwrap().shard, Shard { index: 3, count: 4 });
        let lone = env(&[("SLURM_ARRAY_TASK_ID", "1")]);
        assert!(matches!(Shard::detect(None, None, &lone), Err(ShardError::SlurmCount { id: 1 })));
        let bad = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(matches!(Shard::detect(None, None, &bad), Err(ShardError::EnvNumber { .. })));
        assert!(matches!(Shard::detect(None, Some(3), &slurm), Err(ShardError::CountMismatch { .. })));
        // Kubernetes: 0-based index, N from --shards.
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0")]);
        assert_eq!(Shard::detect(None, Some(4), &k8s).unwrap().unwrap().shard, Shard { index: 1, count: 4 });
        assert!(matches!(Shard::detect(None, None, &k8s), Err(ShardError::K8sCount { index: 0 })));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "4")]);
        assert!(matches!(Shard::detect(None, Some(4), &k8s), Err(ShardError::K8sRange { .. })));
        assert!(matches!(Shard::detect(None, Some(4), &none), Err(ShardError::CountWithoutIndex { n: 4 })));
        assert!(matches!(Shard::detect(None, Some(0), &none), Err(ShardError::ZeroCount)));
    }

    #[test]
    fn assignment_is_fixed_covers_everything_once_and_ignores_other_files() {
        // FNV-1a's published test vector: the hash is the same on every machine and release.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let names: Vec<String> = (0..1000).map(|i| format!("class{}/img{i}.jpg", i % 7)).collect();
        let mut counts = [0usize; 4];
        for n in &names {
            let hits: Vec<u64> = (1..=4).filter(|&k| Shard { index: k, count: 4 }.contains(Path::new(n))).collect();
            assert_eq!(hits.len(), 1, "{n} is in exactly one shard");
            counts[(hits[0] - 1) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 200), "evenly spread: {counts:?}");
        // A file's shard depends on its own name only.
        assert_eq!(of(Path::new("class1/img8.jpg"), 4), of(Path::new("class1/img8.jpg"), 4));
    }

    #[test]
    fn merging_needs_every_shard_once() {
        let s = |k, n| Some(Shard { index: k, count: n });
        let named = |v: Vec<Option<Shard>>| -> Vec<(String, Option<Shard>)> {
            v.into_iter().enumerate().map(|(i, s)| (format!("out{i}"), s)).collect()
        };
        assert_eq!(check_complete(&named(vec![s(2, 3), s(1, 3), s(3, 3)])), Ok(3));
        let e = check_complete(&named(vec![s(1, 3), s(3, 3)])).unwrap_err();
        assert!(e.to_string().starts_with("shard 2/3 is missing"), "{e}");
        let e = check_complete(&named(vec![s(1, 2), s(1, 2)])).unwrap_err();
        assert!(matches!(e, MergeShardError::Duplicate { .. }), "{e}");
        assert!(matches!(check_complete(&named(vec![s(1, 2), s(2, 3)])), Err(MergeShardError::Counts { .. })));
        assert!(matches!(check_complete(&named(vec![s(1, 2), None])), Err(MergeShardError::NotAShard { .. })));
    }
}
