//! Reading files the user names without ever blocking on one that is not a file.
//!
//! A FIFO named `model.onnx`, `labels.csv` or `model.toml` blocks a plain `read` until some
//! other process writes to it (forever, in practice), and a device such as `/dev/zero` never
//! ends. Every file camscope reads because a user pointed at it goes through here: it is
//! opened with `O_NONBLOCK` (so opening a FIFO returns at once) and checked on the open
//! descriptor (so a file swapped for a FIFO after an earlier check is caught too).

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// What stands at `path` when it is there but is not a regular file (a final symlink is not
/// followed): "a folder", "a symbolic link" or "a device, pipe or socket". `None` when the
/// path is free or a regular file, i.e. when camscope may replace it.
pub fn non_regular(path: &Path) -> Option<&'static str> {
    let ft = path.symlink_metadata().ok()?.file_type();
    if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a folder")
    } else if ft.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("a device, pipe or socket")
    }
}

/// `path` opened for reading, refused unless it is a regular file (opened without blocking,
/// so that a FIFO is refused instead of waiting for a writer).
fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a folder" } else { "a pipe, socket or device" };
        return Err(Error::new(ErrorKind::InvalidInput, format!("it is {what}, not a regular file")));
    }
    Ok((file, meta))
}

/// The bytes of `path`, which must be a regular file (else an `InvalidInput` error whose text
/// says what it is).
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let (mut file, meta) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_regular`] into a shared buffer, read in place: large files (models) are read into
/// memory once, then shared without a copy.
pub fn read_regular_shared(path: &Path) -> std::io::Result<std::sync::Arc<[u8]>> {
    let (mut file, meta) = open_regular(path)?;
    let len = usize::try_from(meta.len()).map_err(|_| Error::new(ErrorKind::InvalidInput, "too large to read"))?;
    let mut buf = std::sync::Arc::<[u8]>::new_uninit_slice(len);
    let slice = std::sync::Arc::get_mut(&mut buf).expect("a new Arc has one owner");
    // Zeroed first: reading into uninitialised bytes is not allowed (a memset of a ViT-B's
    // 346 MB costs 30 ms, less than the copy from a `Vec` it replaces).
    slice.fill(std::mem::MaybeUninit::new(0));
    // SAFETY: every element was just initialised, and `MaybeUninit<u8>` has `u8`'s layout.
    let slice = unsafe { &mut *(std::ptr::from_mut(slice) as *mut [u8]) };
    file.read_exact(slice).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => Error::new(ErrorKind::UnexpectedEof, "the file shrank while being read"),
        _ => e,
    })?;
    // SAFETY: every element was initialised (zeroed, then read into).
    Ok(unsafe { buf.assume_init() })
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_string(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|e| Error::new(ErrorKind::InvalidData, e.utf8_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_fifo_a_device_and_a_folder_are_refused_at_once() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("labels.csv");
        let c = std::ffi::CString::new(fifo.clone().into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = read_regular(&fifo).unwrap_err();
        assert!(err.to_string().contains("a pipe, socket or device"), "{err}");
        assert!(read_regular(Path::new("/dev/zero")).unwrap_err().to_string().contains("device"));
        assert!(read_regular(t.path()).unwrap_err().to_string().contains("a folder"));
        std::fs::write(t.path().join("a.txt"), "x").unwrap();
        assert_eq!(read_regular_string(&t.path().join("a.txt")).unwrap(), "x");
        // The shared reader (models) refuses the same files and reads the same bytes.
        assert!(read_regular_shared(&fifo).unwrap_err().to_string().contains("a pipe, socket or device"));
        assert!(read_regular_shared(Path::new("/dev/zero")).unwrap_err().to_string().contains("device"));
        assert!(read_regular_shared(t.path()).unwrap_err().to_string().contains("a folder"));
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(t.path().join("b.bin"), &bytes).unwrap();
        assert_eq!(&read_regular_shared(&t.path().join("b.bin")).unwrap()[..], &bytes[..]);
        std::fs::write(t.path().join("empty"), b"").unwrap();
        assert!(read_regular_shared(&t.path().join("empty")).unwrap().is_empty());
    }
}
