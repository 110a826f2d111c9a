//! An image's thumbnail: a PNG at most [`MAX_SIDE`] pixels on its longer side, made
//! from the original the first time it is asked for and kept beside it in the store.

use std::io::Cursor;

use bytes::Bytes;
use uuid::Uuid;

use super::slots::{file_key, thumb_key};
use super::Blobs;
use crate::error::ApiError;

/// Longest side of a thumbnail, in pixels.
pub const MAX_SIDE: u32 = 320;
/// Largest image decoded for a thumbnail, in pixels per side (and bytes of memory).
const DECODE_MAX_SIDE: u32 = 16_384;
const DECODE_MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// The store key of `id`'s thumbnail, made now if it is not there yet.
pub async fn ensure(blobs: &Blobs, id: &Uuid) -> Result<String, ApiError> {
    let key = thumb_key(id);
    if blobs.size(&key).await?.is_some() {
        return Ok(key);
    }
    let original = blobs
        .get(&file_key(id))
        .await?
        .ok_or_else(|| ApiError::unavailable("the image's bytes are missing from the store"))?;
    let png = tokio::task::spawn_blocking(move || make(&original))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))??;
    blobs.put(&key, Bytes::from(png)).await?;
    Ok(key)
}

/// A PNG thumbnail of the image in `bytes` (its format read from the bytes).
pub fn make(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let unreadable =
        |e: image::ImageError| ApiError::bad_request(format!("the image cannot be read: {e}"));
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::bad_request(format!("the image cannot be read: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(DECODE_MAX_SIDE);
    limits.max_image_height = Some(DECODE_MAX_SIDE);
    limits.max_alloc = Some(DECODE_MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(unreadable)?;
    let thumb = if img.width() > MAX_SIDE || img.height() > MAX_SIDE {
        img.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        img
    };
    let mut out = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(unreadable)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 30, 30]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_large_image_is_shrunk_to_fit_and_keeps_its_shape() {
        let t = image::load_from_memory(&make(&png(1000, 500)).unwrap()).unwrap();
        assert_eq!((t.width(), t.height()), (320, 160));
    }

    #[test]
    fn a_small_image_keeps_its_size() {
        let t = image::load_from_memory(&make(&png(40, 30)).unwrap()).unwrap();
        assert_eq!((t.width(), t.height()), (40, 30));
    }

    #[test]
    fn bytes_that_are_no_image_are_refused() {
        assert!(make(b"%PDF-1.4 not an image").is_err());
    }
}
