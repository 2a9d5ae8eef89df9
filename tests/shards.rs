//! Issue 12, items 1-2: `batch` and `triage` over shards (`--shard K/N`, or a Slurm array's
//! environment) merged with `camscope merge` give exactly what one unsharded run writes; bad
//! shard specs and shard sets that do not make one whole run are refused in one line, with
//! nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// Variables a scheduler may have set around the test run: none may leak into a run that
/// the test means as unsharded.
const SCHEDULER_VARS: [&str; 5] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
];

fn run(args: &[&str], env: &[(&str, &str)], cache: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_camscope"));
    c.args(args).current_dir(root()).env("CAMSCOPE_CACHE_DIR", cache);
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// The 9 sample photos, three times each, in an ImageFolder tree (27 images).
fn dataset(dir: &Path) {
    for class in std::fs::read_dir(root().join("samples")).unwrap().flatten() {
        if !class.path().is_dir() {
            continue;
        }
        let to = dir.join(class.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for img in std::fs::read_dir(class.path()).unwrap().flatten() {
            for copy in 1..=3 {
                let name = format!("c{copy}-{}", img.file_name().to_string_lossy());
                std::fs::copy(img.path(), to.join(name)).unwrap();
            }
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` (relative), but the journal, lock and temporary folder.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(".camscope") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The text of a JSON report without the lines of timing fields (each is one line in
/// serde_json's pretty output).
fn without_timings(text: &str, keys: &[&str]) -> String {
    text.lines()
        .filter(|l| !keys.iter().any(|k| l.trim_start().starts_with(&format!("\"{k}\":"))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A CSV without the columns named in `drop`.
fn csv_without(text: &str, drop: &[&str]) -> String {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let keep: Vec<usize> = (0..rows[0].len()).filter(|&i| !drop.contains(&&rows[0][i])).collect();
    rows.iter()
        .map(|r| keep.iter().map(|&i| r[i].to_owned()).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Parquet table camscope wrote, decoded, without the columns named in `drop`.
fn parquet_without(file: &Path, drop: &[&str]) -> arrow_array::RecordBatch {
    let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let batches: Vec<arrow_array::RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1, "{}: one batch for a small table", file.display());
    let b = &batches[0];
    let schema = b.schema();
    let keep: Vec<usize> = (0..b.num_columns()).filter(|&i| !drop.contains(&schema.field(i).name().as_str())).collect();
    b.project(&keep).unwrap()
}

const TRIAGE_TIMINGS: [&str; 2] = ["seconds", "images_per_second"];
const BATCH_TIMINGS: [&str; 6] = ["decode_ms", "body_ms", "head_ms", "map_ms", "render_ms", "total_seconds"];

#[test]
fn triage_and_batch_shards_merge_into_exactly_the_unsharded_outputs() {
    let t = tempfile::tempdir().unwrap();
    let ds = t.path().join("ds");
    dataset(&ds);
    let cache = t.path().join("cache");
    for cmd in ["triage", "batch"] {
        let out = |n: &str| t.path().join(format!("{cmd}-{n}"));
        let extra: &[&str] = if cmd == "triage" { &["--no-cache"] } else { &[] };
        let args = |o: &Path, more: &[&'static str]| -> Vec<String> {
            [cmd, s(&ds), "-o", s(o)].iter().chain(extra).chain(more).map(|a| a.to_string()).collect()
        };
        let full = out("full");
        ok(&run(&args(&full, &[]).iter().map(String::as_str).collect::<Vec<_>>(), &[], &cache));
        // Shards 1 and 2 by flag, 3 from a Slurm array's environment (ids 0..2).
        let mut counts = 0;
        for (k, spec) in [(1, "1/3"), (2, "2/3")] {
            let o = out(&format!("s{k}"));
            let a = args(&o, &[]);
            let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
            a.extend(["--shard", spec]);
            let err = ok(&run(&a, &[], &cache));
            assert!(err.contains(&format!("taking shard {spec} (from --shard)")), "{err}");
            counts += images_of(cmd, &o);
        }
        let o3 = out("s3");
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let err = ok(&run(&args(&o3, &[]).iter().map(String::as_str).collect::<Vec<_>>(), &slurm, &cache));
        assert!(err.contains("taking shard 3/3 (from SLURM_ARRAY_TASK_ID=2"), "{err}");
        counts += images_of(cmd, &o3);
        assert_eq!(counts, 27, "every image in exactly one shard");
        let merged = out("merged");
        let t0 = std::time::Instant::now();
        // In any order.
        ok(&run(&["merge", s(&o3), s(&out("s1")), s(&out("s2")), "-o", s(&merged)], &[], &cache));
        eprintln!("{cmd}: merge of 3 shards took {:.3} s", t0.elapsed().as_secs_f64());
        let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        match cmd {
            "triage" => {
                assert_eq!(
                    without_timings(&read(&merged, "triage.json"), &TRIAGE_TIMINGS),
                    without_timings(&read(&full, "triage.json"), &TRIAGE_TIMINGS)
                );
                let j: Value = serde_json::from_str(&read(&merged, "triage.json")).unwrap();
                assert!(j.get("shard").is_none(), "a merged output is not a shard");
                assert_eq!(j["scan"]["computed"], 27);
                assert_eq!(read(&merged, "triage.csv"), read(&full, "triage.csv"));
                assert_eq!(read(&merged, "summary.txt"), read(&full, "summary.txt"));
                // No timings in its rows: the merged Parquet table is the unsharded one, byte for byte.
                let bytes = |d: &Path| std::fs::read(d.join("triage.parquet")).unwrap();
                assert!(bytes(&merged) == bytes(&full), "triage.parquet differs");
            }
            _ => {
                assert_eq!(
                    without_timings(&read(&merged, "report.json"), &BATCH_TIMINGS),
                    without_timings(&read(&full, "report.json"), &BATCH_TIMINGS)
                );
                assert_eq!(
                    csv_without(&read(&merged, "report.csv"), &BATCH_TIMINGS),
                    csv_without(&read(&full, "report.csv"), &BATCH_TIMINGS)
                );
                let table = parquet_without(&merged.join("report.parquet"), &BATCH_TIMINGS);
                assert_eq!(table.num_rows(), 27);
                assert_eq!(table, parquet_without(&full.join("report.parquet"), &BATCH_TIMINGS));
            }
        }
        // The same files; the overlays and the mistakes' maps byte for byte.
        assert_eq!(files(&merged), files(&full));
        for f in files(&full).into_iter().filter(|f| f.extension().is_some_and(|e| e == "png")) {
            assert!(
                std::fs::read(merged.join(&f)).unwrap() == std::fs::read(full.join(&f)).unwrap(),
                "{}",
                f.display()
            );
        }
        // A shard run's output says which shard it is and what run it belongs to.
        let shard_json: Value =
            serde_json::from_str(&read(&o3, if cmd == "triage" { "triage.json" } else { "report.json" })).unwrap();
        assert_eq!(shard_json["shard"], serde_json::json!({"index": 3, "count": 3}));
        assert!(shard_json["config"]["model_size"].as_u64().unwrap() > 0 && shard_json["config"]["layer"].is_string());
        assert!(shard_json["dataset"].as_str().unwrap().ends_with("/ds"));
    }
    refusals(t.path(), &cache);
}

fn images_of(cmd: &str, out: &Path) -> usize {
    let f = if cmd == "triage" { "triage.json" } else { "report.json" };
    let j: Value = serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap();
    j["images"].as_array().unwrap().len()
}

/// Bad input, each in one line with nothing written (runs on the shards of the test above).
fn refusals(t: &Path, cache: &Path) {
    let ds = t.join("ds");
    let out = t.join("refused");
    for (spec, says) in [("0/4", "K counts from 1 to N"), ("5/4", "K counts from 1 to N"), ("a/b", "not a shard")] {
        for cmd in ["triage", "batch"] {
            let e = one_line_error(&run(&[cmd, s(&ds), "-o", s(&out), "--shard", spec], &[], cache));
            assert!(e.contains(&format!("--shard {spec}")) && e.contains(says), "{e}");
            assert!(!out.exists(), "{cmd} --shard {spec} wrote {}", out.display());
        }
    }
    let e = one_line_error(&run(&["triage", s(&ds), "-o", s(&out)], &[("JOB_COMPLETION_INDEX", "1")], cache));
    assert!(e.contains("JOB_COMPLETION_INDEX=1") && e.contains("--shards N"), "{e}");
    let e = one_line_error(&run(&["batch", s(&ds), "-o", s(&out)], &[("SLURM_ARRAY_TASK_ID", "1")], cache));
    assert!(e.contains("SLURM_ARRAY_TASK_ID=1"), "{e}");
    assert!(!out.exists());

    let sh = |cmd: &str, k: u32| t.join(format!("{cmd}-s{k}"));
    let merge = |inputs: &[&Path]| {
        let mut a = vec!["merge"];
        a.extend(inputs.iter().map(|p| s(p)));
        a.extend(["-o", s(&out)]);
        run(&a, &[], cache)
    };
    let (s1, s2, s3) = (sh("triage", 1), sh("triage", 2), sh("triage", 3));
    let e = one_line_error(&merge(&[&s1, &s3]));
    assert!(e.contains("shard 2/3 is missing"), "{e}");
    let e = one_line_error(&merge(&[&s1, &s2, &s2, &s3]));
    assert!(e.contains("both shard 2/3"), "{e}");
    let e = one_line_error(&merge(&[&s1, &s2, &t.join("triage-full")]));
    assert!(e.contains("triage-full") && e.contains("not a shard's output"), "{e}");
    let e = one_line_error(&merge(&[&s1, &s2, &sh("batch", 3)]));
    assert!(e.contains("batch output"), "{e}");
    // Shards of another model, layer, method or dataset: a doctored copy of shard 3.
    for (field, value, says) in [
        ("config.model_size", serde_json::json!(1), "different model_size"),
        ("config.layer", serde_json::json!("/other/Conv"), "different layer"),
        ("config.method", serde_json::json!("layercam"), "different method"),
        ("config.input", serde_json::json!({"size": [1, 1]}), "different input"),
        ("dataset", serde_json::json!("/elsewhere"), "dataset"),
    ] {
        let other = t.join("other");
        let _ = std::fs::remove_dir_all(&other);
        std::fs::create_dir_all(&other).unwrap();
        let mut j: Value = serde_json::from_slice(&std::fs::read(s3.join("triage.json")).unwrap()).unwrap();
        let mut at = &mut j;
        let parts: Vec<&str> = field.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            at = &mut at[*p];
        }
        at[parts[parts.len() - 1]] = value;
        std::fs::write(other.join("triage.json"), serde_json::to_vec(&j).unwrap()).unwrap();
        let e = one_line_error(&merge(&[&s1, &s2, &other]));
        assert!(e.contains(says), "{field}: {e}");
    }
    // Merge streams the shards' rows in path order: a shard whose rows are not in that order,
    // or whose triage.json is cut off among its rows, is refused before anything is written.
    let other = t.join("other");
    let mut j: Value = serde_json::from_slice(&std::fs::read(s3.join("triage.json")).unwrap()).unwrap();
    j["images"].as_array_mut().unwrap().reverse();
    std::fs::write(other.join("triage.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    let e = one_line_error(&merge(&[&s1, &s2, &other]));
    assert!(e.contains("out of the order"), "{e}");
    let whole = std::fs::read(s3.join("triage.json")).unwrap();
    std::fs::write(other.join("triage.json"), &whole[..whole.len() * 2 / 3]).unwrap();
    let e = one_line_error(&merge(&[&s1, &s2, &other]));
    assert!(e.contains("not a triage.json this camscope can merge"), "{e}");
    assert!(!out.exists(), "a refused merge writes nothing");
    // Merging into one of the shards is refused too.
    let e = one_line_error(&run(&["merge", s(&s1), s(&s2), s(&s3), "-o", s(&s1)], &[], cache));
    assert!(e.contains("is one of the shards"), "{e}");
}
