//! Durable local writes: the spool and the state file must survive `kill -9` and power loss.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
