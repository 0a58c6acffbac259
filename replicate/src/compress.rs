//! LZ4 frames as Litestream writes them: independent 4 MB blocks, a content checksum, no block checksums, no
//! content size. Both directions stream, so memory stays bounded whatever the size of the data.

use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::sync::mpsc;

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
use twox_hash::XxHash32;

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

/// Why [`decompress_into`] failed: the compressed input (unreadable, corrupt, truncated) or the output.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("{0}")]
    Input(io::Error),
    #[error("{0}")]
    Output(io::Error),
}

const MAGIC: u32 = 0x184D_2204;
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION: u8 = 0b0100_0000;
const FLG_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_DICT_ID: u8 = 0b0000_0001;
const UNCOMPRESSED_BLOCK: u32 = 0x8000_0000;
/// Decoded blocks in flight between the decoding and the writing thread.
const BLOCKS_IN_FLIGHT: usize = 2;

fn corrupt(message: impl Into<String>) -> DecompressError {
    DecompressError::Input(io::Error::new(io::ErrorKind::InvalidData, message.into()))
}

/// Decompress all of `src` (one LZ4 frame) into `dst`, returning the number of bytes written.
///
/// A frame of independent blocks, which is what litecar and Litestream write, is decoded block by block straight
/// into block-sized buffers while a second thread writes them out: restore time is then about the larger of reading
/// and writing, not their sum, and each byte is copied once on either side. Other frames go through lz4_flex's
/// streaming decoder.
pub fn decompress_into<R: Read + Send, W: Write + Send>(mut src: R, dst: &mut W) -> Result<u64, DecompressError> {
    let mut head = [0u8; 7];
    src.read_exact(&mut head).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("too short to be an LZ4 frame"),
        _ => DecompressError::Input(e),
    })?;
    let flg = head[4];
    let fast = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == MAGIC
        && flg & FLG_VERSION_MASK == FLG_VERSION
        && flg & FLG_INDEPENDENT != 0
        && flg & FLG_DICT_ID == 0;
    if !fast {
        let mut r = FrameDecoder::new(io::Cursor::new(head).chain(src));
        return copy_all(&mut r, dst);
    }
    let max_block = match (head[5] >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Err(corrupt("invalid LZ4 block size")),
    };
    // Descriptor: FLG, BD, then the optional 8-byte content size, then the header checksum byte.
    let mut descriptor = vec![head[4], head[5]];
    let content_size = if flg & FLG_CONTENT_SIZE != 0 {
        let mut rest = [0u8; 8];
        rest[..1].copy_from_slice(&head[6..7]);
        read_input(&mut src, &mut rest[1..])?;
        descriptor.extend_from_slice(&rest);
        let mut hc = [0u8; 1];
        read_input(&mut src, &mut hc)?;
        check_header(&descriptor, hc[0])?;
        Some(u64::from_le_bytes(rest))
    } else {
        check_header(&descriptor, head[6])?;
        None
    };

    let block_checksums = flg & FLG_BLOCK_CHECKSUM != 0;
    let mut content = XxHash32::with_seed(0);
    let mut written = 0u64;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT + 1);
        let writer = scope.spawn(move || -> io::Result<()> {
            for block in full_rx {
                dst.write_all(&block)?;
                let _ = empty_tx.try_send(block);
            }
            dst.flush()
        });
        let mut compressed = Vec::new();
        let decoded: Result<(), DecompressError> = (|| {
            loop {
                let mut size = [0u8; 4];
                read_input(&mut src, &mut size)?;
                let size = u32::from_le_bytes(size);
                if size == 0 {
                    break;
                }
                let len = (size & !UNCOMPRESSED_BLOCK) as usize;
                if len > max_block {
                    return Err(corrupt(format!("LZ4 block of {len} bytes exceeds the frame's {max_block}")));
                }
                let mut block = empty_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(max_block));
                let raw = if size & UNCOMPRESSED_BLOCK != 0 {
                    block.resize(len, 0);
                    read_input(&mut src, &mut block)?;
                    &block[..]
                } else {
                    compressed.resize(len, 0);
                    read_input(&mut src, &mut compressed)?;
                    block.resize(max_block, 0);
                    let n = lz4_flex::block::decompress_into(&compressed, &mut block)
                        .map_err(|e| corrupt(format!("corrupt LZ4 block: {e}")))?;
                    block.truncate(n);
                    &compressed[..]
                };
                if block_checksums {
                    let mut sum = [0u8; 4];
                    read_input(&mut src, &mut sum)?;
                    if XxHash32::oneshot(0, raw) != u32::from_le_bytes(sum) {
                        return Err(corrupt("LZ4 block checksum mismatch"));
                    }
                }
                content.write(&block);
                written += block.len() as u64;
                if full_tx.send(block).is_err() {
                    // The writer stopped; its error is reported below.
                    break;
                }
            }
            Ok(())
        })();
        drop(full_tx);
        let wrote = writer.join().unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked")));
        decoded?;
        wrote.map_err(DecompressError::Output)
    })?;
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let mut sum = [0u8; 4];
        read_input(&mut src, &mut sum)?;
        if content.finish_32() != u32::from_le_bytes(sum) {
            return Err(corrupt("LZ4 content checksum mismatch"));
        }
    }
    if content_size.is_some_and(|n| n != written) {
        return Err(corrupt("LZ4 content size mismatch"));
    }
    let mut trailing = [0u8; 1];
    if src.read(&mut trailing).map_err(DecompressError::Input)? != 0 {
        return Err(corrupt("unexpected data after the LZ4 frame"));
    }
    Ok(written)
}

fn read_input(src: &mut impl Read, buf: &mut [u8]) -> Result<(), DecompressError> {
    src.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("truncated LZ4 frame"),
        _ => DecompressError::Input(e),
    })
}

fn check_header(descriptor: &[u8], checksum: u8) -> Result<(), DecompressError> {
    if (XxHash32::oneshot(0, descriptor) >> 8) as u8 != checksum {
        return Err(corrupt("LZ4 frame header checksum mismatch"));
    }
    Ok(())
}

/// The streaming path: tell read errors (of the compressed input, or corrupt data) from write errors.
fn copy_all<R: Read, W: Write>(r: &mut R, dst: &mut W) -> Result<u64, DecompressError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecompressError::Input(e)),
        };
        dst.write_all(&buf[..k]).map_err(DecompressError::Output)?;
        n += k as u64;
    }
    dst.flush().map_err(DecompressError::Output)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8], info: FrameInfo) -> Vec<u8> {
        let mut w = FrameEncoder::with_frame_info(info, Vec::new());
        w.write_all(data).expect("write");
        w.finish().expect("finish")
    }

    fn sample() -> Vec<u8> {
        // Compressible runs and incompressible noise, so frames hold both compressed and stored blocks.
        let mut data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut x = 0x2545_f491_u32;
        data.extend((0..2_500_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        }));
        data
    }

    #[test]
    fn round_trip_and_detect_corruption() {
        let data = sample();
        let frames = [
            ("litecar's frames", frame_info()),
            ("block checksums", frame_info().block_checksums(true)),
            ("content size", frame_info().content_size(Some(data.len() as u64))),
            ("small blocks", frame_info().block_size(BlockSize::Max64KB)),
            ("linked blocks (streaming path)", frame_info().block_mode(BlockMode::Linked)),
        ];
        for (what, info) in frames {
            let linked = info.block_mode == BlockMode::Linked;
            let compressed = compress(&data, info);
            let mut out = Vec::new();
            let n = decompress_into(compressed.as_slice(), &mut out).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(n, data.len() as u64, "{what}");
            assert!(out == data, "{what}: decompressed data differs");

            for at in [0, 5, 11, compressed.len() / 3, compressed.len() / 2, compressed.len() - 2] {
                let mut corrupt = compressed.clone();
                corrupt[at] ^= 0x55;
                assert!(
                    matches!(decompress_into(corrupt.as_slice(), &mut Vec::new()), Err(DecompressError::Input(_))),
                    "{what}: a flipped byte at {at} went unnoticed"
                );
            }
            for keep in [3, 9, compressed.len() / 2, compressed.len() - 3] {
                let mut out = Vec::new();
                match decompress_into(&compressed[..keep], &mut out) {
                    Err(DecompressError::Input(_)) => {}
                    // lz4_flex's streaming decoder takes a cut at a block boundary for the end of the input; what
                    // it returns is short, and callers check what they decompressed (WAL checksums, SQLite header).
                    Ok(_) if linked && out.len() < data.len() => {}
                    other => panic!("{what}: truncation to {keep} bytes went unnoticed: {other:?}"),
                }
            }
            let mut longer = compressed.clone();
            longer.push(0);
            if !linked {
                assert!(decompress_into(longer.as_slice(), &mut Vec::new()).is_err(), "{what}: trailing garbage");
            }
        }
    }

    #[test]
    fn output_errors_are_told_apart_from_input_errors() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let compressed = compress(&sample(), frame_info());
        assert!(matches!(decompress_into(compressed.as_slice(), &mut Full), Err(DecompressError::Output(_))));
    }
}
