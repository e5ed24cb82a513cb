//! How a caller learns that an operation is on disk: a `Durable` to wait on or await,
//! or a callback the writer thread runs (what openraft's `LogFlushed` wants).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::WalError;

/// Resolves once the operation it was returned for is durable (or failed). Wait on it
/// from a thread with [`Durable::wait`], or `.await` it on any executor.
#[must_use = "an append is only acknowledged once its Durable resolves"]
#[derive(Debug)]
pub struct Durable<T> {
    rx: flume::Receiver<Result<T, WalError>>,
}

impl<T> Durable<T> {
    pub(crate) fn channel() -> (Completion<T>, Durable<T>) {
        let (tx, rx) = flume::bounded(1);
        (Completion::Channel(tx), Durable { rx })
    }

    /// Blocks the calling thread until the operation is durable.
    pub fn wait(self) -> Result<T, WalError> {
        self.rx.recv().unwrap_or(Err(WalError::Stopped))
    }
}

impl<T: 'static> IntoFuture for Durable<T> {
    type Output = Result<T, WalError>;
    type IntoFuture = DurableFuture<T>;

    fn into_future(self) -> DurableFuture<T> {
        DurableFuture {
            recv: self.rx.into_recv_async(),
        }
    }
}

pub struct DurableFuture<T: 'static> {
    recv: flume::r#async::RecvFut<'static, Result<T, WalError>>,
}

impl<T: 'static> Future for DurableFuture<T> {
    type Output = Result<T, WalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.recv)
            .poll(cx)
            .map(|received| received.unwrap_or(Err(WalError::Stopped)))
    }
}

pub(crate) type Callback<T> = Box<dyn FnOnce(Result<T, WalError>) + Send>;

/// The writer's side of a `Durable` or a callback.
pub(crate) enum Completion<T> {
    Channel(flume::Sender<Result<T, WalError>>),
    Callback(Callback<T>),
}

impl<T> Completion<T> {
    pub(crate) fn complete(self, result: Result<T, WalError>) {
        match self {
            // The caller may have dropped its Durable: nobody to tell.
            Completion::Channel(tx) => drop(tx.send(result)),
            Completion::Callback(callback) => callback(result),
        }
    }
}
