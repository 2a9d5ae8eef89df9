//! Reading and writing `.onnx` files.
//!
//! Decoding keeps every field (prost code generated from the current `onnx-ml.proto`), so a
//! model read and written back is byte-identical. Tensors stored as external data are
//! resolved only inside the model's folder: a location that is absolute, climbs out with
//! `..`, or escapes through a symlink is refused, since a model file must not be able to make
//! camscope read arbitrary files.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use super::proto::tensor_proto::DataLocation;
use super::{ModelProto, TensorProto};

/// Why a model file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{}: no such model file; pass --model PATH to an .onnx classifier", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}; pass --model PATH to a readable .onnx file", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: is a folder, not a model; pass the .onnx file {hint}", path.display())]
    Folder { path: PathBuf, hint: String },
    #[error("{}: not an ONNX model ({detail}); re-export it or pass the right --model", path.display())]
    Decode { path: PathBuf, detail: String },
    #[error("{}: external data `{location}` {detail}", path.display())]
    ExternalData { path: PathBuf, location: String, detail: String },
    #[error("{}: cannot write: {source}; choose a writable output path", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: the model is {size} bytes with its external data inlined, over protobuf's 2 GiB limit", path.display())]
    TooLarge { path: PathBuf, size: u64 },
}

/// Decode model bytes exactly as stored (external data left as references).
pub fn decode_model(bytes: &[u8], path: &Path) -> Result<ModelProto, OnnxError> {
    let model =
        ModelProto::decode(bytes).map_err(|e| OnnxError::Decode { path: path.to_owned(), detail: e.to_string() })?;
    if model.graph.is_none() {
        return Err(OnnxError::Decode { path: path.to_owned(), detail: "it has no graph".into() });
    }
    Ok(model)
}

/// Encode a model to bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// `model` encoded with `initializers` added to its graph, without copying them: they go
/// in a second `graph` field, which a protobuf parser merges into the first (repeated
/// fields append), so the result reads as one graph holding `model`'s initializers, then
/// these. The body of a pruned head replaces the model's nodes but keeps its weights.
pub fn encode_with_initializers(model: &ModelProto, initializers: &[TensorProto]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, message};
    // ModelProto.graph is field 7, GraphProto.initializer field 5.
    let inner: usize = initializers.iter().map(|t| message::encoded_len(5, t)).sum();
    let mut buf = Vec::with_capacity(model.encoded_len() + inner + 16);
    model.encode(&mut buf).expect("the buffer has the room");
    encode_key(7, WireType::LengthDelimited, &mut buf);
    encode_varint(inner as u64, &mut buf);
    for t in initializers {
        message::encode(5, t, &mut buf);
    }
    buf
}

/// Read a model and inline its external data (checked to stay inside the model's folder),
/// so derived graphs can be handed to ONNX Runtime from memory.
pub fn read_model(path: &Path) -> Result<ModelProto, OnnxError> {
    Ok(read_model_fingerprinted(path, false)?.0)
}

/// [`read_model`], also returning a fingerprint of the file's bytes (xxHash3-128 and the
/// length) when `fingerprint` is set: what on-disk caches of derived facts are keyed by. The
/// hash covers the `.onnx` file, not external data files (weights there change no shape).
pub fn read_model_fingerprinted(
    path: &Path,
    fingerprint: bool,
) -> Result<(ModelProto, Option<(u128, u64)>), OnnxError> {
    let (model, print, _) = read_model_shared(path, fingerprint)?;
    Ok((model, print))
}

/// A model file's xxHash3-128 and length.
pub type Fingerprint = (u128, u64);

/// [`read_model_fingerprinted`], decoded from a shared buffer of the file: the tensors'
/// bytes are slices of it rather than copies, and it is returned so that graphs derived from
/// the model can hand ONNX Runtime their weights without encoding them (see [`SharedFile`]).
pub fn read_model_shared(
    path: &Path,
    fingerprint: bool,
) -> Result<(ModelProto, Option<Fingerprint>, SharedFile), OnnxError> {
    let file = SharedFile(read_shared(path)?);
    let print = fingerprint.then(|| (twox_hash::XxHash3_128::oneshot(&file.0), file.0.len() as u64));
    let owner = bytes::Bytes::from_owner(file.clone());
    let mut model =
        ModelProto::decode(owner).map_err(|e| OnnxError::Decode { path: path.to_owned(), detail: e.to_string() })?;
    if model.graph.is_none() {
        return Err(OnnxError::Decode { path: path.to_owned(), detail: "it has no graph".into() });
    }
    inline_external_data(&mut model, path)?;
    Ok((model, print, file))
}

/// A model file's bytes, read once and shared: the decoded model's tensors are slices of it
/// (decoding a ViT-B/16 no longer copies its 346 MB), and a graph derived from the model can
/// be encoded with its weights as external data in this buffer ([`encode_external`]), which
/// ONNX Runtime reads in place: the body session of a ViT-B/16 opens in less time than from
/// the whole encoded graph, which ONNX Runtime would parse and copy again.
#[derive(Clone)]
pub struct SharedFile(Arc<[u8]>);

impl std::fmt::Debug for SharedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedFile({} bytes)", self.0.len())
    }
}

impl AsRef<[u8]> for SharedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl SharedFile {
    /// The buffer, for ONNX Runtime's in-memory external data.
    pub fn buffer(&self) -> Arc<[u8]> {
        Arc::clone(&self.0)
    }

    /// Where `data` starts in the buffer, if it is a slice of it.
    fn offset_of(&self, data: &[u8]) -> Option<usize> {
        let start = self.0.as_ptr() as usize;
        let at = data.as_ptr() as usize;
        (at >= start && at + data.len() <= start + self.0.len()).then(|| at - start)
    }
}

/// The file name under which [`encode_external`]'s graphs refer to their [`SharedFile`]
/// (ONNX Runtime matches it against the name the buffer is registered under).
pub const SHARED_FILE_NAME: &str = "camscope-model-weights.bin";

/// An encoded model, with the buffer its external initializers live in (if any).
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub external: Option<Arc<[u8]>>,
}

/// Tensors smaller than this stay inside the graph, as `onnx.save` keeps them: shape
/// inference reads the values of small constants (pads, shapes, scales), and cannot read
/// external ones.
const EXTERNAL_MIN_BYTES: usize = 1024;

impl Encoded {
    /// `model` encoded with its weights inside.
    pub fn of(model: &ModelProto) -> Self {
        Self { bytes: encode_model(model), external: None }
    }

    /// `model` encoded with its weights read from `file` where they are slices of it (see
    /// [`encode_external`]); the model is consumed, so its weights are not held twice.
    pub fn sharing(mut model: ModelProto, file: Option<&SharedFile>) -> Self {
        let inits = model.graph.as_mut().map(|g| std::mem::take(&mut g.initializer)).unwrap_or_default();
        encode_external(&model, &inits, file)
    }
}

/// `initializers` with every weight whose bytes are a slice of `file` turned into a reference
/// to them ([`SHARED_FILE_NAME`], offset, length) instead: cheap copies (the bytes are shared).
/// Small tensors and integer ones (shapes, indices) stay inside.
pub fn externalize(initializers: &[TensorProto], file: &SharedFile) -> Vec<TensorProto> {
    use super::dtype;
    use super::proto::StringStringEntryProto;
    let kv = |k: &str, v: String| StringStringEntryProto { key: Some(k.to_owned()), value: Some(v) };
    initializers
        .iter()
        .map(|t| {
            let integer = matches!(t.data_type, Some(dtype::INT64 | dtype::INT32));
            let raw = t.raw_data.as_deref().filter(|r| r.len() >= EXTERNAL_MIN_BYTES && !integer);
            let Some(offset) = raw.and_then(|r| file.offset_of(r)) else {
                return t.clone();
            };
            let len = t.raw_data.as_ref().map_or(0, |r| r.len());
            TensorProto {
                raw_data: None,
                data_location: Some(DataLocation::External as i32),
                external_data: vec![
                    kv("location", SHARED_FILE_NAME.to_owned()),
                    kv("offset", offset.to_string()),
                    kv("length", len.to_string()),
                ],
                ..t.clone()
            }
        })
        .collect()
}

/// [`encode_with_initializers`] with `initializers` read from `file` where they are slices of
/// it (see [`externalize`]); without a file, the plain encoding.
pub fn encode_external(model: &ModelProto, initializers: &[TensorProto], file: Option<&SharedFile>) -> Encoded {
    match file {
        Some(f) => Encoded {
            bytes: encode_with_initializers(model, &externalize(initializers, f)),
            external: Some(f.buffer()),
        },
        None => Encoded { bytes: encode_with_initializers(model, initializers), external: None },
    }
}

/// The file's bytes in a shared buffer, read in place (a `Vec` turned into an `Arc<[u8]>`
/// would be copied: 346 MB for a ViT-B/16).
fn read_shared(path: &Path) -> Result<Arc<[u8]>, OnnxError> {
    let err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => OnnxError::Missing { path: path.to_owned() },
        _ if path.is_dir() => OnnxError::Folder { path: path.to_owned(), hint: folder_hint(path) },
        _ => OnnxError::Read { path: path.to_owned(), source },
    };
    crate::fsutil::read_regular_shared(path).map_err(err)
}

/// Which file to pass instead of a folder: the `.onnx` files in it (a model is often
/// downloaded or exported as a folder holding one).
fn folder_hint(dir: &Path) -> String {
    let mut models: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    models.retain(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")));
    models.sort();
    match models.as_slice() {
        [] => "(this folder holds none)".into(),
        [one] => format!("inside it: --model {}", one.display()),
        many => format!(
            "inside it, one of: {}",
            many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Write a model atomically (temporary file in the same folder, then rename).
pub fn write_model(path: &Path, model: &ModelProto) -> Result<(), OnnxError> {
    let write_err = |source| OnnxError::Write { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode_model(model))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// Resolve an external-data location against the model's folder, refusing escapes.
pub fn resolve_external(model_path: &Path, location: &str) -> Result<PathBuf, OnnxError> {
    let err = |detail: &str| OnnxError::ExternalData {
        path: model_path.to_owned(),
        location: location.to_owned(),
        detail: detail.to_owned(),
    };
    let rel = Path::new(location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_))) {
        return Err(err("points outside the model's folder; keep external data files beside the model"));
    }
    let dir = model_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let full = dir.join(rel);
    let canon_dir = dir.canonicalize().map_err(|_| err("cannot be resolved: the model's folder is unreadable"))?;
    let canon = full.canonicalize().map_err(|_| err("is missing; copy the data file next to the model"))?;
    if !canon.starts_with(&canon_dir) {
        return Err(err("resolves outside the model's folder (through a link); keep external data beside the model"));
    }
    Ok(canon)
}

/// Read `length` bytes (to the end when `None`) at `offset` of an external-data file. Only a
/// regular file is opened: a FIFO would block the load forever and a device could be
/// endless. Exporters put every tensor of a model in one file, so only the tensor's own
/// range is read (reading the whole file per tensor made a 300 MB model read 60 GB).
fn read_range(file: &Path, offset: u64, length: Option<u64>) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot be read ({e}); check the data file"))?;
    if !meta.is_file() {
        return Err("is not a regular file (a pipe, socket, device or folder); replace it with the data file".into());
    }
    let size = meta.len();
    let end = length.map_or(Some(size), |l| offset.checked_add(l)).unwrap_or(u64::MAX);
    if offset > size || end > size {
        return Err(format!("is {size} bytes, shorter than offset {offset} + length; the data file is truncated"));
    }
    let mut f = std::fs::File::open(file).map_err(|e| format!("cannot be read ({e}); check the data file"))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| format!("cannot be read ({e}); check the data file"))?;
    let mut data = Vec::new();
    // `take` bounds the read even if the file grows meanwhile.
    f.take(end - offset).read_to_end(&mut data).map_err(|e| format!("cannot be read ({e}); check the data file"))?;
    if (data.len() as u64) < end - offset {
        return Err("shrank while being read; the data file is truncated".into());
    }
    Ok(data)
}

fn inline_external_data(model: &mut ModelProto, path: &Path) -> Result<(), OnnxError> {
    let Some(graph) = model.graph.as_mut() else { return Ok(()) };
    let mut total: u64 = 0;
    for t in graph.initializer.iter_mut() {
        if t.data_location != Some(DataLocation::External as i32) {
            continue;
        }
        let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
        let location = get("location").unwrap_or_default();
        let offset: u64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let length: Option<u64> = get("length").and_then(|v| v.parse().ok());
        let file = resolve_external(path, &location)?;
        let data = read_range(&file, offset, length).map_err(|detail| OnnxError::ExternalData {
            path: path.to_owned(),
            location: location.clone(),
            detail,
        })?;
        total += data.len() as u64;
        if total > (2u64 << 30) - (64 << 20) {
            return Err(OnnxError::TooLarge { path: path.to_owned(), size: total });
        }
        t.raw_data = Some(data.into());
        t.external_data.clear();
        t.data_location = Some(DataLocation::Default as i32);
    }
    Ok(())
}
