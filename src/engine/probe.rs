//! Measuring every tensor's shape by running the model once at batch 1 and once at batch 2.
//!
//! ONNX Runtime's profiler records each executed node's output shapes and types, so the
//! probe runs the model as it is (nodes renamed `camscope_probe_<index>` to find them in the
//! profile) at the memory cost of a plain inference. Exposing the intermediate tensors as
//! graph outputs instead would hold them all at once (ORT's default execution order computes
//! the outputs' consumers last): that is kept only as a fallback, for ONNX Runtime builds
//! whose profile lacks shapes.

use std::collections::HashMap;
use std::path::Path;

use super::probe_cache::{self, CacheUse, ProbeKey, ProbeRecord};
use super::{Device, EngineError, GraphSession, SessionOptions, session};
use crate::grad::Analysis;
use crate::onnx::{self, ValueInfoProto, dtype};

/// Integer constants up to this many values are recorded (shapes, pads, axes).
const SMALL_INTS: usize = 64;

/// Measure shapes (and graph-computed integer constants) and merge them into `analysis`.
/// `dims(n)` gives the input's dims at batch `n`. Returns whether the model runs at batch 2
/// (a model that only runs at batch 1 is measured at batch 1 and then fed one image at a time).
pub fn probe_shapes(
    analysis: &mut Analysis,
    input: &str,
    dims: &dyn Fn(usize) -> Vec<usize>,
    label: &Path,
    fixed_batch: bool,
    ort_lib: Option<&Path>,
    cache: Option<(&Path, &ProbeKey)>,
) -> Result<(bool, CacheUse), EngineError> {
    if let Some(record) = cache.and_then(|(dir, key)| probe_cache::load(dir, key)) {
        let batches = record.at2.is_some();
        analysis.add_measured(&record.at1, record.at2.as_ref().unwrap_or(&record.at1), &record.types);
        analysis.add_constant_values(&record.ints);
        return Ok((batches, CacheUse::Hit));
    }
    // The probe renames nodes `camscope_probe_<i>`; messages must name the user's nodes.
    let names: Vec<String> =
        analysis.model().graph.as_ref().map_or_else(Vec::new, |g| g.node.iter().map(crate::onnx::node_label).collect());
    let fail = |e: EngineError| match e {
        EngineError::Run { detail, .. } => {
            EngineError::Probe { path: label.to_owned(), detail: real_names(&detail, &names) }
        }
        // The session could not even be created: ONNX Runtime cannot load the model at all,
        // whatever the card says about the input.
        EngineError::BadModel { detail, .. } => {
            EngineError::Unloadable { path: label.to_owned(), detail: real_names(&detail, &names) }
        }
        other => other,
    };
    let result = match by_profile(analysis, input, dims, label, fixed_batch, ort_lib) {
        Ok(Some(found)) => Ok(found),
        Ok(None) => by_outputs(analysis, input, dims, label, fixed_batch, ort_lib),
        Err(e) => Err(e),
    };
    super::release_free_memory();
    let (at1, at2, ints, types) = result.map_err(fail)?;
    let record = ProbeRecord { at1, at2, ints, types };
    let batches = record.at2.is_some();
    analysis.add_measured(&record.at1, record.at2.as_ref().unwrap_or(&record.at1), &record.types);
    analysis.add_constant_values(&record.ints);
    let used = match cache {
        None => CacheUse::Off,
        Some((dir, key)) => match probe_cache::store(dir, key, &record) {
            Ok(()) => CacheUse::Stored,
            Err(e) => CacheUse::Unavailable(format!("{}: {e}", dir.display())),
        },
    };
    Ok((batches, used))
}

/// `camscope_probe_<i>` in an ONNX Runtime message back to node `i`'s own name.
fn real_names(detail: &str, names: &[String]) -> String {
    const PREFIX: &str = "camscope_probe_";
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PREFIX.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        match after[..digits].parse::<usize>().ok().and_then(|i| names.get(i)) {
            Some(name) => out.push_str(name),
            None => out.push_str(&rest[at..at + PREFIX.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

type Dims = Vec<(String, Vec<i64>)>;
type Measured = (Dims, Option<Dims>, HashMap<String, Vec<i64>>, HashMap<String, i32>);

fn by_profile(
    analysis: &Analysis,
    input: &str,
    dims: &dyn Fn(usize) -> Vec<usize>,
    label: &Path,
    fixed_batch: bool,
    ort_lib: Option<&Path>,
) -> Result<Option<Measured>, EngineError> {
    let mut model = analysis.model().clone();
    let constants = analysis.computed_constants();
    let g = model.graph.as_mut().expect("analysed models have a graph");
    let outputs: Vec<Vec<String>> = g.node.iter().map(|n| n.output.clone()).collect();
    for (i, n) in g.node.iter_mut().enumerate() {
        n.name = Some(format!("camscope_probe_{i}"));
    }
    let existing: std::collections::HashSet<String> = g.output.iter().filter_map(|o| o.name.clone()).collect();
    for c in constants.iter().filter(|c| !existing.contains(*c)) {
        g.output.push(ValueInfoProto { name: Some(c.clone()), ..Default::default() });
    }
    // One profile per probe: ONNX Runtime names the file after the prefix and the time, and
    // probes may run concurrently in one process.
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = std::env::temp_dir().join(format!("camscope-probe-{}-{n}", std::process::id()));
    // The weights are read in place from the model file's buffer where there is one.
    let encoded = onnx::Encoded::sharing(model, analysis.shared_file());
    let mut s = GraphSession::profiling(&encoded, label, ort_lib, &prefix)?;
    drop(encoded);
    let runs = (|| {
        let x1 = session::zeros(&dims(1));
        let ints = s.run_small_ints(&[(input, x1.view())], &constants, SMALL_INTS)?;
        drop(x1);
        let ran2 = !fixed_batch && {
            let x2 = session::zeros(&dims(2));
            s.run_small_ints(&[(input, x2.view())], &[], 0).is_ok()
        };
        Ok::<_, EngineError>((ints, ran2))
    })();
    // End profiling and delete the profile whether the runs worked or not.
    let text = match s.end_profiling() {
        Ok(profile) => {
            let text = std::fs::read_to_string(&profile).unwrap_or_default();
            let _ = std::fs::remove_file(&profile);
            text
        }
        Err(_) => String::new(),
    };
    drop(s);
    let (ints, ran2) = runs?;
    let Some((mut at1, mut at2, mut types)) = parse_profile(&text, &outputs, ran2) else { return Ok(None) };
    let graph = analysis.model().graph.as_ref().expect("graph");
    // ONNX Runtime records no kernel for a Cast to the type its input already has (torch
    // writes many in shape arithmetic): it has its input's shape.
    let mut have: HashMap<String, (Vec<i64>, Vec<i64>)> = at1
        .iter()
        .zip(at2.iter().chain(std::iter::repeat(&(String::new(), Vec::new()))))
        .map(|((n, d1), (_, d2))| (n.clone(), (d1.clone(), d2.clone())))
        .collect();
    for n in graph.node.iter().filter(|n| matches!(onnx::op(n), "Cast" | "Identity")) {
        let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else { continue };
        if have.contains_key(y) {
            continue;
        }
        if let Some((d1, d2)) = have.get(x).cloned() {
            at1.push((y.clone(), d1.clone()));
            if ran2 {
                at2.push((y.clone(), d2.clone()));
            }
            let ty = match onnx::op(n) {
                "Cast" => onnx::attr_int(n, "to").map(|t| t as i32),
                _ => types.get(x).copied(),
            };
            if let Some(ty) = ty {
                types.insert(y.clone(), ty);
            }
            have.insert(y.clone(), (d1, d2));
        }
    }
    // ONNX Runtime may run a node as several kernels (function ops such as HardSwish are
    // expanded): their outputs are then missing from the profile, so measure another way.
    let measured: std::collections::HashSet<&String> = at1.iter().map(|(n, _)| n).collect();
    let complete = graph
        .node
        .iter()
        .filter(|n| onnx::op(n) != "Constant")
        .flat_map(|n| n.output.iter())
        .all(|o| o.is_empty() || measured.contains(o));
    if !complete {
        return Ok(None);
    }
    Ok(Some((at1, ran2.then_some(at2), ints, types)))
}

/// Read `(dims at batch 1, dims at batch 2, element types)` of every node output from an
/// ONNX Runtime profile (Chrome trace JSON). Each node's first event is the batch-1 run and
/// its second the batch-2 run. `None` if the profile holds no shapes.
pub fn parse_profile(
    text: &str,
    outputs: &[Vec<String>],
    two_runs: bool,
) -> Option<(Dims, Dims, HashMap<String, i32>)> {
    let events: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let (mut at1, mut at2, mut types) = (Vec::new(), Vec::new(), HashMap::new());
    for e in events.as_array()? {
        if e.get("cat").and_then(|c| c.as_str()) != Some("Node") {
            continue;
        }
        let Some(index) = e
            .get("name")
            .and_then(|n| n.as_str())
            .and_then(|n| n.strip_prefix("camscope_probe_"))
            .and_then(|n| n.strip_suffix("_kernel_time"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(shapes) = e.pointer("/args/output_type_shape").and_then(|s| s.as_array()) else { continue };
        let run = seen.entry(index).or_insert(0);
        let target = match *run {
            0 => &mut at1,
            1 if two_runs => &mut at2,
            _ => continue,
        };
        *run += 1;
        for (name, shape) in outputs.get(index)?.iter().zip(shapes) {
            let Some((ty, dims)) = shape.as_object().and_then(|o| o.iter().next()) else { continue };
            let dims: Option<Vec<i64>> = dims.as_array()?.iter().map(|d| d.as_i64()).collect();
            if let (false, Some(dims)) = (name.is_empty(), dims) {
                types.insert(name.clone(), type_code(ty));
                target.push((name.clone(), dims));
            }
        }
    }
    (!at1.is_empty()).then_some((at1, at2, types))
}

/// ONNX element type code from the profile's type name.
fn type_code(name: &str) -> i32 {
    match name {
        "float" => dtype::FLOAT,
        "uint8" => 2,
        "int8" => 3,
        "uint16" => 4,
        "int16" => 5,
        "int32" => dtype::INT32,
        "int64" => dtype::INT64,
        "string" => 8,
        "bool" => dtype::BOOL,
        "float16" => 10,
        "double" => dtype::DOUBLE,
        _ => 0,
    }
}

/// Fallback: the shapes as graph outputs (one chained record, see
/// [`onnx::shapes::probe_model`]), element types inferred from the graph.
fn by_outputs(
    analysis: &Analysis,
    input: &str,
    dims: &dyn Fn(usize) -> Vec<usize>,
    label: &Path,
    fixed_batch: bool,
    ort_lib: Option<&Path>,
) -> Result<Measured, EngineError> {
    let (probe, layout) =
        onnx::shapes::probe_model(analysis.model(), &analysis.probe_targets(), &analysis.computed_constants());
    let opts = SessionOptions {
        device: Device::Cpu,
        one_off: true,
        ort_lib: ort_lib.map(Path::to_path_buf),
        ..Default::default()
    };
    let encoded = onnx::Encoded::sharing(probe, analysis.shared_file());
    let mut s = GraphSession::from_encoded(&encoded, label, &opts)?;
    drop(encoded);
    let mut ints = HashMap::new();
    let x1 = session::zeros(&dims(1));
    let at1 = s.run_probe(&[(input, x1.view())], &layout, &mut ints)?;
    let at2 = if fixed_batch {
        None
    } else {
        let x2 = session::zeros(&dims(2));
        s.run_probe(&[(input, x2.view())], &layout, &mut HashMap::new()).ok()
    };
    Ok((at1, at2, ints, analysis.inferred_types()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_node_names_become_the_models_own() {
        let names = vec!["stem/Conv".to_owned(), "head/PartitionedCall".to_owned()];
        assert_eq!(
            real_names("Node (camscope_probe_1) of type PartitionedCall: no kernel; camscope_probe_9", &names),
            "Node (head/PartitionedCall) of type PartitionedCall: no kernel; camscope_probe_9"
        );
    }

    #[test]
    fn profile_events_map_to_node_outputs_per_run() {
        let text = r#"[
            {"cat": "Session", "name": "model_run"},
            {"cat": "Node", "name": "camscope_probe_0_kernel_time", "args": {"output_type_shape": [{"float": [1, 8]}]}},
            {"cat": "Node", "name": "camscope_probe_1_kernel_time", "args": {"output_type_shape": [{"int64": [2]}, {"bool": []}]}},
            {"cat": "Node", "name": "camscope_probe_0_kernel_time", "args": {"output_type_shape": [{"float": [2, 8]}]}},
            {"cat": "Node", "name": "camscope_probe_1_kernel_time", "args": {"output_type_shape": [{"int64": [2]}, {"bool": []}]}}
        ]"#;
        let outputs = vec![vec!["a".to_owned()], vec!["b".to_owned(), "c".to_owned()]];
        let (at1, at2, types) = parse_profile(text, &outputs, true).unwrap();
        assert_eq!(at1, vec![("a".into(), vec![1, 8]), ("b".into(), vec![2]), ("c".into(), vec![])]);
        assert_eq!(at2[0], ("a".into(), vec![2, 8]));
        assert_eq!((types["a"], types["b"], types["c"]), (dtype::FLOAT, dtype::INT64, dtype::BOOL));
        assert!(parse_profile("[]", &outputs, true).is_none());
        assert!(parse_profile("not json", &outputs, true).is_none());
    }
}
