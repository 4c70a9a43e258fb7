//! Snapshot files: reading a streamed snapshot chunk by chunk, writing one atomically,
//! and the background writer a forkless `BGSAVE` (or an AOF rewrite) feeds.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use recached_engine::snapshot::stream::{self, Loaded, Loader, StreamError, CHUNK_HEADER_LEN, FILE_HEADER_LEN};
use tokio::sync::{mpsc, oneshot};

use super::aof::LoadProgress;
use super::files;

/// Why a snapshot file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The operating system refused.
    Io(io::Error),
    /// The content is wrong.
    Format(StreamError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{}", files::os_text(e)),
            ReadError::Format(e) => write!(f, "{}", e),
        }
    }
}

/// Reads a streamed snapshot file; `Ok(None)` when it does not exist. Chunks are read one
/// at a time, so memory is the state being built plus one chunk.
pub fn read_stream_file(path: &Path, databases: usize, progress: &dyn LoadProgress) -> Result<Option<Loaded>, ReadError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let len = file.metadata().map_err(ReadError::Io)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; FILE_HEADER_LEN];
    if len < FILE_HEADER_LEN as u64 {
        return Err(ReadError::Format(if len == 0 { StreamError::Truncated { at: 0 } } else { StreamError::BadMagic }));
    }
    r.read_exact(&mut head).map_err(ReadError::Io)?;
    stream::check_file_header(&head).map_err(ReadError::Format)?;
    let mut loader = Loader::new(databases, len);
    let mut pos = FILE_HEADER_LEN as u64;
    let mut payload = Vec::new();
    while pos < len {
        if len - pos < CHUNK_HEADER_LEN as u64 {
            return Err(ReadError::Format(StreamError::Truncated { at: len }));
        }
        let mut h = [0u8; CHUNK_HEADER_LEN];
        r.read_exact(&mut h).map_err(ReadError::Io)?;
        let header = stream::chunk_header(&h);
        let start = pos + CHUNK_HEADER_LEN as u64;
        if header.len > len - start {
            return Err(ReadError::Format(StreamError::Truncated { at: len }));
        }
        payload.clear();
        payload.resize(header.len as usize, 0);
        r.read_exact(&mut payload).map_err(ReadError::Io)?;
        loader.chunk(pos, header, &payload).map_err(ReadError::Format)?;
        progress.read(CHUNK_HEADER_LEN as u64 + header.len);
        pos = start + header.len;
    }
    loader.finish(len).map(Some).map_err(ReadError::Format)
}

enum Piece {
    Data(Vec<u8>),
    Commit,
}

/// A file being written in the background: bytes go to a temporary file in the target's
/// directory; [`BackgroundFile::commit`] fsyncs it, renames it over the target and fsyncs
/// the directory. Dropped without a commit, the temporary file is removed.
pub struct BackgroundFile {
    tx: Option<mpsc::Sender<Piece>>,
    done: Option<oneshot::Receiver<io::Result<u64>>>,
}

/// Pieces queued for the writer thread at most (each up to a few hundred KB): the bound on
/// what a save holds in memory besides the cut's own buffer.
const QUEUE: usize = 16;

impl BackgroundFile {
    /// Starts the writer thread for `dst`.
    pub fn create(dst: PathBuf) -> io::Result<BackgroundFile> {
        let dir = files::parent(&dst).to_path_buf();
        files::ensure_dir(&dir)?;
        let stem = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = files::temp_path(&dir, &stem);
        let file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        let (tx, mut rx) = mpsc::channel::<Piece>(QUEUE);
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new().name("snapshot-writer".into()).spawn(move || {
            let mut w = io::BufWriter::with_capacity(1 << 20, file);
            let mut written = 0u64;
            let mut result: Option<io::Result<u64>> = None;
            while let Some(piece) = rx.blocking_recv() {
                match piece {
                    Piece::Data(d) => {
                        if let Err(e) = w.write_all(&d) {
                            result = Some(Err(e));
                            break;
                        }
                        written += d.len() as u64;
                    }
                    Piece::Commit => {
                        result = Some((|| {
                            let f = w.into_inner().map_err(|e| e.into_error())?;
                            f.sync_all()?;
                            drop(f);
                            files::commit(&temp, &dst)?;
                            Ok(written)
                        })());
                        break;
                    }
                }
            }
            let result = result.unwrap_or_else(|| Err(io::Error::other("the save was aborted")));
            if result.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            let _ = done_tx.send(result);
        })?;
        Ok(BackgroundFile { tx: Some(tx), done: Some(done) })
    }

    /// Queues bytes; waits while the writer is [`QUEUE`] pieces behind. An error means the
    /// writer stopped (its error comes from [`BackgroundFile::commit`]).
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), ()> {
        if data.is_empty() {
            return Ok(());
        }
        match &self.tx {
            Some(tx) => tx.send(Piece::Data(data)).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Makes the file durable and puts it in place. Returns its size.
    pub async fn commit(mut self) -> io::Result<u64> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Piece::Commit).await;
        }
        match self.done.take() {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(io::Error::other("the snapshot writer stopped"))),
            None => Err(io::Error::other("already committed")),
        }
    }
}
