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
///
/// A frame of independent blocks (what litecar and Litestream write) is decoded block by block into buffers sized to
/// what each block holds, so that reading a small WAL segment costs about its size, not a 4 MB block buffer cleared
/// for every frame as lz4_flex's frame decoder does. Other frames go through that decoder.
pub fn lz4_reader<R: Read>(inner: R) -> impl Read {
    Lz4Reader { state: ReaderState::Start(Some(inner)), block: Vec::new(), len: 0, at: 0 }
}

struct Lz4Reader<R: Read> {
    state: ReaderState<R>,
    /// The current block's content is `block[..len]`, of which `at` bytes were read.
    block: Vec<u8>,
    len: usize,
    at: usize,
}

enum ReaderState<R: Read> {
    Start(Option<R>),
    Blocks(Blocks<R>),
    Other(Box<FrameDecoder<io::Chain<io::Cursor<[u8; 7]>, R>>>),
    Done,
}

impl<R: Read> Read for Lz4Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let as_io = |e: DecompressError| match e {
            DecompressError::Input(e) | DecompressError::Output(e) => e,
        };
        loop {
            if self.at < self.len {
                let n = buf.len().min(self.len - self.at);
                buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            match &mut self.state {
                ReaderState::Start(src) => {
                    let src = src.take().ok_or_else(|| io::Error::other("LZ4 reader used after an error"))?;
                    self.state = match open_frame(src).map_err(as_io)? {
                        Frame::Independent(blocks) => ReaderState::Blocks(blocks),
                        Frame::Other(decoder) => ReaderState::Other(Box::new(decoder)),
                    };
                }
                ReaderState::Blocks(blocks) => match blocks.next_into(&mut self.block).map_err(as_io)? {
                    Some(n) => (self.len, self.at) = (n, 0),
                    None => {
                        blocks.finish().map_err(as_io)?;
                        self.state = ReaderState::Done;
                    }
                },
                ReaderState::Other(decoder) => return decoder.read(buf),
                ReaderState::Done => return Ok(0),
            }
        }
    }
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

enum Frame<R: Read> {
    Independent(Blocks<R>),
    /// Linked blocks or a dictionary: lz4_flex's streaming decoder, given back the bytes looked at.
    Other(FrameDecoder<io::Chain<io::Cursor<[u8; 7]>, R>>),
}

/// The blocks of a frame of independent blocks, decoded one at a time.
struct Blocks<R> {
    src: R,
    max_block: usize,
    block_checksums: bool,
    content_checksum: bool,
    content_size: Option<u64>,
    content: XxHash32,
    written: u64,
    compressed: Vec<u8>,
}

/// Read an LZ4 frame's header.
fn open_frame<R: Read>(mut src: R) -> Result<Frame<R>, DecompressError> {
    let mut head = [0u8; 7];
    src.read_exact(&mut head).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("too short to be an LZ4 frame"),
        _ => DecompressError::Input(e),
    })?;
    let flg = head[4];
    let independent = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == MAGIC
        && flg & FLG_VERSION_MASK == FLG_VERSION
        && flg & FLG_INDEPENDENT != 0
        && flg & FLG_DICT_ID == 0;
    if !independent {
        return Ok(Frame::Other(FrameDecoder::new(io::Cursor::new(head).chain(src))));
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
    Ok(Frame::Independent(Blocks {
        src,
        max_block,
        block_checksums: flg & FLG_BLOCK_CHECKSUM != 0,
        content_checksum: flg & FLG_CONTENT_CHECKSUM != 0,
        content_size,
        content: XxHash32::with_seed(0),
        written: 0,
        compressed: Vec::new(),
    }))
}

impl<R: Read> Blocks<R> {
    /// Decode the next block into `buf`, returning how many bytes of it the block holds; `None` at the end mark.
    ///
    /// A `buf` of a whole block's size is decoded into in place; a shorter one is replaced by a new buffer that is
    /// allocated but not cleared. Only the bytes a block holds are ever touched, where clearing a 4 MB buffer would
    /// cost more than decoding a small WAL segment.
    fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, DecompressError> {
        let mut size = [0u8; 4];
        read_input(&mut self.src, &mut size)?;
        let size = u32::from_le_bytes(size);
        if size == 0 {
            return Ok(None);
        }
        let len = (size & !UNCOMPRESSED_BLOCK) as usize;
        if len > self.max_block {
            return Err(corrupt(format!("LZ4 block of {len} bytes exceeds the frame's {}", self.max_block)));
        }
        let stored = size & UNCOMPRESSED_BLOCK != 0;
        let n = if stored {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            read_input(&mut self.src, &mut buf[..len])?;
            len
        } else {
            self.compressed.resize(len, 0);
            read_input(&mut self.src, &mut self.compressed)?;
            let bad = |e: lz4_flex::block::DecompressError| corrupt(format!("corrupt LZ4 block: {e}"));
            if buf.len() >= self.max_block {
                lz4_flex::block::decompress_into(&self.compressed, buf).map_err(bad)?
            } else {
                *buf = lz4_flex::block::decompress(&self.compressed, self.max_block).map_err(bad)?;
                buf.len()
            }
        };
        if self.block_checksums {
            let mut sum = [0u8; 4];
            read_input(&mut self.src, &mut sum)?;
            let raw = if stored { &buf[..n] } else { &self.compressed[..] };
            if XxHash32::oneshot(0, raw) != u32::from_le_bytes(sum) {
                return Err(corrupt("LZ4 block checksum mismatch"));
            }
        }
        self.content.write(&buf[..n]);
        self.written += n as u64;
        Ok(Some(n))
    }

    /// After the end mark: check the content checksum and size, and that nothing follows the frame.
    fn finish(&mut self) -> Result<(), DecompressError> {
        if self.content_checksum {
            let mut sum = [0u8; 4];
            read_input(&mut self.src, &mut sum)?;
            if self.content.finish_32() != u32::from_le_bytes(sum) {
                return Err(corrupt("LZ4 content checksum mismatch"));
            }
        }
        if self.content_size.is_some_and(|n| n != self.written) {
            return Err(corrupt("LZ4 content size mismatch"));
        }
        let mut trailing = [0u8; 1];
        if self.src.read(&mut trailing).map_err(DecompressError::Input)? != 0 {
            return Err(corrupt("unexpected data after the LZ4 frame"));
        }
        Ok(())
    }
}

/// Decompress all of `src` (one LZ4 frame) into `dst`, returning the number of bytes written.
///
/// A frame of independent blocks, which is what litecar and Litestream write, is decoded block by block into a few
/// reused block buffers while a second thread writes them out: restore time is then about the larger of reading and
/// writing, not their sum, and each byte is copied once on either side. Other frames go through lz4_flex's streaming decoder.
pub fn decompress_into<R: Read + Send, W: Write + Send>(src: R, dst: &mut W) -> Result<u64, DecompressError> {
    let mut blocks = match open_frame(src)? {
        Frame::Independent(blocks) => blocks,
        Frame::Other(mut decoder) => return copy_all(&mut decoder, dst),
    };
    let max_block = blocks.max_block;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BLOCKS_IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT + 1);
        let writer = scope.spawn(move || -> io::Result<()> {
            for (block, n) in full_rx {
                dst.write_all(&block[..n])?;
                let _ = empty_tx.try_send(block);
            }
            dst.flush()
        });
        let decoded: Result<(), DecompressError> = (|| {
            loop {
                // Whole-block buffers, reused: each is cleared once (by the allocator, where it can).
                let mut block = empty_rx.try_recv().unwrap_or_else(|_| vec![0; max_block]);
                let Some(n) = blocks.next_into(&mut block)? else { break };
                if full_tx.send((block, n)).is_err() {
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
    blocks.finish()?;
    Ok(blocks.written)
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
            let mut read = Vec::new();
            lz4_reader(compressed.as_slice()).read_to_end(&mut read).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(read == data, "{what}: the reader's data differs");
            let reader = |input: &[u8]| lz4_reader(input.to_vec().as_slice()).read_to_end(&mut Vec::new()).map(|_| ());

            for at in [0, 5, 11, compressed.len() / 3, compressed.len() / 2, compressed.len() - 2] {
                let mut corrupt = compressed.clone();
                corrupt[at] ^= 0x55;
                assert!(
                    matches!(decompress_into(corrupt.as_slice(), &mut Vec::new()), Err(DecompressError::Input(_))),
                    "{what}: a flipped byte at {at} went unnoticed"
                );
                assert!(reader(&corrupt).is_err(), "{what}: the reader missed a flipped byte at {at}");
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
                assert!(linked || reader(&compressed[..keep]).is_err(), "{what}: the reader missed a cut at {keep}");
            }
            let mut longer = compressed.clone();
            longer.push(0);
            if !linked {
                assert!(decompress_into(longer.as_slice(), &mut Vec::new()).is_err(), "{what}: trailing garbage");
                assert!(reader(&longer).is_err(), "{what}: the reader missed trailing garbage");
            }
        }
    }

    #[test]
    fn the_reader_serves_small_frames_in_small_reads() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let compressed = compress(&data, frame_info());
        let mut r = lz4_reader(compressed.as_slice());
        let mut out = Vec::new();
        let mut byte = [0u8; 3];
        loop {
            match r.read(&mut byte).expect("read") {
                0 => break,
                n => out.extend_from_slice(&byte[..n]),
            }
        }
        assert_eq!(out, data);
        assert_eq!(r.read(&mut byte).expect("after the end"), 0);
        assert!(lz4_reader(&b""[..]).read_to_end(&mut Vec::new()).is_err(), "empty input is not a frame");
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
