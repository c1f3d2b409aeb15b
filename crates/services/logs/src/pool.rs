//! The threads event reads run on.
//!
//! GetLogEvents and FilterLogEvents run on [`READ_THREADS`] dedicated threads, each with its own
//! single-threaded runtime and at most one blocking thread for the store's reads, one call at a
//! time each; the other calls wait in a queue. This bounds how many reads hold memory at once, and
//! it keeps their allocations on a handful of threads: glibc's malloc gives each thread that meets
//! contention an arena of its own and keeps what the arena freed, so reads spread over every
//! runtime thread left the server holding several times the memory its reads needed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::LogsError;

/// How many reads run at once.
pub const READ_THREADS: usize = 2;

/// Reads waiting for a thread before callers wait to enqueue.
const QUEUE: usize = 1024;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A handle on the read threads; they stop when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct ReadPool {
    tx: mpsc::Sender<Job>,
}

impl ReadPool {
    pub(crate) fn start() -> Result<Self, LogsError> {
        Self::start_named(READ_THREADS, "gantry-logs-read")
    }

    /// `threads` threads named `name-<i>`.
    pub(crate) fn start_named(threads: usize, name: &str) -> Result<Self, LogsError> {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(1)
                .thread_name(format!("{name}-{i}"))
                .build()
                .map_err(|e| LogsError::Pool(e.to_string()))?;
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        loop {
                            let job = rx.lock().await.recv().await;
                            let Some(job) = job else {
                                return;
                            };
                            // A panicking read fails its own call (its answer is dropped), not
                            // the thread.
                            let _ = tokio::spawn(job).await;
                        }
                    });
                })
                .map_err(|e| LogsError::Pool(e.to_string()))?;
        }
        Ok(Self { tx })
    }

    /// Runs `work` on a read thread and returns its answer.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, LogsError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, LogsError>> + Send + 'static,
    {
        let (answer, rx) = oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = answer.send(work.await);
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| LogsError::Pool("read threads stopped".to_owned()))?;
        rx.await
            .map_err(|_| LogsError::Pool("read failed without an answer".to_owned()))?
    }
}
