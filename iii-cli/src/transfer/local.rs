//! The local side of a transfer: the file or standard input `send` reads, the file or
//! standard output `recv` writes. Both are opened before the channel is created, so a
//! missing file fails before anything happens at the engine.

use std::io::{self, IsTerminal};
use std::path::Path;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cli::PathArg;
use crate::exit::Failure;

/// What `send` reads.
pub(super) struct Source {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    /// Its size, when it is a regular file (also behind standard input).
    pub(super) size: Option<u64>,
    name: String,
}

impl Source {
    /// Opens `path` (`-`: standard input).
    pub(super) async fn open(path: &PathArg) -> Result<Source, Failure> {
        match path {
            PathArg::Std => {
                if io::stdin().is_terminal() {
                    eprintln!("iii: reading standard input (Ctrl-D ends it, Ctrl-C aborts)");
                }
                Ok(Source {
                    reader: Box::new(tokio::io::stdin()),
                    size: stdin_size(),
                    name: "standard input".into(),
                })
            }
            PathArg::File(path) => {
                let failed = |source| Failure::LocalIo {
                    context: format!("cannot read {}", path.display()),
                    source,
                };
                let file = tokio::fs::File::open(path).await.map_err(failed)?;
                let metadata = file.metadata().await.map_err(failed)?;
                if metadata.is_dir() {
                    return Err(failed(io::Error::other("it is a directory")));
                }
                Ok(Source {
                    reader: Box::new(file),
                    size: metadata.is_file().then_some(metadata.len()),
                    name: path.display().to_string(),
                })
            }
        }
    }

    /// Reads the next chunk of at most `max` bytes into `buf` (emptied by the caller);
    /// `Ok(false)` at the end of the input.
    pub(super) async fn read(&mut self, buf: &mut BytesMut, max: usize) -> Result<bool, Failure> {
        buf.reserve(max);
        let limited = (&mut self.reader).take(max as u64);
        tokio::pin!(limited);
        match limited.read_buf(buf).await {
            Ok(n) => Ok(n > 0),
            Err(source) => Err(Failure::LocalIo {
                context: format!("cannot read {}", self.name),
                source,
            }),
        }
    }
}

/// The size of standard input when it is a regular file (`iii send f < file`).
#[cfg(unix)]
fn stdin_size() -> Option<u64> {
    use std::os::fd::AsFd;
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    metadata.is_file().then_some(metadata.len())
}

#[cfg(not(unix))]
fn stdin_size() -> Option<u64> {
    None
}

/// What `recv` writes.
pub(super) struct Sink {
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    /// True for standard output (whose reader may leave: a broken pipe).
    pub(super) is_stdout: bool,
    name: String,
    /// The file, when this command created it (it did not exist before).
    created: Option<std::path::PathBuf>,
    /// Bytes written so far.
    written: u64,
}

impl Sink {
    /// Creates or truncates `path` (`-`: standard output).
    pub(super) async fn open(path: &PathArg) -> Result<Sink, Failure> {
        match path {
            PathArg::Std => Ok(Sink {
                writer: Box::new(tokio::io::stdout()),
                is_stdout: true,
                name: "standard output".into(),
                created: None,
                written: 0,
            }),
            PathArg::File(path) => {
                let existed = tokio::fs::symlink_metadata(path).await.is_ok();
                let file = tokio::fs::File::create(path)
                    .await
                    .map_err(|source| write_failed(path, source))?;
                Ok(Sink {
                    writer: Box::new(file),
                    is_stdout: false,
                    name: path.display().to_string(),
                    created: (!existed).then(|| path.clone()),
                    written: 0,
                })
            }
        }
    }

    /// Writes all of `data`.
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        let written = self.writer.write_all(data).await;
        written.map_err(|source| self.failed(source))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// After a failed transfer: removes the file this command created if nothing was
    /// written to it (no empty file is left behind), and says on standard error what
    /// became of the file, by its path.
    pub(super) async fn failed_transfer(&mut self) {
        if self.is_stdout {
            return;
        }
        let _ = self.writer.flush().await;
        match &self.created {
            Some(path) if self.written == 0 => match tokio::fs::remove_file(path).await {
                Ok(()) => eprintln!("iii: {}: removed (nothing was received)", self.name),
                Err(error) => eprintln!("iii: {}: empty, and cannot remove it: {error}", self.name),
            },
            _ if self.written == 0 => {
                eprintln!("iii: {}: now empty (nothing was received)", self.name)
            }
            _ => eprintln!(
                "iii: {}: holds only the {} bytes received before the failure",
                self.name, self.written
            ),
        }
    }

    /// Waits until everything written has reached the file or the pipe.
    pub(super) async fn finish(&mut self) -> Result<(), Failure> {
        let flushed = self.writer.flush().await;
        flushed.map_err(|source| self.failed(source))
    }

    fn failed(&self, source: io::Error) -> Failure {
        if self.is_stdout {
            Failure::stdout(source)
        } else {
            write_failed(Path::new(&self.name), source)
        }
    }
}

fn write_failed(path: &Path, source: io::Error) -> Failure {
    Failure::LocalIo {
        context: format!("cannot write {}", path.display()),
        source,
    }
}
