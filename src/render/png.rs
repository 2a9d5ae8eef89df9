//! Writing overlays as PNG files, with errors that name the path and the fix, and without ever overwriting a file
//! the user did not ask to replace.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// Why a PNG could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("{}: the folder {} does not exist; create it or choose another output path", path.display(), folder.display())]
    NoFolder { path: PathBuf, folder: PathBuf },
    #[error("{}: permission denied; choose a folder you can write to", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{}: the file system is read-only; choose an output path on a writable disk", path.display())]
    ReadOnly { path: PathBuf },
    #[error("{}: is a folder; give a file name such as {}", path.display(), path.join("overlay.png").display())]
    IsFolder { path: PathBuf },
    #[error("{}: cannot write: {source}; check the path and the free disk space", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: no free file name after {tries} tries; clean up the folder or choose another name", path.display())]
    NoFreeName { path: PathBuf, tries: usize },
    #[error("{}: is {what}, not a regular file; camscope only replaces regular files, so choose another output path", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
}

impl PngError {
    fn from_io(path: &Path, source: std::io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            ErrorKind::NotFound => {
                let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
                PngError::NoFolder { path, folder }
            }
            ErrorKind::PermissionDenied => PngError::PermissionDenied { path },
            ErrorKind::ReadOnlyFilesystem => PngError::ReadOnly { path },
            ErrorKind::IsADirectory => PngError::IsFolder { path },
            _ => PngError::Io { path, source },
        }
    }
}

/// Write `img` to `path`, replacing the file if it exists (the user named it). The image goes to a temporary file
/// beside it first and is renamed into place, so a failure never leaves a half-written PNG under that name.
///
/// Only a regular file is replaced: renaming over a symlink would drop the link the user made, and over a device
/// (`/dev/full`, a terminal) would remove a node of the system when run as root.
pub fn write_png(img: &RgbImage, path: &Path) -> Result<(), PngError> {
    check_replaceable(path)?;
    let tmp = temp_path(path);
    let file = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| PngError::from_io(path, e))?;
    let written = encode(img, file).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // Ours to remove: created just above with create_new.
        let _ = std::fs::remove_file(&tmp);
        return Err(PngError::from_io(path, e));
    }
    Ok(())
}

/// `Ok` when `path` is free or a regular file (not following a final symlink).
pub fn check_replaceable(path: &Path) -> Result<(), PngError> {
    match crate::fsutil::non_regular(path) {
        None => Ok(()),
        Some("a folder") => Err(PngError::IsFolder { path: path.to_owned() }),
        Some(what) => Err(PngError::NotRegular { path: path.to_owned(), what }),
    }
}

/// A temporary name in `path`'s folder that stays short whatever the final name's length (a
/// name built from the final one, `.NAME.PID.tmp`, passed the 255-byte limit for legal
/// 240-byte names and failed the write). Hidden, and unique per process and call.
pub fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".camscope-{}-{n}.tmp", std::process::id()))
}

/// Write `img` under `path` or, if that exists, the first free name of `name-1.png`, `name-2.png`, …; returns the
/// path written. Creation is atomic (`create_new`), so a file appearing meanwhile is never overwritten.
pub fn write_png_new(img: &RgbImage, path: &Path) -> Result<PathBuf, PngError> {
    const TRIES: usize = 10_000;
    for candidate in candidates(path).take(TRIES) {
        match OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(file) => {
                if let Err(e) = encode(img, file) {
                    let _ = std::fs::remove_file(&candidate);
                    return Err(PngError::from_io(&candidate, e));
                }
                return Ok(candidate);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(PngError::from_io(&candidate, e)),
        }
    }
    Err(PngError::NoFreeName { path: path.to_owned(), tries: TRIES })
}

/// The first of `path`, `stem-1.ext`, `stem-2.ext`, … that does not exist now. Advisory (another process may take
/// it before you write); [`write_png_new`] is the race-free way to write.
pub fn fresh_path(path: &Path) -> PathBuf {
    candidates(path).find(|p| !p.exists() && p.symlink_metadata().is_err()).expect("candidates never end")
}

/// `path`, then `stem-1.ext`, `stem-2.ext`, … in the same folder (`stem-1` when there is no extension).
fn candidates(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
    std::iter::once(path.to_owned()).chain((1..).map(move |i| {
        let name = match &ext {
            Some(ext) => format!("{stem}-{i}.{ext}"),
            None => format!("{stem}-{i}"),
        };
        path.with_file_name(name)
    }))
}

/// Encode `img` as PNG bytes in memory, for writers that place the file themselves (the
/// crash-safe output folders of `batch` and `triage`).
pub fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8)
        .expect("an RGB8 image of its own size encodes into memory");
    out
}

/// Whether `bytes` are a whole PNG: the signature, an IHDR first, every chunk's CRC right,
/// and an IEND. What a resumed run asks of an output of an earlier one (a user may have
/// truncated, damaged or replaced it since; camscope's own writes are atomic): the same
/// answer as decoding it for a file cut or damaged anywhere, at a CRC's cost instead of an
/// inflate's, which a rerun of a million-image batch pays per overlay.
pub fn is_whole(bytes: &[u8]) -> bool {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let Some(mut rest) = bytes.strip_prefix(SIGNATURE) else { return false };
    let mut first = true;
    loop {
        if rest.len() < 12 {
            return false;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(chunk) = rest.get(4..8 + len) else { return false };
        let Some(crc) = rest.get(8 + len..12 + len) else { return false };
        if crc32fast::hash(chunk).to_be_bytes() != crc {
            return false;
        }
        let kind = &chunk[..4];
        if first && kind != b"IHDR" {
            return false;
        }
        first = false;
        if kind == b"IEND" {
            return true;
        }
        rest = &rest[12 + len..];
    }
}

/// The longest a PNG with this signature and IHDR (`head`, the file's first 33 bytes) can
/// be: its rows stored uncompressed (deflate's stored blocks, the worst case of any encoder)
/// plus generous room for chunk and block overhead. A file longer than that is not such a
/// PNG (something was appended, or put in its place), and a rerun need not read it whole to
/// say so: a user's 10 GB file where an overlay was would have been read into memory.
/// `None` when `head` is no PNG signature and IHDR.
pub fn longest(head: &[u8]) -> Option<u64> {
    let ihdr = head.strip_prefix(b"\x89PNG\r\n\x1a\n")?.get(..25)?;
    if &ihdr[4..8] != b"IHDR" {
        return None;
    }
    let be = |i: usize| u64::from(u32::from_be_bytes([ihdr[i], ihdr[i + 1], ihdr[i + 2], ihdr[i + 3]]));
    let (width, height, depth, colour) = (be(8), be(12), u64::from(ihdr[16]), ihdr[17]);
    let channels = match colour {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        6 => 4,
        _ => return None,
    };
    let raw = height * (1 + (width * channels * depth).div_ceil(8));
    Some(raw + raw / 64 + (64 << 10))
}

fn encode(img: &RgbImage, file: File) -> std::io::Result<()> {
    let mut out = BufWriter::new(file);
    PngEncoder::new(&mut out).write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8).map_err(
        |e| match e {
            image::ImageError::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        },
    )?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

#[cfg(test)]
mod tests {

    /// No PNG of a given size is longer than [`longest`] says, even of noise (incompressible);
    /// one with bytes appended past that is.
    #[test]
    fn longest_bounds_a_png_of_noise_and_not_one_with_bytes_appended() {
        let mut s = 1u32;
        let noise = RgbImage::from_fn(301, 157, |_, _| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            image::Rgb([(s >> 24) as u8, (s >> 16) as u8, (s >> 8) as u8])
        });
        let png = encode_png(&noise);
        let max = longest(&png[..33]).expect("a PNG head");
        assert!(png.len() as u64 > 301 * 157 * 3 && png.len() as u64 <= max, "{} > {max}", png.len());
        assert!(max < 2 * 301 * 157 * 3, "a bound, not a guess: {max}");
        assert_eq!(longest(b"GIF89a..."), None);
        let mut grey = png[..33].to_vec();
        grey[25] = 0; // colour type: greyscale, a third of the bytes
        assert!(longest(&grey).unwrap() < max);
    }

    #[test]
    fn a_whole_png_is_whole_and_one_cut_or_damaged_anywhere_is_not() {
        let img = RgbImage::from_fn(37, 23, |x, y| image::Rgb([x as u8 * 7, y as u8 * 11, (x * y) as u8]));
        let png = encode_png(&img);
        assert!(is_whole(&png));
        for cut in [0, 7, 8, 20, 33, png.len() / 2, png.len() - 1] {
            assert!(!is_whole(&png[..cut]), "cut at {cut}");
        }
        for at in [0, 12, 30, png.len() / 2, png.len() - 5] {
            let mut bad = png.clone();
            bad[at] ^= 0x10;
            assert!(!is_whole(&bad), "byte {at} flipped");
        }
        assert!(!is_whole(b"not a png at all"));
    }

    use image::Rgb;
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("camscope-png-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn img(v: u8) -> RgbImage {
        RgbImage::from_fn(3, 2, |x, y| Rgb([v, x as u8, y as u8]))
    }

    #[test]
    fn writes_a_readable_png_and_replaces_on_request() {
        let dir = scratch("write");
        let path = dir.join("a.png");
        write_png(&img(1), &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), img(1));
        write_png(&img(2), &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), img(2));
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.png")], "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_files_never_overwrite() {
        let dir = scratch("new");
        let path = dir.join("cat.png");
        std::fs::write(&path, b"the user's file").unwrap();
        std::fs::write(dir.join("cat-1.png"), b"another").unwrap();
        assert_eq!(fresh_path(&path), dir.join("cat-2.png"));
        let written = write_png_new(&img(3), &path).unwrap();
        assert_eq!(written, dir.join("cat-2.png"));
        assert_eq!(std::fs::read(&path).unwrap(), b"the user's file");
        assert_eq!(image::open(&written).unwrap().to_rgb8(), img(3));
        assert_eq!(fresh_path(&dir.join("notes")), dir.join("notes"));
        std::fs::write(dir.join("notes"), b"").unwrap();
        assert_eq!(fresh_path(&dir.join("notes")), dir.join("notes-1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_regular_files_are_replaced_and_long_names_fit() {
        let dir = scratch("special");
        // A 240-byte name is legal; the temporary name must not push it past 255 bytes.
        let long = dir.join(format!("{}.png", "n".repeat(236)));
        write_png(&img(4), &long).unwrap();
        assert_eq!(image::open(&long).unwrap().to_rgb8(), img(4));
        #[cfg(unix)]
        {
            let target = dir.join("target.png");
            std::fs::write(&target, b"kept").unwrap();
            let link = dir.join("link.png");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let err = write_png(&img(5), &link).unwrap_err();
            assert!(matches!(err, PngError::NotRegular { .. }) && err.to_string().contains("symbolic link"), "{err}");
            assert!(link.symlink_metadata().unwrap().file_type().is_symlink(), "the link is left alone");
            assert_eq!(std::fs::read(&target).unwrap(), b"kept");
            let err = write_png(&img(5), Path::new("/dev/null")).unwrap_err();
            assert!(err.to_string().contains("/dev/null: is a device, pipe or socket"), "{err}");
            assert!(Path::new("/dev/null").symlink_metadata().unwrap().file_type().is_char_device());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_path_and_the_fix() {
        let dir = scratch("errors");
        let missing = dir.join("no/such/folder/x.png");
        let err = write_png(&img(0), &missing).unwrap_err();
        assert!(matches!(err, PngError::NoFolder { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("x.png") && msg.contains("does not exist") && msg.contains("create it"), "{msg}");
        let err = write_png_new(&img(0), &missing).unwrap_err();
        assert!(matches!(err, PngError::NoFolder { .. }), "{err:?}");
        let err = write_png(&img(0), &dir).unwrap_err();
        assert!(matches!(err, PngError::IsFolder { .. }), "{err:?}");
        assert!(err.to_string().contains("overlay.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn io_errors_map_to_their_fix() {
        // Mapping tested directly: these tests run as root in CI, where permission bits do not refuse writes.
        let path = Path::new("out/x.png");
        let err = PngError::from_io(path, ErrorKind::PermissionDenied.into());
        assert!(matches!(err, PngError::PermissionDenied { .. }));
        assert_eq!(err.to_string(), "out/x.png: permission denied; choose a folder you can write to");
        let err = PngError::from_io(path, ErrorKind::ReadOnlyFilesystem.into());
        assert!(err.to_string().contains("read-only"), "{err}");
        let err = PngError::from_io(Path::new("x.png"), ErrorKind::NotFound.into());
        assert_eq!(err.to_string(), "x.png: the folder . does not exist; create it or choose another output path");
        let err = PngError::from_io(path, ErrorKind::StorageFull.into());
        assert!(matches!(err, PngError::Io { .. }) && err.to_string().contains("free disk space"), "{err}");
    }
}
