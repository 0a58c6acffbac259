//! Durable local writes: the spool and the state file must survive `kill -9` and power loss.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
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

/// Writes a large file front to back while a second thread sends what is written to disk as it goes, so that the
/// final fsync waits for the last few megabytes instead of the whole file, and the disk works while the writer
/// does.
pub struct FlushingWriter<'a> {
    file: &'a File,
    flush: SyncSender<()>,
    unflushed: u64,
}

impl Write for FlushingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.unflushed += n as u64;
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

/// Run `fill` on a [`FlushingWriter`] over `file`; returns what `fill` returned and whether every background flush
/// succeeded. The caller still owes `file` its final fsync.
pub fn write_flushing<T>(file: &File, fill: impl FnOnce(&mut FlushingWriter<'_>) -> T) -> (T, io::Result<()>) {
    std::thread::scope(|scope| {
        let (flush, requests) = mpsc::sync_channel::<()>(1);
        let flusher = scope.spawn(move || {
            for () in requests {
                file.sync_data()?;
            }
            Ok(())
        });
        let filled = fill(&mut FlushingWriter { file, flush, unflushed: 0 });
        let flushed = flusher.join().unwrap_or_else(|_| Err(io::Error::other("the flushing thread panicked")));
        (filled, flushed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn flushing_writer_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let file = File::create(&path).expect("create");
        let data: Vec<u8> = (0..(FLUSH_EVERY as usize * 2 + 12345)).map(|i| (i * 7 % 253) as u8).collect();
        let (written, flushed) = write_flushing(&file, |w| {
            for chunk in data.chunks(3 << 20) {
                w.write_all(chunk)?;
            }
            io::Result::Ok(())
        });
        written.expect("write");
        flushed.expect("background flushes");
        let mut back = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut back)).expect("read back");
        assert!(back == data, "the file differs from what was written");
    }
}
