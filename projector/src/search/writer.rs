//! The thread that owns a search index's writer, below the views in priority.
//!
//! On a machine whose cores are all busy (a replica catching up with the log), indexing
//! must not slow the views down: history is what a reader waits for first. So every
//! write to the index runs on one thread whose scheduling priority is the lowest (nice
//! +19 on Linux), and tantivy's own indexing and merging threads, which the writer
//! starts from that thread, inherit it. When a core is free the index gets all of it;
//! when none is, the views' consumer gets the CPU first.

use std::path::PathBuf;
use std::sync::mpsc;

use thread_priority::ThreadPriority;
use tokio::sync::oneshot;
use tracing::warn;

use super::index::{SearchIndex, Writer};
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&Writer) + Send>;

pub struct WriterThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    /// Opens the index in `dir` on a new thread and keeps its writer there.
    pub async fn open(dir: PathBuf) -> Result<(WriterThread, SearchIndex)> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, ready) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("search-writer".into())
            .spawn(move || {
                if let Err(e) = thread_priority::set_current_thread_priority(ThreadPriority::Min) {
                    warn!(error = ?e, "cannot lower the search writer's priority");
                }
                let writer = match SearchIndex::open(&dir) {
                    Ok((index, writer)) => {
                        let _ = opened.send(Ok(index));
                        writer
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&writer);
                }
                writer.finish();
            })
            .map_err(|e| Error::Store(format!("search writer thread: {e}")))?;
        let index = ready
            .await
            .map_err(|_| Error::Store("the search writer thread stopped".into()))??;
        Ok((
            WriterThread {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            index,
        ))
    }

    /// Runs `f` with the writer, on its thread.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Writer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |w| {
            let _ = tx.send(f(w));
        });
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| Error::Store("the search writer thread stopped".into()))?;
        rx.await
            .map_err(|_| Error::Store("the search writer thread stopped".into()))?
    }

    /// Stops the thread; once this returns the writer (and the index's lock) is gone.
    pub async fn close(mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
