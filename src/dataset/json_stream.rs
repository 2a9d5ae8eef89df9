//! Reading a large JSON report without holding it: the top-level object's fields but one,
//! and that one field's array element by element.
//!
//! `camscope merge` reads the triage.json of every shard, a million rows in all (~700 bytes
//! each as text, several times that as parsed rows). Parsed whole, the shards took more memory
//! than the run that wrote them; read this way, merge holds one row per shard at a time.
//! The reader follows JSON's structure (strings with their escapes, nesting), not camscope's
//! layout, so any valid file reads; serde_json parses each piece.
//!
//! The writer side, [`write_pretty_with_rows`], is how `triage` and `batch` write such a
//! report from rows made one at a time, byte for byte as serde_json's pretty printer would
//! write the whole object.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonStreamError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not valid JSON at byte {offset}: {what}", path.display())]
    Syntax { path: PathBuf, offset: u64, what: &'static str },
    #[error("{}: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
}

/// A top-level object read without one of its fields.
#[derive(Debug)]
pub struct Split {
    /// The other fields, in their order, as a JSON object.
    pub rest: Vec<u8>,
    /// Where the value of the field left out starts (`None`: the object has no such field).
    pub field_at: Option<u64>,
}

/// Read the top-level object of `path`, keeping every field but `field` (whose value is
/// skipped, not stored) and noting where that field's value starts, for [`Elements`].
pub fn split_object(path: &Path, field: &str) -> Result<Split, JsonStreamError> {
    let mut r = Reader::open(path, 0)?;
    let mut rest = b"{".to_vec();
    let mut field_at = None;
    r.expect(b'{', "expected an object")?;
    let mut first = true;
    loop {
        r.skip_ws()?;
        if r.peek()? == Some(b'}') {
            r.bump();
            break;
        }
        if !first {
            r.expect(b',', "expected , or }")?;
            r.skip_ws()?;
        }
        let mut key = Vec::new();
        if r.peek()? != Some(b'"') {
            return Err(r.syntax("expected a field name"));
        }
        r.value(Some(&mut key))?;
        r.skip_ws()?;
        r.expect(b':', "expected :")?;
        r.skip_ws()?;
        let name: String = serde_json::from_slice(&key).map_err(|source| r.json(source))?;
        if name == field {
            field_at = Some(r.offset);
            r.value(None)?;
        } else {
            if rest.len() > 1 {
                rest.push(b',');
            }
            rest.extend_from_slice(&key);
            rest.push(b':');
            r.value(Some(&mut rest))?;
        }
        first = false;
    }
    rest.push(b'}');
    Ok(Split { rest, field_at })
}

/// The elements of the JSON array starting at byte `offset` of a file, parsed one at a time.
pub struct Elements<T> {
    reader: Reader,
    started: bool,
    done: bool,
    buf: Vec<u8>,
    _of: PhantomData<T>,
}

impl<T: serde::de::DeserializeOwned> Elements<T> {
    /// The array at `offset` of `path` (as [`Split::field_at`] gives it).
    pub fn open(path: &Path, offset: u64) -> Result<Self, JsonStreamError> {
        Ok(Self { reader: Reader::open(path, offset)?, started: false, done: false, buf: Vec::new(), _of: PhantomData })
    }

    fn next_element(&mut self) -> Result<Option<T>, JsonStreamError> {
        let r = &mut self.reader;
        r.skip_ws()?;
        if !self.started {
            r.expect(b'[', "expected an array")?;
            self.started = true;
            r.skip_ws()?;
            if r.peek()? == Some(b']') {
                return Ok(None);
            }
        } else {
            match r.peek()? {
                Some(b']') => return Ok(None),
                Some(b',') => {
                    r.bump();
                    r.skip_ws()?;
                }
                _ => return Err(r.syntax("expected , or ]")),
            }
        }
        self.buf.clear();
        r.value(Some(&mut self.buf))?;
        serde_json::from_slice(&self.buf).map(Some).map_err(|source| r.json(source))
    }
}

impl<T: serde::de::DeserializeOwned> Iterator for Elements<T> {
    type Item = Result<T, JsonStreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_element().transpose();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

/// Write `head` as `serde_json::to_writer_pretty` does, but with the top-level field `field`
/// (an empty array in `head`) holding `rows`, each serialized as it comes: the same bytes as
/// the whole object pretty-printed, without the rows in memory. Each row is pretty-printed on
/// its own and indented to its depth (two levels) in its place.
pub fn write_pretty_with_rows<T: serde::Serialize>(
    w: &mut impl std::io::Write,
    head: &impl serde::Serialize,
    field: &str,
    rows: impl Iterator<Item = std::io::Result<T>>,
) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(head)?;
    // Top-level fields are the only ones indented by exactly two spaces; a string holding
    // this text would have its quotes escaped.
    let mut mark = serde_json::to_vec(field)?;
    mark.splice(0..0, *b"\n  ");
    mark.extend_from_slice(b": []");
    let at = text
        .windows(mark.len())
        .position(|x| x == mark)
        .ok_or_else(|| std::io::Error::other(format!("no empty top-level field {field} to fill")))?;
    let (before, after) = text.split_at(at + mark.len() - 2);
    w.write_all(before)?;
    let mut any = false;
    for r in rows {
        let r = r?;
        w.write_all(if any { b",\n" } else { b"[\n" })?;
        any = true;
        let row = serde_json::to_vec_pretty(&r)?;
        for (k, line) in row.split(|&b| b == b'\n').enumerate() {
            if k > 0 {
                w.write_all(b"\n")?;
            }
            w.write_all(b"    ")?;
            w.write_all(line)?;
        }
    }
    w.write_all(if any { b"\n  ]" } else { b"[]" })?;
    w.write_all(&after[2..])
}

/// A byte reader that knows its offset in the file.
struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    offset: u64,
}

impl Reader {
    fn open(path: &Path, offset: u64) -> Result<Self, JsonStreamError> {
        let io = |source| JsonStreamError::Io { path: path.to_owned(), source };
        let mut file = File::open(path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok(Self { path: path.to_owned(), inner: BufReader::with_capacity(1 << 16, file), offset })
    }

    fn io(&self, source: std::io::Error) -> JsonStreamError {
        JsonStreamError::Io { path: self.path.clone(), source }
    }

    fn syntax(&self, what: &'static str) -> JsonStreamError {
        JsonStreamError::Syntax { path: self.path.clone(), offset: self.offset, what }
    }

    fn json(&self, source: serde_json::Error) -> JsonStreamError {
        JsonStreamError::Json { path: self.path.clone(), source }
    }

    fn peek(&mut self) -> Result<Option<u8>, JsonStreamError> {
        let buf = self.inner.fill_buf().map_err(|e| JsonStreamError::Io { path: self.path.clone(), source: e })?;
        Ok(buf.first().copied())
    }

    /// Step over the byte [`peek`](Self::peek) returned.
    fn bump(&mut self) {
        self.inner.consume(1);
        self.offset += 1;
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonStreamError> {
        if self.peek()? != Some(byte) {
            return Err(self.syntax(what));
        }
        self.bump();
        Ok(())
    }

    fn skip_ws(&mut self) -> Result<(), JsonStreamError> {
        while matches!(self.peek()?, Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
        Ok(())
    }

    /// Read one value (a string, an object or array with everything nested in it, or a bare
    /// number, `true`, `false` or `null`), appending its bytes to `out` when given. Only the
    /// structure is checked here; serde_json checks the rest when it parses the bytes.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), JsonStreamError> {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut total = 0usize;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) => return Err(self.io(e)),
            };
            if buf.is_empty() {
                return Err(self.syntax("the file ends inside a value"));
            }
            let mut used = 0;
            let mut end = false;
            for &b in buf {
                if in_string {
                    used += 1;
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = true;
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        if depth == 0 {
                            used += 1;
                            end = true;
                            break;
                        }
                    }
                    // The end of a bare scalar, not part of it.
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                        end = true;
                        break;
                    }
                    _ => {}
                }
                used += 1;
            }
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&buf[..used]);
            }
            self.inner.consume(used);
            self.offset += used as u64;
            total += used;
            if end {
                if total == 0 {
                    return Err(self.syntax("expected a value"));
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn splits_one_field_off_and_streams_its_elements() {
        let text = r#"{ "a": {"x": [1, "]}\"", {}]}, "images": [ {"p": "a,b"}, {"p": "c\\"} ,{"p":"}"} ],
            "b": -1.5e3, "c": "s", "d": null }"#;
        let f = file(text);
        let s = split_object(f.path(), "images").unwrap();
        let rest: serde_json::Value = serde_json::from_slice(&s.rest).unwrap();
        assert_eq!(rest, serde_json::json!({"a": {"x": [1, "]}\"", {}]}, "b": -1.5e3, "c": "s", "d": null}));
        let rows: Vec<serde_json::Value> =
            Elements::open(f.path(), s.field_at.unwrap()).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            rows,
            vec![serde_json::json!({"p": "a,b"}), serde_json::json!({"p": "c\\"}), serde_json::json!({"p": "}"})]
        );
    }

    #[test]
    fn an_empty_array_and_a_missing_field() {
        let f = file(r#"{"images": [ ], "n": 3}"#);
        let s = split_object(f.path(), "images").unwrap();
        assert_eq!(Elements::<u32>::open(f.path(), s.field_at.unwrap()).unwrap().count(), 0);
        assert!(split_object(f.path(), "other").unwrap().field_at.is_none());
    }

    #[test]
    fn rows_written_one_at_a_time_give_the_whole_objects_pretty_bytes() {
        #[derive(serde::Serialize, Clone)]
        struct Out {
            name: &'static str,
            note: &'static str,
            images: Vec<serde_json::Value>,
            after: Vec<u32>,
        }
        let rows = vec![serde_json::json!({"a": 1, "b": [1, 2]}), serde_json::json!({"a": "\n  \"images\": []"})];
        for rows in [rows.clone(), vec![]] {
            let whole = Out { name: "x", note: "\n  \"images\": []", images: rows.clone(), after: vec![1, 2] };
            let mut streamed = Vec::new();
            let head = Out { images: vec![], ..whole.clone() };
            write_pretty_with_rows(&mut streamed, &head, "images", rows.into_iter().map(Ok)).unwrap();
            assert_eq!(String::from_utf8(streamed).unwrap(), serde_json::to_string_pretty(&whole).unwrap());
        }
    }

    #[test]
    fn a_cut_file_is_an_error_not_a_shorter_array() {
        let f = file(r#"{"n": 1, "images": [1, 2, 3"#);
        let s = split_object(f.path(), "images");
        assert!(matches!(s, Err(JsonStreamError::Syntax { .. })), "{s:?}");
        let rows: Vec<_> = Elements::<u32>::open(f.path(), 19).unwrap().collect();
        assert_eq!(rows.len(), 3);
        assert!(rows[..2].iter().all(|r| r.is_ok()));
        assert!(rows[2].is_err(), "{rows:?}");
        let bad = file(r#"{"images": [1 2]}"#);
        assert!(Elements::<u32>::open(bad.path(), 11).unwrap().any(|r| r.is_err()));
    }
}
