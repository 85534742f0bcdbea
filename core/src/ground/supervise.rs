//! A worker's background tasks (publisher, outbox sweep, ops endpoints,
//! backlog and timeout sweeps), supervised: a task that panics, fails or
//! ends before shutdown was asked for stops the worker, which exits
//! non-zero so that its orchestrator (ECS) starts a new one. A worker that
//! ran on without, say, its timeout sweep would look healthy and do less.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A background task that stopped when it should not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the background task {task:?} {cause}")]
pub struct TaskFailure {
    pub task: &'static str,
    pub cause: String,
}

struct Ended {
    task: &'static str,
    /// `Err`: the panic's message or the task's error.
    outcome: Result<(), String>,
}

/// The tasks of one worker and the shutdown they stop on.
pub struct Supervisor {
    tasks: JoinSet<Ended>,
    shutdown: CancellationToken,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

impl Supervisor {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            shutdown,
        }
    }

    /// Runs `task` until it ends; `Err` is a failure, as is a panic.
    pub fn spawn<F, E>(&mut self, task: &'static str, future: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.tasks.spawn(async move {
            let outcome = match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("failed: {e}")),
                Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
            };
            Ended { task, outcome }
        });
    }

    /// Supervises a task spawned elsewhere.
    pub fn adopt(&mut self, task: &'static str, handle: tokio::task::JoinHandle<()>) {
        self.spawn(task, async move {
            handle.await.map_err(|e| match e.try_into_panic() {
                Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                Err(e) => format!("was cancelled: {e}"),
            })
        });
    }

    /// Supervises a task that cannot fail but by panicking.
    pub fn spawn_infallible<F>(&mut self, task: &'static str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(task, future.map(Ok::<(), std::convert::Infallible>));
    }

    /// The first task that stops while shutdown has not been asked for.
    /// Pending for as long as they all run (or when there are none).
    pub async fn first_failure(&mut self) -> TaskFailure {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok(Ended { task, outcome })) => match outcome {
                    Err(cause) => return TaskFailure { task, cause },
                    Ok(()) if !self.shutdown.is_cancelled() => {
                        return TaskFailure {
                            task,
                            cause: "stopped before shutdown".to_string(),
                        }
                    }
                    Ok(()) => {}
                },
                Some(Err(e)) => {
                    return TaskFailure {
                        task: "(unknown)",
                        cause: format!("was lost: {e}"),
                    }
                }
            }
        }
    }

    /// After shutdown: waits for every task; the first that failed while
    /// winding down is returned.
    pub async fn finish(mut self) -> Result<(), TaskFailure> {
        let mut first = None;
        while let Some(ended) = self.tasks.join_next().await {
            let failure = match ended {
                Ok(Ended {
                    task,
                    outcome: Err(cause),
                }) => TaskFailure { task, cause },
                Ok(_) => continue,
                Err(e) => TaskFailure {
                    task: "(unknown)",
                    cause: format!("was lost: {e}"),
                },
            };
            first.get_or_insert(failure);
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_the_first_failure_with_its_message() {
        let shutdown = CancellationToken::new();
        let mut s = Supervisor::new(shutdown.clone());
        let stop = shutdown.clone();
        s.spawn_infallible("healthy", async move { stop.cancelled().await });
        s.spawn_infallible("sweep", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("the sweep broke");
        });
        let f = s.first_failure().await;
        assert_eq!(f.task, "sweep");
        assert_eq!(f.cause, "panicked: the sweep broke");
        shutdown.cancel();
        assert_eq!(s.finish().await, Ok(()));
    }

    #[tokio::test]
    async fn an_error_or_an_early_end_is_a_failure_and_an_end_after_shutdown_is_not() {
        let shutdown = CancellationToken::new();
        let mut s = Supervisor::new(shutdown.clone());
        s.spawn("publisher", async { Err::<(), _>("the topic is gone") });
        let f = s.first_failure().await;
        assert_eq!(
            f.to_string(),
            "the background task \"publisher\" failed: the topic is gone"
        );

        let mut s = Supervisor::new(shutdown.clone());
        s.spawn_infallible("ops", async {});
        assert_eq!(s.first_failure().await.cause, "stopped before shutdown");

        let mut s = Supervisor::new(shutdown.clone());
        let stop = shutdown.clone();
        s.spawn_infallible("relay", async move { stop.cancelled().await });
        shutdown.cancel();
        let waited = tokio::time::timeout(Duration::from_millis(100), s.first_failure()).await;
        assert!(
            waited.is_err(),
            "a task that ends after shutdown is no failure"
        );
        assert_eq!(s.finish().await, Ok(()));
    }

    #[tokio::test]
    async fn a_failure_while_winding_down_is_reported_by_finish() {
        let shutdown = CancellationToken::new();
        let mut s = Supervisor::new(shutdown.clone());
        s.spawn("drain", async { Err::<(), _>("commit failed") });
        shutdown.cancel();
        let f = s.finish().await.unwrap_err();
        assert_eq!(f.task, "drain");
    }
}
