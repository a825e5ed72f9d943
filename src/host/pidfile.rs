//! The pidfile: written at start, held with an exclusive `flock` for the host's whole life,
//! removed at stop. A second host with the same pidfile finds it locked and refuses to start;
//! a stale file left by a host that was killed is not locked, so it is simply taken over.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("pidfile {path} is held by another running geardriver{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("cannot use pidfile {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub struct Pidfile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Pidfile {
    pub fn acquire(path: &Path) -> Result<Pidfile, PidfileError> {
        let io_err = |source| PidfileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(PidfileError::Held {
                    path: path.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io_err(io::Error::from(errno))),
        };
        lock.set_len(0).map_err(io_err)?;
        lock.rewind().map_err(io_err)?;
        writeln!(&*lock, "{}", std::process::id()).map_err(io_err)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Removed while still locked, so no second host can lock the file we then delete.
        let _ = std::fs::remove_file(&self.path);
    }
}
