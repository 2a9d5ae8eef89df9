//! The on-disk shape cache (engine::probe_cache) through `LoadedModel::open`: a second open of
//! the same model reads the measured shapes back and analyses the model exactly as the first;
//! a corrupt record, an edited model, a folder that cannot be written or a disabled cache
//! never stop a model from loading.
//!
//! One test function on purpose: the cache folder comes from the environment, which is
//! process-wide, and this file is its own test binary.

mod common;

use camscope::engine::LoadedModel;
use camscope::engine::probe_cache::{CACHE_ENV, CacheUse};
use common::bundled_model;
use common::onnx_build::cpu;

fn same_analysis(a: &LoadedModel, b: &LoadedModel) {
    assert_eq!(a.analysis.candidates(), b.analysis.candidates());
    assert_eq!(a.fixed_batch, b.fixed_batch);
    assert_eq!(a.classes, b.classes);
    let facts = |m: &LoadedModel| {
        let mut v: Vec<String> =
            m.analysis.probe_targets().iter().map(|t| format!("{t}: {:?}", m.analysis.facts().get(t))).collect();
        v.sort();
        v
    };
    assert_eq!(facts(a), facts(b));
}

#[test]
fn the_second_open_reads_the_shapes_back_and_nothing_in_the_cache_can_stop_a_load() {
    let dir = std::env::temp_dir().join(format!("camscope-shape-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // SAFETY: the only test of this binary; nothing else reads the environment concurrently.
    unsafe { std::env::set_var(CACHE_ENV, &dir) };
    let model = bundled_model();
    let first = LoadedModel::open(&model, None, &cpu()).unwrap();
    assert_eq!(first.shape_cache, CacheUse::Stored);
    let second = LoadedModel::open(&model, None, &cpu()).unwrap();
    assert_eq!(second.shape_cache, CacheUse::Hit);
    same_analysis(&first, &second);

    // A corrupt record: measured again, and repaired.
    let records: Vec<_> = std::fs::read_dir(dir.join("shapes")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(records.len(), 1, "{records:?}");
    std::fs::write(&records[0], b"{\"key\": \"garbage").unwrap();
    let repaired = LoadedModel::open(&model, None, &cpu()).unwrap();
    assert_eq!(repaired.shape_cache, CacheUse::Stored);
    same_analysis(&first, &repaired);
    assert_eq!(LoadedModel::open(&model, None, &cpu()).unwrap().shape_cache, CacheUse::Hit);

    // Another model file (one byte of its producer name changed): its own record.
    let other = dir.with_extension("model");
    std::fs::create_dir_all(&other).unwrap();
    let copy = other.join("edited.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let at = bytes.windows(7).position(|w| w == b"pytorch").expect("producer name in the file");
    bytes[at] = b'P';
    std::fs::write(&copy, &bytes).unwrap();
    std::fs::copy(model.with_extension("toml"), copy.with_extension("toml")).unwrap();
    let labels = model.with_file_name("imagenet_labels.txt");
    std::fs::copy(&labels, other.join("imagenet_labels.txt")).unwrap();
    assert_eq!(LoadedModel::open(&copy, None, &cpu()).unwrap().shape_cache, CacheUse::Stored);
    assert_eq!(std::fs::read_dir(dir.join("shapes")).unwrap().count(), 2);

    // A file where the folder should be: the model loads, and says why the cache is unused.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    unsafe { std::env::set_var(CACHE_ENV, &blocked) };
    let m = LoadedModel::open(&model, None, &cpu()).unwrap();
    assert!(matches!(&m.shape_cache, CacheUse::Unavailable(why) if why.contains("blocked")), "{:?}", m.shape_cache);
    same_analysis(&first, &m);

    // Disabled.
    unsafe { std::env::set_var(CACHE_ENV, "off") };
    assert_eq!(LoadedModel::open(&model, None, &cpu()).unwrap().shape_cache, CacheUse::Off);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}
