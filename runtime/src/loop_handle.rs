//! The handle of a running server loop
//! ([`MultiServerHandle`](crate::multi::host::MultiServerHandle) is the
//! one runtime's): send the loop events, ask it questions, stop it and
//! learn how it ended. A server adds its own requests as methods on its
//! instance.

use tokio::sync::{mpsc, oneshot, watch};

use concord::NodeId;

/// A running server loop that reads events of type `E` and ends with an
/// error of type `R`.
#[derive(Debug)]
pub struct LoopHandle<E, R> {
    id: NodeId,
    events: mpsc::Sender<E>,
    shutdown: watch::Sender<bool>,
    done: Option<oneshot::Receiver<Result<(), R>>>,
}

impl<E, R> LoopHandle<E, R> {
    /// The handle of a loop reading `events`, watching `shutdown`, whose
    /// outcome arrives on `done`.
    pub(crate) fn new(
        id: NodeId,
        events: mpsc::Sender<E>,
        shutdown: watch::Sender<bool>,
        done: oneshot::Receiver<Result<(), R>>,
    ) -> Self {
        LoopHandle {
            id,
            events,
            shutdown,
            done: Some(done),
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The sender of the server's inbox (for a listener, a transport or
    /// a network).
    pub fn events(&self) -> mpsc::Sender<E> {
        self.events.clone()
    }

    /// A receiver that flips to `true` when shutdown is asked for (for the
    /// listener and other tasks that should stop with the server).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops the server gracefully: queued writes finish, waiting clients
    /// are told the outcome is unknown. Returns how the loop ended.
    pub async fn shutdown(mut self) -> Result<(), R> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops by itself (a storage failure).
    /// Cancel-safe: a wait given up (a `select!` another branch of which
    /// won) leaves the handle able to [`shutdown`](Self::shutdown) and
    /// wait for the graceful stop.
    pub async fn wait(&mut self) -> Result<(), R> {
        let Some(done) = self.done.as_mut() else {
            return Ok(());
        };
        let result = done.await.unwrap_or(Ok(()));
        self.done = None;
        result
    }

    /// Sends the loop the event `ask` makes of a reply channel and waits
    /// for the reply.
    pub(crate) async fn ask<T>(
        &self,
        ask: impl FnOnce(oneshot::Sender<T>) -> E,
    ) -> Result<T, Unanswered> {
        let (reply, rx) = oneshot::channel();
        if self.events.send(ask(reply)).await.is_err() {
            return Err(Unanswered::Stopped);
        }
        rx.await.map_err(|_| Unanswered::Dropped)
    }
}

/// Why [`LoopHandle::ask`] got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The loop had stopped: the question never reached it.
    Stopped,
    /// The loop took the question and dropped the reply (it stopped
    /// while the question waited).
    Dropped,
}
