//! Durable local writes: the spool and the state file must survive `kill -9` and power loss.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Write `dst` through a temporary sibling: write, fsync, rename, fsync the directory.
pub fn write_atomically(dst: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = dst.parent().ok_or_else(|| io::Error::other(format!("{} has no parent directory", dst.display())))?;
    let mut tmp_name = dst.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        fs::rename(&tmp, dst)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
