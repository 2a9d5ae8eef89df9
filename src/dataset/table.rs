//! The per-image tables of `triage` and `batch` as Parquet (`triage.parquet`,
//! `report.parquet`), so pandas, Polars, DuckDB or Spark read a 50,000-image run typed and
//! columnar instead of re-parsing decimal text from the CSV. The schema (README, "Parquet
//! tables") is defined here once: an unsharded run and `merge` both stream their file through
//! [`ParquetStream`] from the same rows, so a merged file equals the unsharded one. Column
//! names follow the CSV's; lists stand in for the CSV's `top1_...`, `top2_...` columns, so the
//! schema does not depend on `--top`.
//!
//! The caller gives the writer a temporary file from
//! [`crate::dataset::journal::Journal::write_report_with`], which puts it in place atomically
//! like every other report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::explanation::Timings;
use crate::scores::Prediction;

/// Why a table could not be encoded. Writing the bytes is the journal's job (its errors name
/// the file and the fix for a full disk or a folder in the way); what is left here are
/// values Parquet's int32 columns cannot hold and encoder failures, which are camscope's bugs.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: class index {index} does not fit the table's int32 column; no classifier has that many classes, so report this as a camscope bug", path.display())]
    IndexTooLarge { path: PathBuf, index: usize },
    #[error("{}: cannot encode the Parquet table: {message}; this is a camscope bug, please report it (the JSON and CSV reports hold the same rows)", path.display())]
    Encode { path: PathBuf, message: String },
}

/// One image of `triage.parquet` (one row of triage.csv), borrowed from the caller's rows.
#[derive(Debug, Clone)]
pub struct TriageRow<'a> {
    /// Path relative to the dataset root.
    pub path: &'a str,
    /// True class (index, label); `None` for an unlabeled image.
    pub truth: Option<(usize, &'a str)>,
    pub predicted: (usize, &'a str),
    pub predicted_probability: f32,
    pub true_probability: Option<f32>,
    pub correct: Option<bool>,
    pub in_top5: Option<bool>,
    pub margin: f32,
    pub loss: Option<f64>,
    /// The five most probable classes, best first: (index, label, probability).
    pub top5: &'a [(usize, String, f32)],
    /// The mistake's maps, relative to the output folder (empty unless a mistake).
    pub overlays: &'a [String],
}

/// One row of `report.parquet` (one row of report.csv): an explained image, or an unreadable
/// one (`class`, `method`, `output` and `timings` absent, `map_status` "unreadable: why").
#[derive(Debug, Clone)]
pub struct BatchRow<'a> {
    /// Path relative to the input folder.
    pub file: &'a str,
    /// The `--top` most probable classes, best first.
    pub top: &'a [Prediction],
    /// The explained class.
    pub class: Option<&'a Prediction>,
    pub method: Option<&'a str>,
    pub map_status: &'a str,
    /// The overlay, relative to the output folder.
    pub output: Option<&'a str>,
    pub timings: Option<&'a Timings>,
    pub warnings: &'a [String],
}

/// A column: its name, its values, and whether it may hold nulls (a non-nullable column
/// with a null is an encoding error, so the schema documents a promise the data keeps).
type Column = (&'static str, ArrayRef, bool);

fn index(i: usize, path: &Path) -> Result<i32, TableError> {
    i32::try_from(i).map_err(|_| TableError::IndexTooLarge { path: path.to_owned(), index: i })
}

fn int_list<I: IntoIterator<Item = usize>>(rows: impl Iterator<Item = I>, path: &Path) -> Result<ArrayRef, TableError> {
    let mut b =
        ListBuilder::new(Int32Builder::new()).with_field(Field::new("item", arrow_schema::DataType::Int32, false));
    for r in rows {
        for i in r {
            b.values().append_value(index(i, path)?);
        }
        b.append(true);
    }
    Ok(Arc::new(b.finish()))
}

fn float_list<I: IntoIterator<Item = f32>>(rows: impl Iterator<Item = I>) -> ArrayRef {
    let mut b =
        ListBuilder::new(Float32Builder::new()).with_field(Field::new("item", arrow_schema::DataType::Float32, false));
    for r in rows {
        for p in r {
            b.values().append_value(p);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn string_list<'s, I: IntoIterator<Item = &'s str>>(rows: impl Iterator<Item = I>) -> ArrayRef {
    let mut b =
        ListBuilder::new(StringBuilder::new()).with_field(Field::new("item", arrow_schema::DataType::Utf8, false));
    for r in rows {
        for s in r {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn strings<'s>(v: impl Iterator<Item = Option<&'s str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

/// Rows per row group: a writer holds one group's columns in memory (~10 MB of triage rows),
/// so a million-row table streams through in flat memory.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Rows a caller parses and hands to a [`ParquetStream`] at a time: the writer keeps a row
/// group's columns encoded, so the parsed rows need not fill a whole group (65,536 parsed
/// batch entries took 65 MB, ten times their encoded columns).
pub const CHUNK_ROWS: usize = 4_096;

/// `rows` in vectors of [`CHUNK_ROWS`] (the last one shorter), stopping at the first error.
pub fn chunks<T>(mut rows: impl Iterator<Item = std::io::Result<T>>) -> impl Iterator<Item = std::io::Result<Vec<T>>> {
    std::iter::from_fn(move || {
        let chunk: std::io::Result<Vec<T>> = rows.by_ref().take(CHUNK_ROWS).collect();
        match chunk {
            Ok(c) if c.is_empty() => None,
            other => Some(other),
        }
    })
}

/// A Parquet file written a batch of rows at a time into `out` (row groups of
/// [`ROW_GROUP_ROWS`], Snappy pages): deterministic bytes for equal rows, which is what lets
/// `merge` be checked against an unsharded run. The schema comes from the first batch.
pub struct ParquetStream<W: std::io::Write + Send> {
    out: Option<W>,
    writer: Option<ArrowWriter<W>>,
    path: PathBuf,
}

impl<W: std::io::Write + Send> ParquetStream<W> {
    /// `path` names the file in errors only.
    pub fn new(out: W, path: &Path) -> Self {
        Self { out: Some(out), writer: None, path: path.to_owned() }
    }

    /// Append rows of `triage.parquet`: one row per scored image, in triage.json's order.
    pub fn triage_rows(&mut self, rows: &[TriageRow<'_>]) -> Result<(), TableError> {
        let columns = triage_columns(rows, &self.path)?;
        self.write(columns)
    }

    fn err(&self, e: &dyn std::fmt::Display) -> TableError {
        TableError::Encode { path: self.path.clone(), message: e.to_string() }
    }

    fn write(&mut self, columns: Vec<Column>) -> Result<(), TableError> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, a, nullable)| Field::new(*name, a.data_type().clone(), *nullable))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())
            .map_err(|e| self.err(&e))?;
        if self.writer.is_none() {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            let out = self.out.take().expect("the writer is made once");
            self.writer = Some(ArrowWriter::try_new(out, schema, Some(props)).map_err(|e| self.err(&e))?);
        }
        let w = self.writer.as_mut().expect("made above");
        w.write(&batch).map_err(|e| TableError::Encode { path: self.path.clone(), message: e.to_string() })
    }

    /// Close the file (an empty table when no rows came: the schema still needs a batch, so
    /// call a `*_rows` method with no rows first) and return the destination.
    fn finish(mut self) -> Result<W, TableError> {
        let w = self.writer.take().expect("a batch was written");
        w.into_inner().map_err(|e| self.err(&e))
    }

    /// Close a triage table (see [`Self::finish`]).
    pub fn finish_triage(mut self) -> Result<W, TableError> {
        if self.writer.is_none() {
            self.triage_rows(&[])?;
        }
        self.finish()
    }

    /// Append rows of `report.parquet`: one row per image of report.csv (explained images in
    /// the listing's order, then the unreadable ones).
    pub fn batch_rows(&mut self, rows: &[BatchRow<'_>]) -> Result<(), TableError> {
        let columns = batch_columns(rows, &self.path)?;
        self.write(columns)
    }

    /// Close a batch table (see [`Self::finish`]).
    pub fn finish_batch(mut self) -> Result<W, TableError> {
        if self.writer.is_none() {
            self.batch_rows(&[])?;
        }
        self.finish()
    }
}

fn triage_columns(rows: &[TriageRow<'_>], path: &Path) -> Result<Vec<Column>, TableError> {
    let opt_index = |c: Option<(usize, &str)>| c.map(|c| index(c.0, path)).transpose();
    let columns: Vec<Column> = vec![
        ("path", strings(rows.iter().map(|r| Some(r.path))), false),
        ("true_index", Arc::new(rows.iter().map(|r| opt_index(r.truth)).collect::<Result<Int32Array, _>>()?), true),
        ("true_label", strings(rows.iter().map(|r| r.truth.map(|t| t.1))), true),
        (
            "predicted_index",
            Arc::new(rows.iter().map(|r| index(r.predicted.0, path).map(Some)).collect::<Result<Int32Array, _>>()?),
            false,
        ),
        ("predicted_label", strings(rows.iter().map(|r| Some(r.predicted.1))), false),
        (
            "predicted_probability",
            Arc::new(rows.iter().map(|r| Some(r.predicted_probability)).collect::<Float32Array>()),
            false,
        ),
        ("true_probability", Arc::new(rows.iter().map(|r| r.true_probability).collect::<Float32Array>()), true),
        ("correct", Arc::new(rows.iter().map(|r| r.correct).collect::<BooleanArray>()), true),
        ("in_top5", Arc::new(rows.iter().map(|r| r.in_top5).collect::<BooleanArray>()), true),
        ("margin", Arc::new(rows.iter().map(|r| Some(r.margin)).collect::<Float32Array>()), false),
        ("loss", Arc::new(rows.iter().map(|r| r.loss).collect::<Float64Array>()), true),
        ("top5_indices", int_list(rows.iter().map(|r| r.top5.iter().map(|c| c.0)), path)?, false),
        ("top5_labels", string_list(rows.iter().map(|r| r.top5.iter().map(|c| c.1.as_str()))), false),
        ("top5_probabilities", float_list(rows.iter().map(|r| r.top5.iter().map(|c| c.2))), false),
        ("overlays", string_list(rows.iter().map(|r| r.overlays.iter().map(String::as_str))), false),
    ];
    Ok(columns)
}

fn batch_columns(rows: &[BatchRow<'_>], path: &Path) -> Result<Vec<Column>, TableError> {
    let timing = |f: fn(&Timings) -> f64| -> ArrayRef {
        Arc::new(rows.iter().map(|r| r.timings.map(f)).collect::<Float64Array>())
    };
    let columns: Vec<Column> = vec![
        ("file", strings(rows.iter().map(|r| Some(r.file))), false),
        ("top_indices", int_list(rows.iter().map(|r| r.top.iter().map(|p| p.index)), path)?, false),
        ("top_labels", string_list(rows.iter().map(|r| r.top.iter().map(|p| p.label.as_str()))), false),
        ("top_probabilities", float_list(rows.iter().map(|r| r.top.iter().map(|p| p.probability))), false),
        (
            "class_index",
            Arc::new(
                rows.iter()
                    .map(|r| r.class.map(|c| index(c.index, path)).transpose())
                    .collect::<Result<Int32Array, _>>()?,
            ),
            true,
        ),
        ("class_label", strings(rows.iter().map(|r| r.class.map(|c| c.label.as_str()))), true),
        (
            "class_probability",
            Arc::new(rows.iter().map(|r| r.class.map(|c| c.probability)).collect::<Float32Array>()),
            true,
        ),
        ("method", strings(rows.iter().map(|r| r.method)), true),
        ("map_status", strings(rows.iter().map(|r| Some(r.map_status))), false),
        ("output", strings(rows.iter().map(|r| r.output)), true),
        ("decode_ms", timing(|t| t.decode_ms), true),
        ("body_ms", timing(|t| t.body_ms), true),
        ("head_ms", timing(|t| t.head_ms), true),
        ("map_ms", timing(|t| t.map_ms), true),
        ("render_ms", timing(|t| t.render_ms), true),
        ("warnings", string_list(rows.iter().map(|r| r.warnings.iter().map(String::as_str))), false),
    ];
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// A whole table encoded in memory.
    fn triage_parquet(rows: &[TriageRow<'_>], path: &Path) -> Result<Vec<u8>, TableError> {
        let mut s = ParquetStream::new(Vec::new(), path);
        s.triage_rows(rows)?;
        s.finish_triage()
    }

    fn batch_parquet(rows: &[BatchRow<'_>], path: &Path) -> Result<Vec<u8>, TableError> {
        let mut s = ParquetStream::new(Vec::new(), path);
        s.batch_rows(rows)?;
        s.finish_batch()
    }

    #[test]
    fn rows_handed_over_in_chunks_make_the_same_table_with_full_row_groups() {
        let names: Vec<String> = (0..70_000).map(|i| format!("d/{i:06}.png")).collect();
        let rows: Vec<BatchRow> = names
            .iter()
            .map(|f| BatchRow {
                file: f,
                top: &[],
                class: None,
                method: None,
                map_status: "ok",
                output: None,
                timings: None,
                warnings: &[],
            })
            .collect();
        let whole = batch_parquet(&rows, Path::new("r.parquet")).unwrap();
        let mut s = ParquetStream::new(Vec::new(), Path::new("r.parquet"));
        for chunk in rows.chunks(CHUNK_ROWS) {
            s.batch_rows(chunk).unwrap();
        }
        let chunked = s.finish_batch().unwrap();
        // Pages are cut where the chunks end, so the bytes differ (a run and a merge both
        // chunk alike); the table does not.
        assert_eq!(read_back(&whole), read_back(&chunked));
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &chunked).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().metadata().clone();
        let groups: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [65_536, 4_464]);
    }

    fn read_back(bytes: &[u8]) -> RecordBatch {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().with_batch_size(1 << 20).build().unwrap();
        let mut batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches.len(), 1, "one batch of up to 2^20 rows");
        batches.remove(0)
    }

    /// 50,000 triage rows (a full ImageNet validation run) encode deterministically, quickly,
    /// and read back with their nulls and lists intact.
    #[test]
    fn a_large_triage_table_round_trips() {
        let labels: Vec<String> = (0..1000).map(|i| format!("class {i}")).collect();
        let top5: Vec<Vec<(usize, String, f32)>> = (0..50_000usize)
            .map(|i| (0..5).map(|k| ((i + k) % 1000, labels[(i + k) % 1000].clone(), 0.5 / (k + 1) as f32)).collect())
            .collect();
        let paths: Vec<String> = (0..50_000).map(|i| format!("n{:08}/ILSVRC2012_val_{i:08}.JPEG", i % 1000)).collect();
        let maps = vec!["mistakes/a.predicted.png".to_owned()];
        let rows: Vec<TriageRow> = (0..50_000)
            .map(|i| TriageRow {
                path: &paths[i],
                truth: (i % 7 != 0).then(|| (i % 1000, labels[i % 1000].as_str())),
                predicted: (top5[i][0].0, &top5[i][0].1),
                predicted_probability: 0.5,
                true_probability: (i % 7 != 0).then_some(0.25),
                correct: (i % 7 != 0).then_some(i % 3 == 0),
                in_top5: (i % 7 != 0).then_some(true),
                margin: -0.25,
                loss: (i % 7 != 0).then_some(4f64.ln()),
                top5: &top5[i],
                overlays: if i % 3 == 0 { &[] } else { &maps },
            })
            .collect();
        let t0 = std::time::Instant::now();
        let bytes = triage_parquet(&rows, Path::new("triage.parquet")).unwrap();
        eprintln!("50,000 triage rows: {} bytes in {:.1} ms", bytes.len(), t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(bytes, triage_parquet(&rows, Path::new("triage.parquet")).unwrap(), "deterministic");
        let b = read_back(&bytes);
        assert_eq!(b.num_rows(), 50_000);
        let truth = b.column_by_name("true_index").unwrap().as_any().downcast_ref::<Int32Array>().unwrap();
        assert!(truth.is_null(0) && truth.value(1) == 1);
        let loss = b.column_by_name("loss").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(loss.value(1), 4f64.ln());
        let top = b.column_by_name("top5_indices").unwrap();
        let top = top.as_any().downcast_ref::<arrow_array::ListArray>().unwrap();
        let first = top.value(49_999);
        let first = first.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(first.values().to_vec(), vec![999, 0, 1, 2, 3]);
    }

    /// Batch rows of unreadable images have nulls where the CSV has empty cells.
    #[test]
    fn unreadable_batch_rows_are_nulls() {
        let status = "unreadable: not an image".to_owned();
        let rows = [BatchRow {
            file: "a.jpg",
            top: &[],
            class: None,
            method: None,
            map_status: &status,
            output: None,
            timings: None,
            warnings: &[],
        }];
        let b = read_back(&batch_parquet(&rows, Path::new("report.parquet")).unwrap());
        assert_eq!(b.num_rows(), 1);
        for c in ["class_index", "class_label", "method", "output", "decode_ms"] {
            assert!(b.column_by_name(c).unwrap().is_null(0), "{c}");
        }
        assert!(!b.column_by_name("map_status").unwrap().is_null(0));
    }
}
