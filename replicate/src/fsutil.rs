//! Durable local writes: the spool and the state file must survive `kill -9` and power loss.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};

/// A file written under a temporary sibling name and moved into place by [`AtomicFile::commit`]; dropped without a
/// commit, the temporary file is removed.
pub struct AtomicFile {
    dst: PathBuf,
    tmp: PathBuf,
    file: File,
    committed: bool,
}

impl AtomicFile {
    pub fn create(dst: &Path) -> io::Result<Self> {
        let mut tmp_name = dst.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = dst.with_file_name(tmp_name);
        let file = File::create(&tmp)?;
        Ok(Self { dst: dst.to_owned(), tmp, file, committed: false })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// fsync, rename into place, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let dir = self.dst.parent().ok_or_else(|| io::Error::other(format!("{} has no parent", self.dst.display())))?;
        self.file.flush()?;
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.dst)?;
        self.committed = true;
        File::open(dir)?.sync_all()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Write `dst` through a temporary sibling: write, fsync, rename, fsync the directory.
pub fn write_atomically(dst: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let mut f = AtomicFile::create(dst)?;
    fill(f.file())?;
    f.commit()
}

/// How much a [`FlushingWriter`] writes before it asks for what it wrote to be sent to disk.
const FLUSH_EVERY: u64 = 64 << 20;

/// How much of the file's unwritten end the page-cache filler asks readahead for at a time.
const FILL_CHUNK: u64 = 4 << 20;

/// Writes a large file front to back while a second thread sends what is written to disk as it goes, so that the
/// final fsync waits for the last few megabytes instead of the whole file, and the disk works while the writer
/// does.
pub struct FlushingWriter<'a> {
    file: &'a File,
    flush: SyncSender<()>,
    unflushed: u64,
    written: &'a AtomicU64,
}

impl Write for FlushingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.unflushed += n as u64;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        if self.unflushed >= FLUSH_EVERY {
            // A flush still running covers these bytes too when it is done, or the next one will.
            let _ = self.flush.try_send(());
            self.unflushed = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Run `fill` on a [`FlushingWriter`] over `file`, an empty file written from its start; returns what `fill`
/// returned and whether every background flush succeeded. The caller still owes `file` its final fsync.
///
/// `expected_len` is how long the file will probably be (0 when unknown); see [`with_page_cache_filled`]. A wrong
/// guess only costs time: the file ends where the writer stopped.
pub fn write_flushing<T>(
    file: &File,
    expected_len: u64,
    fill: impl FnOnce(&mut FlushingWriter<'_>) -> T,
) -> (T, io::Result<()>) {
    let written = AtomicU64::new(0);
    let (filled, flushed) = with_page_cache_filled(file, expected_len, &written, || {
        std::thread::scope(|scope| {
            let (flush, requests) = mpsc::sync_channel::<()>(1);
            let flusher = scope.spawn(move || {
                for () in requests {
                    file.sync_data()?;
                }
                Ok(())
            });
            let filled = fill(&mut FlushingWriter { file, flush, unflushed: 0, written: &written });
            let flushed = flusher.join().unwrap_or_else(|_| Err(io::Error::other("the flushing thread panicked")));
            (filled, flushed)
        })
    });
    let written = written.into_inner();
    let trimmed = if written < expected_len { file.set_len(written) } else { Ok(()) };
    (filled, flushed.and(trimmed))
}

/// Run `work`, which writes `file` up to `len` bytes and, writing front to back, keeps `written` up to date with how
/// far it has got, while a second thread has the kernel read ahead the file's unwritten end, from `len` backwards,
/// until it meets the writer. The file is first extended to `len` with a hole, so that readahead costs no I/O: the
/// kernel only creates zeroed page-cache pages, which the writer later copies into.
///
/// Creating page-cache pages is most of what writing a large new file costs (68 % of a restore's samples in
/// `perf`), the more so on a virtual machine that hands free memory back to its host, where the first touch of each
/// page is slow. This way two CPUs share it (see docs/benchmarks.md for what it saves).
///
/// `written` may also stay put (a writer that does not report its progress, such as SQLite's checkpoint): the
/// readahead then goes down to it, or until `work` returns. Only readahead runs beside `work`, so whichever of the two
/// gets to a page first, the file's content is what `work` wrote.
///
/// Only on local disk file systems: over NFS, say, that readahead would cross the network.
pub fn with_page_cache_filled<T>(file: &File, len: u64, written: &AtomicU64, work: impl FnOnce() -> T) -> T {
    let extended = on_local_disk(file) && file.metadata().is_ok_and(|m| m.len() < len) && file.set_len(len).is_ok();
    if !extended {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| fill_page_cache_backwards(file, len, written, &done));
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}

pub(crate) fn on_local_disk(file: &File) -> bool {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, fstatfs};
    // EXT4_SUPER_MAGIC is ext2's and ext3's too.
    fstatfs(file).is_ok_and(|fs| [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC].contains(&fs.filesystem_type()))
}

fn fill_page_cache_backwards(file: &File, len: u64, written: &AtomicU64, done: &AtomicBool) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let mut end = len;
    // Stay a few chunks clear of the writer, so that the two do not queue on the same pages.
    while !done.load(Ordering::Relaxed) && end > written.load(Ordering::Relaxed) + 4 * FILL_CHUNK {
        let start = end.saturating_sub(FILL_CHUNK);
        // Readahead of the range, on this thread: the same pages as reading it, without a buffer to copy into.
        let (Ok(offset), Ok(chunk)) = (i64::try_from(start), i64::try_from(end - start)) else {
            return;
        };
        if posix_fadvise(file, offset, chunk, PosixFadviseAdvice::POSIX_FADV_WILLNEED).is_err() {
            return;
        }
        end = start;
    }
}

/// How much a [`ReadOnce`] reads before it gives that part of the file's page cache back.
const RELEASE_EVERY: u64 = 8 << 20;

/// Reads a file that is read once, front to back (a replica's snapshot or segment during a restore), and gives the
/// page cache of what it has read back to the kernel as it goes.
///
/// A restore would otherwise end up holding two databases' worth of page cache: the replica's and the restored
/// file's. Given back, the memory of the first becomes the second's: half the peak memory, which matters in a
/// container with a memory limit, and faster, since memory just freed is reused at once. On a virtual machine that
/// hands free memory back to its host, fresh memory is slow to touch for the first time (docs/benchmarks.md has
/// what that saves).
pub struct ReadOnce {
    file: File,
    read: u64,
    released: u64,
    released_to_end: bool,
}

impl ReadOnce {
    pub fn new(file: File) -> Self {
        Self { file, read: 0, released: 0, released_to_end: false }
    }

    /// Give back the page cache of everything read so far, `to_end` at the end of the file. Always from the file's
    /// start: the kernel keeps a large folio that straddles the end of the range, and it goes on a later call.
    fn release_read_part(&mut self, to_end: bool) {
        use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
        // A length of 0 reaches the end of the file, its last partial page included.
        let len = if to_end { 0 } else { i64::try_from(self.read).unwrap_or(i64::MAX) };
        // Only a hint: pages still dirty or in use stay, and nothing is lost if the kernel ignores it.
        let _ = posix_fadvise(&self.file, 0, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        self.released = self.read;
        self.released_to_end = to_end;
    }
}

impl Read for ReadOnce {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        let at_end = n == 0 && !buf.is_empty();
        if (at_end && !self.released_to_end) || self.read - self.released >= RELEASE_EVERY {
            self.release_read_part(at_end);
        }
        Ok(n)
    }
}

/// How much of `path` is in the page cache, as util-linux's `fincore` counts it.
#[cfg(test)]
pub(crate) fn page_cache_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (Debian's util-linux-extra) runs");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("fincore prints a byte count")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn read_back(path: &Path) -> Vec<u8> {
        let mut back = Vec::new();
        File::open(path).and_then(|mut f| f.read_to_end(&mut back)).expect("read back");
        back
    }

    #[test]
    fn flushing_writer_writes_every_byte_in_order_however_long_it_expected_the_file_to_be() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..(FLUSH_EVERY as usize * 2 + 12345)).map(|i| (i * 7 % 253) as u8).collect();
        let len = data.len() as u64;
        for expected_len in [0, len, len + (40 << 20) + 7, len / 3] {
            let path = dir.path().join(format!("big-{expected_len}"));
            let file = File::options().read(true).write(true).create_new(true).open(&path).expect("create");
            let (written, flushed) = write_flushing(&file, expected_len, |w| {
                for chunk in data.chunks(3 << 20) {
                    w.write_all(chunk)?;
                }
                io::Result::Ok(())
            });
            written.expect("write");
            flushed.expect("background flushes");
            let back = read_back(&path);
            assert_eq!(back.len(), data.len(), "length of the file written expecting {expected_len} bytes");
            assert!(back == data, "the file written expecting {expected_len} bytes differs from what was written");
        }
    }

    #[test]
    fn filling_the_page_cache_beside_a_writer_that_reports_no_progress_keeps_exactly_what_it_wrote() {
        // Like SQLite's checkpoint: pages written anywhere past the old end, in no particular order.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let file = File::options().read(true).write(true).create_new(true).open(&path).expect("create");
        let page = 4096usize;
        let old_end = 1 << 20;
        file.write_all_at(&vec![1u8; old_end], 0).expect("old content");
        let len = old_end as u64 + (48 << 20);
        let written = AtomicU64::new(old_end as u64);
        let pages: Vec<u64> = (0..(48 << 20) / page as u64).filter(|p| p % 3 != 1).collect();
        with_page_cache_filled(&file, len, &written, || {
            for p in pages.iter().rev().chain(pages.iter().step_by(7)) {
                file.write_all_at(&vec![(p % 250 + 2) as u8; page], old_end as u64 + p * page as u64).expect("write");
            }
        });
        let back = read_back(&path);
        assert_eq!(back.len() as u64, len);
        assert!(back[..old_end].iter().all(|&b| b == 1), "the old content changed");
        for (p, chunk) in back[old_end..].chunks(page).enumerate() {
            let want = if p % 3 == 1 { 0 } else { (p % 250 + 2) as u8 };
            assert!(chunk.iter().all(|&b| b == want), "page {p} past the old end is not what was written");
        }
    }

    #[test]
    fn reading_once_gives_back_the_page_cache_of_what_it_read_and_reads_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot");
        let data: Vec<u8> = (0..(RELEASE_EVERY as usize * 2 + 4321)).map(|i| (i * 13 % 251) as u8).collect();
        let len = data.len() as u64;
        let file = File::create(&path).expect("create");
        (&file).write_all(&data).expect("write");
        file.sync_all().expect("fsync");
        let file = File::open(&path).expect("open");
        if !on_local_disk(&file) {
            // tmpfs and the like keep their pages whatever they are told: there the reader only has to read.
            let mut back = Vec::new();
            ReadOnce::new(file).read_to_end(&mut back).expect("read");
            assert!(back == data, "the bytes read differ from the file's");
            return;
        }
        assert_eq!(page_cache_bytes(&path), len.next_multiple_of(4096), "the file is in the page cache once written");

        let mut r = ReadOnce::new(file);
        let mut back = vec![0u8; RELEASE_EVERY as usize + 100];
        r.read_exact(&mut back).expect("read the first part");
        let resident = page_cache_bytes(&path);
        let cached = len.next_multiple_of(4096);
        assert!(
            resident <= cached - RELEASE_EVERY,
            "{resident} of {cached} bytes still cached after reading the first part"
        );
        r.read_to_end(&mut back).expect("read the rest");
        assert!(back == data, "the bytes read differ from the file's");
        assert_eq!(page_cache_bytes(&path), 0, "pages left in the page cache after reading to the end");
    }
}
