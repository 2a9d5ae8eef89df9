//! From an image file to the tensor a model expects: decode, crop/resize, normalise.
//!
//! Decoding is the only I/O here; everything after it is a pure function of the pixels and
//! the model card's [`InputSpec`], so the same code serves the CLI, the TUI and the tests.
//! Every reader of a photo (scoring, maps, overlays, the inspector's previews, triage,
//! bench) decodes through [`load_image`], so they all see the same upright pixels.

pub mod reduced_jpeg;
pub mod resample;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage, metadata::Orientation};
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};

use crate::model::{InputSpec, Layout, ResizePolicy};

/// The pixel limit when none is given: 178,956,970 pixels, which is what image's default
/// 512 MiB allocation cap allowed for an 8-bit RGB image before (512 Mi / 3), and Pillow's
/// `DecompressionBombError` threshold (2 x `MAX_IMAGE_PIXELS`). A 12000x9000 photo fits.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// How a file is turned into pixels. Built from the model card and the command line by
/// [`InputSpec::decode_options`](crate::model::InputSpec::decode_options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Turn the pixels upright as the file's EXIF orientation says, as Pillow's
    /// `ImageOps.exif_transpose` does (phones store most photos sideways with a tag).
    pub exif: bool,
    /// Use a JPEG that ends early (the decoder fills the missing part with grey), with a
    /// [`Decoded::warnings`] entry, instead of refusing it.
    pub allow_truncated: bool,
    /// Refuse images with more pixels than this before decoding them (decompression bombs).
    pub max_pixels: u64,
    /// Decode a JPEG at 1/2, 1/4 or 1/8 scale when the crop for this model still gets at
    /// least twice the model's size from it (Pillow's `draft`, with `thumbnail`'s reducing
    /// gap): a 12-MP photo then skips most of the IDCT, colour conversion and resize work,
    /// and the exact resize that follows only ever shrinks. `None` (`--exact-decode`, or no
    /// model to aim at) decodes every pixel.
    pub draft: Option<Draft>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { exif: true, allow_truncated: false, max_pixels: DEFAULT_MAX_PIXELS, draft: None }
    }
}

/// How many times the model's size the crop of a reduced decode must still have (Pillow's
/// `thumbnail(reducing_gap=2.0)`): the bicubic resize after it then averages at least 2x2
/// decoded pixels per model pixel instead of resampling 8x8 block means. On the nine samples
/// as 6-12 MP JPEGs, a gap of 1 (1/8 scale) flipped one near-tie top-1 (astronaut) and gave
/// Grad-CAM maps up to 0.12 apart; a gap of 2 (1/4 scale) kept all nine and 0.07, for the
/// same decode time (entropy decoding, the same at every scale, dominates).
const REDUCING_GAP: u32 = 2;

/// What a reduced-scale decode must still deliver: the model's input size and how the crop
/// box is taken (see [`crop_box`]), so the box in the reduced image is at least that size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draft {
    pub width: u32,
    pub height: u32,
    pub resize: ResizePolicy,
    pub crop_fraction: f64,
}

impl Draft {
    /// The target of [`InputSpec`]'s crop and resize.
    pub fn for_spec(spec: &InputSpec) -> Self {
        Self { width: spec.width, height: spec.height, resize: spec.resize, crop_fraction: spec.crop_fraction }
    }

    /// The largest reduction (8, 4, 2, or 1 for none) of an upright `width` x `height` image
    /// whose crop box is still at least twice the model's size in both directions
    /// ([`REDUCING_GAP`]), so the exact resize after it only shrinks, by 2x or more.
    pub fn reduction(&self, width: u32, height: u32) -> u32 {
        [8, 4, 2]
            .into_iter()
            .find(|&d| {
                let (_, _, cw, ch) = self.crop_box(width.div_ceil(d), height.div_ceil(d));
                cw >= REDUCING_GAP * self.width && ch >= REDUCING_GAP * self.height
            })
            .unwrap_or(1)
    }

    fn crop_box(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        crop_box_to(width, height, self.width, self.height, self.resize, self.crop_fraction)
    }
}

/// A decoded image and what the caller must pass on to the user about it.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub rgb: RgbImage,
    /// One line each, naming the file (e.g. a truncated JPEG accepted with
    /// [`DecodeOptions::allow_truncated`]). Every output that shows results of this image
    /// should show these too: the scores may be wrong.
    pub warnings: Vec<String>,
}

/// Why an image could not be turned into pixels.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: no such file; check the path", path.display())]
    Missing { path: PathBuf },
    #[error("{}: a symbolic link to {}, which does not exist; fix the link or pass the image itself", path.display(), target.display())]
    BrokenLink { path: PathBuf, target: PathBuf },
    #[error("{}: a symbolic link that loops (it leads back to itself); fix or remove the link", path.display())]
    LinkLoop { path: PathBuf },
    #[error("{}: cannot read: {source}; check the file's permissions", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: not an image camscope can read ({detail}); use PNG, JPEG, GIF, BMP, TIFF, WebP, PNM or ICO", path.display())]
    NotAnImage { path: PathBuf, detail: String },
    #[error("{}: unsupported TIFF sample format ({detail}); convert it to 8- or 16-bit integer samples", path.display())]
    TiffSamples { path: PathBuf, detail: String },
    #[error("{}: corrupt or truncated image ({detail}); re-export or replace the file", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: truncated JPEG ({detail}); re-export or replace the file, or pass --allow-truncated to use the part that is there", path.display())]
    Truncated { path: PathBuf, detail: String },
    #[error("{}: image is {width}x{height} ({} pixels), over the limit of {limit} pixels that guards against decompression bombs; if you trust the file, pass --max-pixels {}", path.display(), u64::from(*width) * u64::from(*height), u64::from(*width) * u64::from(*height))]
    TooLarge { path: PathBuf, width: u32, height: u32, limit: u64 },
    #[error("{}: is a folder, not an image; pass image files, or give the folder to `camscope batch`, `camscope triage` or the inspector", path.display())]
    IsFolder { path: PathBuf },
    #[error("{}: not a regular file (a pipe, socket or device); pass an image file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: image is {width}x{height}, too small to use; it needs at least 1x1 pixels", path.display())]
    Empty { path: PathBuf, width: u32, height: u32 },
}

/// File extensions treated as images when scanning folders (lower case).
pub const IMAGE_EXTENSIONS: &[&str] =
    &["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "pnm", "ppm", "pgm", "pbm", "ico"];

/// Whether a path looks like an image by its extension (cheap: no I/O).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decode a file into upright 8-bit RGB, dropping any warnings (see [`load_image`]).
pub fn load_rgb(path: &Path, opts: &DecodeOptions) -> Result<RgbImage, ImageError> {
    load_image(path, opts).map(|d| d.rgb)
}

/// Decode a file into 8-bit RGB. Like Pillow's `ImageOps.exif_transpose` then
/// `convert("RGB")`: the EXIF orientation (JPEG, PNG eXIf, TIFF, WebP) is applied, grey is
/// replicated, alpha dropped. Orientation is applied because the photo a person looks at is
/// the upright one, and so were the images of nearly every training set (torchvision's and
/// timm's loaders go through Pillow, and datasets are usually stored upright); a phone photo
/// read sideways is a different input and gets different scores. A model trained on the raw
/// stored orientation says so in its card (`[input] ignore_exif = true`), or the user passes
/// `--ignore-exif`.
pub fn load_image(path: &Path, opts: &DecodeOptions) -> Result<Decoded, ImageError> {
    let io_err = |source: std::io::Error| classify_io(path, source);
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(ImageError::IsFolder { path: path.to_owned() });
    }
    // Reading a FIFO named `x.png` would block forever, waiting for a writer.
    if !meta.is_file() {
        return Err(ImageError::NotAFile { path: path.to_owned() });
    }
    let bytes = crate::fsutil::read_regular(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => ImageError::NotAFile { path: path.to_owned() },
        _ => io_err(e),
    })?;
    decode_image(&bytes, path, opts)
}

/// An I/O error on `path` in the words of the user's mistake: a missing file, a dangling or
/// looping symbolic link (both read as "not found" / "too many links" to the OS), or else
/// permissions.
fn classify_io(path: &Path, source: std::io::Error) -> ImageError {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    #[cfg(unix)]
    if source.raw_os_error() == Some(libc::ELOOP) {
        return ImageError::LinkLoop { path: path.to_owned() };
    }
    match source.kind() {
        std::io::ErrorKind::NotFound if link => {
            ImageError::BrokenLink { path: path.to_owned(), target: std::fs::read_link(path).unwrap_or_default() }
        }
        std::io::ErrorKind::NotFound => ImageError::Missing { path: path.to_owned() },
        _ => ImageError::Unreadable { path: path.to_owned(), source },
    }
}

/// Decode bytes (named by `path` in errors) into upright 8-bit RGB, dropping any warnings.
pub fn decode_rgb(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<RgbImage, ImageError> {
    decode_image(bytes, path, opts).map(|d| d.rgb)
}

/// Decode bytes (named by `path` in errors) into upright 8-bit RGB (see [`load_image`]).
pub fn decode_image(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<Decoded, ImageError> {
    let format = image::guess_format(bytes).map_err(|_| ImageError::NotAnImage {
        path: path.to_owned(),
        detail: if bytes.is_empty() { "the file is empty".into() } else { "unrecognised file signature".into() },
    })?;
    let mut warnings = Vec::new();
    let mut truncated = false;
    // image's JPEG decoder (zune-jpeg, lenient mode) fills a missing end with grey and
    // reports success, so a half-downloaded photo would be scored as if it were whole.
    if format == ImageFormat::Jpeg {
        if let Some(detail) = jpeg_truncation(bytes) {
            truncated = true;
            if !opts.allow_truncated {
                return Err(ImageError::Truncated { path: path.to_owned(), detail });
            }
            warnings.push(format!(
                "{}: truncated JPEG ({detail}), used anyway (--allow-truncated): the missing part is grey, so scores and maps may be wrong",
                path.display()
            ));
        }
    }
    // A large JPEG decoded at reduced scale is read without image's decoder, which copies the
    // whole file (3.9 MB for a 12-MP photo) and parses its header twice: 2 of the 36 ms from a
    // file to a tensor. Its frame header gives the size and its EXIF the orientation, as image
    // reads them; anything short of a reduced image takes the path below, as before. (So a
    // JPEG whose header zune-jpeg refuses but jpeg-decoder reads is no longer an error here.)
    // A truncated JPEG keeps zune-jpeg's grey fill (jpeg-decoder would refuse it).
    if let (ImageFormat::Jpeg, false, Some(draft)) = (format, truncated, opts.draft) {
        if let Some(rgb) = draft_jpeg(bytes, opts, draft) {
            return Ok(Decoded { rgb, warnings });
        }
    }
    let convert = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) if format == ImageFormat::Tiff => {
            ImageError::TiffSamples { path: path.to_owned(), detail: u.to_string() }
        }
        image::ImageError::Unsupported(u) => ImageError::NotAnImage { path: path.to_owned(), detail: u.to_string() },
        other => ImageError::Corrupt { path: path.to_owned(), detail: other.to_string() },
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    // The pixel count is checked below, from the header, before anything is allocated;
    // image's own 512 MiB cap would otherwise refuse first, as "corrupt".
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(convert)?;
    let (width, height) = decoder.dimensions();
    let too_large = || ImageError::TooLarge { path: path.to_owned(), width, height, limit: opts.max_pixels };
    if u64::from(width) * u64::from(height) > opts.max_pixels {
        return Err(too_large());
    }
    let mut limits = image::Limits::no_limits();
    // Room for the largest sample type (32-bit float RGBA) at the header's own pixel count,
    // plus decoder scratch: a 204-byte GIF whose frame claims 12683x26645 inside a 24x16
    // screen made the decoder ask for 1.35 GB (found by the fuzz soak).
    let own = (u64::from(width) * u64::from(height)).saturating_mul(16).saturating_add(64 << 20);
    limits.max_alloc = Some(own.min(opts.max_pixels.saturating_mul(8).max(512 << 20)));
    decoder.set_limits(limits).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(),
        other => convert(other),
    })?;
    // A malformed EXIF block leaves the image as stored (Pillow's exif_transpose does too).
    let orientation =
        if opts.exif { decoder.orientation().unwrap_or(Orientation::NoTransforms) } else { Orientation::NoTransforms };
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        // The header's size passed the pixel limit, so the decoder wanted more than the
        // image it declares: a malformed file, not a large one.
        image::ImageError::Limits(l) => ImageError::Corrupt {
            path: path.to_owned(),
            detail: format!("it needs more memory than its {width}x{height} pixels ({l})"),
        },
        other => convert(other),
    })?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageError::Empty { path: path.to_owned(), width: img.width(), height: img.height() });
    }
    Ok(Decoded { rgb: img.to_rgb8(), warnings })
}

/// A JPEG decoded at reduced scale ([`Draft::reduction`] of its upright size) and turned
/// upright as its EXIF says (image's reading of it: the last APP1 `Exif` segment before the
/// scan). `None`, for the full decode to take over, when it has no frame header, is over the
/// pixel limit, is too small to reduce, or is not one [`decode_jpeg_reduced`] reads.
fn draft_jpeg(bytes: &[u8], opts: &DecodeOptions, draft: Draft) -> Option<RgbImage> {
    let frame = jpeg_frame(bytes)?;
    let pixels = u64::from(frame.width) * u64::from(frame.height);
    if pixels == 0 || pixels > opts.max_pixels {
        return None;
    }
    // A malformed EXIF block leaves the image as stored (Pillow's exif_transpose does too).
    let orientation = match jpeg_exif(bytes) {
        Some(exif) if opts.exif => Orientation::from_exif_chunk(exif).unwrap_or(Orientation::NoTransforms),
        _ => Orientation::NoTransforms,
    };
    let swaps = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    let (upright_w, upright_h) = if swaps { (frame.height, frame.width) } else { (frame.width, frame.height) };
    let reduction = draft.reduction(upright_w, upright_h);
    if reduction == 1 {
        return None;
    }
    let mut img = DynamicImage::ImageRgb8(decode_jpeg_reduced(bytes, &frame, reduction)?);
    img.apply_orientation(orientation);
    Some(img.into_rgb8())
}

/// A JPEG with frame header `frame` decoded at 1/`reduction` scale in the DCT domain (each 8x8
/// block's IDCT yields 4x4, 2x2 or 1x1 pixels, like libjpeg's `scale_denom` that Pillow's
/// `draft` uses), as stored (not turned upright). Sequential JPEGs (nearly every photo) go
/// through [`reduced_jpeg`], camscope's own decoder for this, 1.6x as fast as jpeg-decoder;
/// progressive ones, and any it declines, through jpeg-decoder. `None` when the file is not
/// one jpeg-decoder scales the same way zune-jpeg reads it (CMYK, 12-bit, lossless or
/// arithmetic coding, or an error): the caller then decodes every pixel, so colours and error
/// messages stay those of the full decode.
fn decode_jpeg_reduced(bytes: &[u8], frame: &JpegFrame, reduction: u32) -> Option<RgbImage> {
    // SOF0-2: Huffman-coded baseline, extended and progressive; 8-bit grey or YCbCr/RGB.
    if !matches!(frame.marker, 0xC0..=0xC2) || frame.precision != 8 || !matches!(frame.components, 1 | 3) {
        return None;
    }
    let (width, height) = (frame.width, frame.height);
    if frame.marker != 0xC2 {
        // Declined (e.g. components in separate scans) or corrupt: jpeg-decoder decides.
        if let Ok(rgb) = reduced_jpeg::decode(bytes, reduction) {
            return Some(rgb);
        }
    }
    let (want_w, want_h) = (width.div_ceil(reduction), height.div_ceil(reduction));
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let (w, h) = decoder.scale(u16::try_from(want_w).ok()?, u16::try_from(want_h).ok()?).ok()?;
    if (u32::from(w), u32::from(h)) != (want_w, want_h) {
        return None;
    }
    let pixels = decoder.decode().ok()?;
    let format = decoder.info()?.pixel_format;
    match format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(want_w, want_h, pixels),
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(want_w, want_h, pixels).map(|g| DynamicImage::ImageLuma8(g).into_rgb8())
        }
        _ => None,
    }
}

/// The frame header (SOFn) of a JPEG: which coding process, sample precision, size and
/// number of components.
struct JpegFrame {
    marker: u8,
    precision: u8,
    width: u32,
    height: u32,
    components: u8,
}

/// The marker segments of a JPEG's header, up to its first scan: `(marker, payload)`, the
/// payload without its length field. Stops early at data that is no segment.
fn jpeg_header_segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut i = 2; // after SOI
    std::iter::from_fn(move || {
        loop {
            while *bytes.get(i)? != 0xFF {
                i += 1;
            }
            while *bytes.get(i)? == 0xFF {
                i += 1;
            }
            let marker = bytes[i];
            i += 1;
            if matches!(marker, 0x00 | 0x01 | 0xD0..=0xD8) {
                continue;
            }
            if marker == 0xDA || marker == 0xD9 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
            let payload = bytes.get(i + 2..i + len.max(2)).unwrap_or(&bytes[(i + 2).min(bytes.len())..]);
            i += len.max(2);
            return Some((marker, payload));
        }
    })
}

/// Reads the first frame header by walking the marker segments before it (no entropy-coded
/// data comes before a frame header). Checked here rather than asked of jpeg-decoder,
/// which panics on component counts it does not know.
fn jpeg_frame(bytes: &[u8]) -> Option<JpegFrame> {
    // SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC).
    let (marker, h) =
        jpeg_header_segments(bytes).find(|&(m, _)| matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC))?;
    let h = h.get(..6)?;
    Some(JpegFrame {
        marker,
        precision: h[0],
        height: u32::from(u16::from_be_bytes([h[1], h[2]])),
        width: u32::from(u16::from_be_bytes([h[3], h[4]])),
        components: h[5],
    })
}

/// The EXIF block of a JPEG as image 0.25 (zune-jpeg) finds it: the payload after `Exif\0\0`
/// of the last APP1 segment before the scan that starts so and has more than those six bytes.
fn jpeg_exif(bytes: &[u8]) -> Option<&[u8]> {
    jpeg_header_segments(bytes)
        .filter(|&(m, p)| m == 0xE1 && p.len() > 6 && p.starts_with(b"Exif\0\0"))
        .last()
        .map(|(_, p)| &p[6..])
}

/// Why a JPEG's bytes end before its end-of-image marker, if they do: walks the marker
/// segments by their lengths and the compressed data to the next marker, as a decoder
/// reads them. Data after the marker (some cameras append a second image) is fine; an
/// EXIF thumbnail's own markers sit inside its segment and are skipped with it.
pub fn jpeg_truncation(bytes: &[u8]) -> Option<String> {
    let n = bytes.len();
    let ends = |what: &str| Some(format!("the file ends after {n} bytes, {what}, before the end-of-image marker"));
    let mut i = 2; // after SOI
    let mut scans = 0;
    loop {
        // Skip anything up to the next marker (libjpeg warns about such bytes and goes on).
        match memchr::memchr(0xFF, &bytes[i.min(n)..]) {
            Some(k) => i += k,
            None => return ends(if scans > 0 { "after the compressed image data" } else { "in the header" }),
        }
        while i < n && bytes[i] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = bytes.get(i) else {
            return ends("at a marker");
        };
        i += 1;
        match marker {
            0xD9 => return None,                   // EOI
            0x00 | 0x01 | 0xD0..=0xD8 => continue, // stuffed zero, TEM, RSTn, SOI: no length
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return ends("in a segment header");
        };
        if i + len > n {
            return ends(if marker == 0xDA { "in a scan header" } else { "inside a header segment" });
        }
        i += len.max(2);
        if marker == 0xDA {
            scans += 1;
            // Compressed data runs to the next marker that is not a stuffed 0xFF00 or a
            // restart marker (memchr: 0.3 ms for a 3.9 MB photo, a byte loop took 1.5 ms).
            loop {
                let Some(k) = memchr::memchr(0xFF, &bytes[i..]) else {
                    return ends("inside the compressed image data");
                };
                let mut j = i + k + 1;
                while j < n && bytes[j] == 0xFF {
                    j += 1;
                }
                match bytes.get(j) {
                    None => return ends("inside the compressed image data"),
                    Some(0x00 | 0xD0..=0xD7) => i = j + 1,
                    Some(_) => {
                        i = j - 1;
                        break;
                    }
                }
            }
        }
    }
}

/// The region of the source image the model sees, as `(left, top, width, height)`.
///
/// `CenterCrop` takes the largest centred box with the model's aspect ratio (offsets
/// floored, like the export script's `(w - s) // 2`), shrunk by `crop_fraction`.
pub fn crop_box(width: u32, height: u32, spec: &InputSpec) -> (u32, u32, u32, u32) {
    crop_box_to(width, height, spec.width, spec.height, spec.resize, spec.crop_fraction)
}

/// [`crop_box`] for a `target_w` x `target_h` input: shared with [`Draft`], which must
/// predict the box of the reduced image exactly.
fn crop_box_to(
    width: u32,
    height: u32,
    target_w: u32,
    target_h: u32,
    resize: ResizePolicy,
    crop_fraction: f64,
) -> (u32, u32, u32, u32) {
    match resize {
        ResizePolicy::Stretch => (0, 0, width, height),
        ResizePolicy::CenterCrop => {
            let target = f64::from(target_w) / f64::from(target_h);
            let (mut cw, mut ch) = if f64::from(width) / f64::from(height) > target {
                (((f64::from(height) * target).round() as u32).max(1), height)
            } else {
                (width, ((f64::from(width) / target).round() as u32).max(1))
            };
            if crop_fraction < 1.0 {
                cw = ((f64::from(cw) * crop_fraction).round() as u32).max(1);
                ch = ((f64::from(ch) * crop_fraction).round() as u32).max(1);
            }
            ((width - cw) / 2, (height - ch) / 2, cw, ch)
        }
    }
}

/// Crop and resize to the model's input size: the pixels the model actually sees. The TUI
/// and overlays use this same image so the heatmap lines up with what was classified.
pub fn model_view(img: &RgbImage, spec: &InputSpec) -> RgbImage {
    let region = crop_box(img.width(), img.height(), spec);
    resample::resize_region(img, region, spec.width, spec.height, spec.interpolation)
}

/// Normalise model-sized pixels into one sample: `(x * scale - mean) / std` per channel,
/// laid out as CHW (NCHW models) or HWC (NHWC models). Computed in f32, in the same order
/// of operations as NumPy's `(x - mean) / std`, so it matches Python references exactly.
pub fn normalize(view: &RgbImage, spec: &InputSpec) -> Array3<f32> {
    let (w, h) = (view.width() as usize, view.height() as usize);
    let px = view.as_raw();
    let mean = spec.mean.map(|m| m as f32);
    let std = spec.std.map(|s| s as f32);
    let scale = spec.pixel_scale as f32;
    let value = |v: u8, c: usize| {
        let x = f32::from(v);
        let x = if scale == 1.0 { x } else { x * scale };
        (x - mean[c]) / std[c]
    };
    // Straight loops over the raw buffers: this runs for every image of a triage scan, on the
    // core ONNX Runtime is not using.
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    match spec.layout {
        Layout::Nchw => {
            let (r, rest) = out.split_at_mut(n);
            let (g, b) = rest.split_at_mut(n);
            for (i, p) in px.chunks_exact(3).enumerate() {
                r[i] = value(p[0], 0);
                g[i] = value(p[1], 1);
                b[i] = value(p[2], 2);
            }
            Array3::from_shape_vec((3, h, w), out).expect("3 planes of h x w")
        }
        Layout::Nhwc => {
            for (o, (i, &v)) in out.iter_mut().zip(px.iter().enumerate()) {
                *o = value(v, i % 3);
            }
            Array3::from_shape_vec((h, w, 3), out).expect("h x w pixels of 3 channels")
        }
    }
}

/// Stack samples into a batch tensor (N first).
pub fn batch(samples: &[ArrayView3<'_, f32>]) -> Array4<f32> {
    let views: Vec<_> = samples.iter().map(|s| s.view().insert_axis(Axis(0))).collect();
    ndarray::concatenate(Axis(0), &views).expect("samples share one shape")
}

/// `x` with zero samples appended up to `rows` samples (`x` itself when it has that many).
/// On CUDA every new batch size makes cuDNN plan each convolution again (0.4-0.9 s for the
/// bundled model on an H200, each time the size alternates), so a short last batch is padded
/// to the usual size and the extra rows' outputs are dropped.
pub fn pad_batch(x: ArrayView4<'_, f32>, rows: usize) -> ndarray::CowArray<'_, f32, ndarray::Ix4> {
    let (n, a, b, c) = x.dim();
    if n >= rows {
        return x.into();
    }
    let mut padded = Array4::zeros((rows, a, b, c));
    padded.slice_mut(ndarray::s![..n, .., .., ..]).assign(&x);
    padded.into()
}

/// Decode (with the card's and command line's [`DecodeOptions`]), crop, resize and normalise
/// one file. Warnings are dropped: callers that show results per image use [`load_image`].
pub fn load_tensor(path: &Path, spec: &InputSpec) -> Result<Array3<f32>, ImageError> {
    Ok(normalize(&model_view(&load_rgb(path, &spec.decode_options())?, spec), spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
    }

    fn jpeg() -> Vec<u8> {
        std::fs::read(data("exif/orient-1.jpg")).unwrap()
    }

    #[test]
    fn a_whole_jpeg_is_not_truncated_even_with_data_after_its_end() {
        assert_eq!(jpeg_truncation(&jpeg()), None);
        let mut appended = jpeg();
        appended.extend_from_slice(b"\xff\xd8 a second image some cameras append \xff\xd9 and more");
        assert_eq!(jpeg_truncation(&appended), None);
        let big = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/palace/china.jpg")).unwrap();
        assert_eq!(jpeg_truncation(&big), None);
    }

    #[test]
    fn a_jpeg_cut_anywhere_is_truncated() {
        let whole = jpeg();
        // In the EXIF segment, the tables, the scan header and the compressed data; and the
        // last two bytes (only the end-of-image marker missing).
        for cut in [3, 20, 200, 700, whole.len() / 2, whole.len() - 10, whole.len() - 2, whole.len() - 1] {
            let detail = jpeg_truncation(&whole[..cut]).unwrap_or_else(|| panic!("cut at {cut} not seen"));
            assert!(detail.contains(&format!("after {cut} bytes")), "{detail}");
        }
    }

    #[test]
    fn a_truncated_jpeg_is_refused_unless_allowed_and_then_warned_about() {
        // image's zune-jpeg decodes this without an error, the missing rows grey.
        let whole = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/palace/china.jpg")).unwrap();
        let cut = &whole[..whole.len() / 2];
        let path = Path::new("half.jpg");
        let err = decode_image(cut, path, &DecodeOptions::default()).unwrap_err();
        assert!(matches!(err, ImageError::Truncated { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("half.jpg: truncated JPEG") && msg.contains("--allow-truncated"), "{msg}");
        let opts = DecodeOptions { allow_truncated: true, ..DecodeOptions::default() };
        let d = decode_image(cut, path, &opts).unwrap();
        assert_eq!(d.rgb.dimensions(), decode_rgb(&whole, path, &DecodeOptions::default()).unwrap().dimensions());
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].starts_with("half.jpg: truncated JPEG"), "{:?}", d.warnings);
        assert!(decode_image(&whole, path, &opts).unwrap().warnings.is_empty());
    }

    /// A JPEG whose frame header claims `w` x `h` (JPEG headers carry no checksum).
    fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
        let mut b = jpeg();
        let sof = b.windows(2).position(|m| m == [0xFF, 0xC0]).expect("a baseline JPEG");
        b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        b
    }

    #[test]
    fn an_image_over_the_pixel_limit_says_so_and_names_the_option() {
        let bomb = jpeg_claiming(60000, 60000);
        let err = decode_rgb(&bomb, Path::new("bomb.jpg"), &DecodeOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("bomb.jpg: image is 60000x60000 (3600000000 pixels)"), "{err}");
        assert!(err.contains("limit of 178956970") && err.contains("--max-pixels 3600000000"), "{err}");
        assert!(!err.contains("corrupt"), "{err}");
        let small = DecodeOptions { max_pixels: 1000, ..DecodeOptions::default() };
        let err = decode_rgb(&jpeg(), Path::new("x.jpg"), &small).unwrap_err().to_string();
        assert!(err.contains("45x30 (1350 pixels)") && err.contains("--max-pixels 1350"), "{err}");
        let exact = DecodeOptions { max_pixels: 1350, ..DecodeOptions::default() };
        assert!(decode_rgb(&jpeg(), Path::new("x.jpg"), &exact).is_ok());
    }

    #[test]
    fn a_folder_or_a_link_that_goes_nowhere_is_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_rgb(dir.path(), &DecodeOptions::default()).unwrap_err();
        assert!(matches!(err, ImageError::IsFolder { .. }) && err.to_string().contains("is a folder"), "{err}");
        #[cfg(unix)]
        {
            let a = dir.path().join("a.jpg");
            let b = dir.path().join("b.jpg");
            std::os::unix::fs::symlink(&b, &a).unwrap();
            std::os::unix::fs::symlink(&a, &b).unwrap();
            let err = load_rgb(&a, &DecodeOptions::default()).unwrap_err().to_string();
            assert!(err.contains("a symbolic link that loops") && !err.contains("permissions"), "{err}");
            let dangling = dir.path().join("gone.jpg");
            std::os::unix::fs::symlink(dir.path().join("nothing.jpg"), &dangling).unwrap();
            let err = load_rgb(&dangling, &DecodeOptions::default()).unwrap_err().to_string();
            assert!(err.contains("a symbolic link to") && err.contains("nothing.jpg"), "{err}");
        }
    }

    #[test]
    fn a_float_tiff_is_an_unsupported_sample_format_not_a_wrong_format() {
        let err = load_rgb(&data("bad/float32.tif"), &DecodeOptions::default()).unwrap_err().to_string();
        assert!(err.contains("unsupported TIFF sample format") && err.contains("8- or 16-bit"), "{err}");
        assert!(!err.contains("use PNG"), "{err}");
    }

    #[test]
    fn pad_batch_appends_zero_samples_and_keeps_full_batches_as_they_are() {
        let x = Array4::from_shape_fn((2, 3, 2, 2), |(n, c, y, x)| (n * 100 + c * 10 + y * 2 + x) as f32 + 1.0);
        let p = pad_batch(x.view(), 4);
        assert_eq!(p.dim(), (4, 3, 2, 2));
        assert_eq!(p.slice(ndarray::s![..2, .., .., ..]), x);
        assert!(p.slice(ndarray::s![2.., .., .., ..]).iter().all(|&v| v == 0.0));
        assert!(pad_batch(x.view(), 2).is_view(), "a full batch is not copied");
    }
}
