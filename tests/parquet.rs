//! Issue 12, item 3: `triage` and `batch` write their per-image tables as Parquet
//! (triage.parquet, report.parquet; schema in the README), read back here from outside
//! camscope by pyarrow (`scripts/check_parquet.py`, what pandas, Polars and DuckDB read through)
//! and compared value for value with triage.json / report.json; a Parquet file that cannot be
//! written is one line naming it and the fix.
//!
//! pyarrow comes from `scripts/setup-pycheck` (run by `scripts/test`) in `.deps/pycheck`;
//! without it these tests fail and say so, they never pass silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::root;
use serde_json::Value;

fn run(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camscope"))
        .args(args)
        .current_dir(root())
        .env("CAMSCOPE_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `scripts/check_parquet.py FILE`: the table as pyarrow reads it (rows, schema, columns).
fn pyarrow_read(file: &Path) -> Value {
    let dir: PathBuf = root().join(".deps/pycheck");
    assert!(
        dir.join(".installed").is_file(),
        "{}: missing; run scripts/setup-pycheck (scripts/test runs it) to install pyarrow for scripts/check_parquet.py",
        dir.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root().join("scripts/check_parquet.py"))
        .arg(file)
        .env("PYTHONPATH", &dir)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}; install Python 3 or set PYTHON"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check_parquet.py {}: {stderr}", file.display());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("check_parquet.py: {e}: {stderr}"))
}

/// A JSON number as the float32 it was written from (exact: both sides print shortest
/// round-trip decimals of the same value).
fn f32_of(v: &Value) -> Option<f32> {
    v.as_f64().map(|x| x as f32)
}

fn col<'a>(t: &'a Value, name: &str) -> &'a Vec<Value> {
    t["columns"][name].as_array().unwrap_or_else(|| panic!("no column {name}: {}", t["schema"]))
}

#[test]
fn triage_parquet_reads_back_in_pyarrow_as_triage_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("out"), tmp.path().join("cache"));
    let r = run(&["triage", "samples", "-o", s(&out), "--no-cache"], &cache);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("triage.json")).unwrap()).unwrap();
    let images = json["images"].as_array().unwrap();
    let file = out.join("triage.parquet");
    eprintln!("triage.parquet: {} bytes for {} images", std::fs::metadata(&file).unwrap().len(), images.len());
    let t = pyarrow_read(&file);
    assert_eq!(t["rows"], images.len());
    let schema = &t["schema"];
    for (name, ty) in [
        ("path", "string"),
        ("true_index", "int32"),
        ("true_label", "string"),
        ("predicted_index", "int32"),
        ("predicted_label", "string"),
        ("predicted_probability", "float"),
        ("true_probability", "float"),
        ("correct", "bool"),
        ("in_top5", "bool"),
        ("margin", "float"),
        ("loss", "double"),
        ("top5_indices", "list<item: int32 not null>"),
        ("top5_labels", "list<item: string not null>"),
        ("top5_probabilities", "list<item: float not null>"),
        ("overlays", "list<item: string not null>"),
    ] {
        assert_eq!(schema[name], ty, "{name} in {schema}");
    }
    assert_eq!(t["names"].as_array().unwrap().len(), 15, "{schema}");
    assert_eq!(t["names"][0], "path", "the CSV's first column first");
    assert_eq!((t["nullable"]["path"].as_bool(), t["nullable"]["true_index"].as_bool()), (Some(false), Some(true)));
    for (i, img) in images.iter().enumerate() {
        let at = |name: &str| &col(&t, name)[i];
        assert_eq!(at("path"), &img["path"]);
        assert_eq!(
            at("true_index"),
            &img["true"]["index"].as_u64().map_or(Value::Null, Value::from),
            "{}",
            img["path"]
        );
        assert_eq!(at("true_label"), &img["true"]["label"].as_str().map_or(Value::Null, Value::from));
        assert_eq!(at("predicted_index"), &img["predicted"]["index"]);
        assert_eq!(at("predicted_label"), &img["predicted"]["label"]);
        for name in ["predicted_probability", "true_probability", "margin"] {
            assert_eq!(f32_of(at(name)), f32_of(&img[name]), "{name} of {}", img["path"]);
        }
        assert_eq!(at("loss").as_f64(), img["loss"].as_f64(), "loss of {}", img["path"]);
        assert_eq!(at("correct"), &img["correct"]);
        assert_eq!(at("in_top5"), &img["in_top5"]);
        let top5 = img["top5"].as_array().unwrap();
        assert_eq!(at("top5_indices").as_array().unwrap(), &top5.iter().map(|c| c[0].clone()).collect::<Vec<_>>());
        assert_eq!(at("top5_labels").as_array().unwrap(), &top5.iter().map(|c| c[1].clone()).collect::<Vec<_>>());
        let probs: Vec<Option<f32>> = at("top5_probabilities").as_array().unwrap().iter().map(f32_of).collect();
        assert_eq!(probs, top5.iter().map(|c| f32_of(&c[2])).collect::<Vec<_>>());
        assert_eq!(at("overlays"), &img["overlays"]);
    }
    // The samples hold unlabeled images (nulls) and mistakes (maps listed).
    assert!(col(&t, "true_index").iter().any(Value::is_null));
    assert!(col(&t, "overlays").iter().any(|o| o.as_array().unwrap().len() == 3));
}

#[test]
fn batch_parquet_reads_back_in_pyarrow_as_report_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("out"), tmp.path().join("cache"));
    let r = run(&["batch", "samples", "-o", s(&out), "--top", "3"], &cache);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let images = json["images"].as_array().unwrap();
    let file = out.join("report.parquet");
    eprintln!("report.parquet: {} bytes for {} images", std::fs::metadata(&file).unwrap().len(), images.len());
    let t = pyarrow_read(&file);
    assert_eq!(t["rows"], images.len());
    let names: Vec<&str> = t["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "file",
            "top_indices",
            "top_labels",
            "top_probabilities",
            "class_index",
            "class_label",
            "class_probability",
            "method",
            "map_status",
            "output",
            "decode_ms",
            "body_ms",
            "head_ms",
            "map_ms",
            "render_ms",
            "warnings"
        ],
        "columns in order"
    );
    assert_eq!(t["schema"]["decode_ms"], "double");
    for (i, img) in images.iter().enumerate() {
        let at = |name: &str| &col(&t, name)[i];
        assert_eq!(at("file"), &img["file"]);
        let top = img["top"].as_array().unwrap();
        assert_eq!(top.len(), 3, "--top 3");
        assert_eq!(at("top_indices").as_array().unwrap(), &top.iter().map(|p| p["index"].clone()).collect::<Vec<_>>());
        assert_eq!(at("top_labels").as_array().unwrap(), &top.iter().map(|p| p["label"].clone()).collect::<Vec<_>>());
        let probs: Vec<Option<f32>> = at("top_probabilities").as_array().unwrap().iter().map(f32_of).collect();
        assert_eq!(probs, top.iter().map(|p| f32_of(&p["probability"])).collect::<Vec<_>>());
        assert_eq!(at("class_index"), &img["class"]["index"]);
        assert_eq!(at("class_label"), &img["class"]["label"]);
        assert_eq!(f32_of(at("class_probability")), f32_of(&img["class"]["probability"]));
        for name in ["method", "map_status", "output"] {
            assert_eq!(at(name), &img[name], "{name}");
        }
        for name in ["decode_ms", "body_ms", "head_ms", "map_ms", "render_ms"] {
            assert_eq!(at(name).as_f64(), img["timings"][name].as_f64(), "{name}");
        }
        assert_eq!(at("warnings"), &img.get("warnings").cloned().unwrap_or_else(|| serde_json::json!([])));
    }
}

/// A Parquet file that cannot be written (a folder in its place): the run fails with one
/// error line naming the file and what to do.
#[test]
fn an_unwritable_parquet_file_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for (cmd, name) in [("triage", "triage.parquet"), ("batch", "report.parquet")] {
        let out = tmp.path().join(cmd);
        std::fs::create_dir_all(out.join(name).join("taken")).unwrap();
        let r = run(&[cmd, "samples", "-o", s(&out)], &cache);
        assert_eq!(r.status.code(), Some(1), "{cmd}");
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        let e = errors[0];
        assert!(e.starts_with("camscope: error: ") && e.contains(name) && e.contains("is a folder"), "{e}");
        assert!(e.contains("move it away or choose another --out"), "{e}");
    }
}
