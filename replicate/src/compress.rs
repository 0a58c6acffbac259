//! LZ4 frames as Litestream writes them: independent 4 MB blocks, a content checksum, no block checksums, no
//! content size. Both directions stream, so memory stays bounded whatever the size of the data.

use std::io::{self, Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

fn frame_info() -> FrameInfo {
    FrameInfo::new().block_size(BlockSize::Max4MB).block_mode(BlockMode::Independent).content_checksum(true)
}

/// A writer that compresses into one LZ4 frame; call [`Lz4Writer::finish`] to write the frame trailer.
pub struct Lz4Writer<W: Write>(FrameEncoder<W>);

impl<W: Write> Lz4Writer<W> {
    pub fn new(inner: W) -> Self {
        Self(FrameEncoder::with_frame_info(frame_info(), inner))
    }

    pub fn finish(self) -> io::Result<W> {
        self.0.finish().map_err(io::Error::other)
    }
}

impl<W: Write> Write for Lz4Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A reader over the decompressed content of an LZ4 frame; a corrupt frame or checksum mismatch is an
/// `InvalidData` error.
pub fn lz4_reader<R: Read>(inner: R) -> impl Read {
    FrameDecoder::new(inner)
}

/// Decompress all of `src` into `dst`, returning the number of bytes written.
pub fn decompress_into<R: Read, W: Write>(src: R, dst: &mut W) -> io::Result<u64> {
    io::copy(&mut lz4_reader(src), dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detect_corruption() {
        let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = Lz4Writer::new(Vec::new());
        w.write_all(&data).expect("write");
        let compressed = w.finish().expect("finish");
        let mut out = Vec::new();
        decompress_into(compressed.as_slice(), &mut out).expect("decompress");
        assert_eq!(out, data);

        let mut corrupt = compressed.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        assert!(decompress_into(corrupt.as_slice(), &mut Vec::new()).is_err());
        let truncated = &compressed[..compressed.len() - 3];
        assert!(decompress_into(truncated, &mut Vec::new()).is_err());
    }
}
