//! Worker threads: each runs a single-threaded runtime of its own and serves the clients the
//! listener hands it, with its own share of every shard's pool (`backend/pool.rs`).
//!
//! Why not one multi-threaded runtime: a session's client socket, its server connection and its
//! timers then belong to whichever thread last polled them, so a request crosses threads on its
//! way in and out. Thread per core keeps each session and the connections it borrows on one
//! thread, as one single-threaded proxy process per core would, and one preempted thread stalls
//! only its own clients.

use crate::error::Error;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The workers besides the thread that runs the listener, which is worker 0.
pub struct Workers {
    /// Workers 1.. : their runtimes' handles.
    others: Vec<Handle>,
    /// Dropped with the workers: each thread ends its runtime, and the sessions on it, when
    /// its receiver sees the sender gone.
    _stops: Vec<oneshot::Sender<()>>,
    next: AtomicUsize,
}

/// Connections per worker below which the default (`workers = 0`) runs fewer workers than
/// CPUs: a worker whose share is a connection or two would mostly borrow from the others' (on
/// their threads' runtimes) or wait for them.
const SHARE_AT_LEAST: usize = 4;

/// How many workers `[proxy] workers` asks for: 0 means one per CPU, but no more than one per
/// `SHARE_AT_LEAST` pooled connections. Never more than the pool has connections, as each
/// worker needs a share of at least one.
pub fn count(configured: usize, pool_size: usize) -> usize {
    let n = match configured {
        0 => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            cpus.min(pool_size / SHARE_AT_LEAST)
        }
        n => n,
    };
    n.min(pool_size).max(1)
}

impl Workers {
    /// Starts `n - 1` threads; the caller's runtime is worker 0.
    pub fn start(n: usize) -> Result<Workers, Error> {
        let mut others = Vec::with_capacity(n.saturating_sub(1));
        let mut stops = Vec::with_capacity(others.capacity());
        for i in 1..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::internal(format!("cannot start worker {i}: {e}")))?;
            let (stop, stopped) = oneshot::channel::<()>();
            others.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("shardgate-worker-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })
                .map_err(|e| Error::internal(format!("cannot start worker {i}: {e}")))?;
            stops.push(stop);
        }
        Ok(Workers {
            others,
            _stops: stops,
            next: AtomicUsize::new(0),
        })
    }

    /// The worker for the next client: in turn, so that each has its share of clients as it
    /// has its share of the pool.
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % (self.others.len() + 1)
    }

    /// Runs `task` on worker `w`'s runtime; worker 0 is the caller's.
    pub fn spawn<F>(&self, w: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match w.checked_sub(1).and_then(|i| self.others.get(i)) {
            Some(h) => drop(h.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

/// Runs `task` on a thread of its own, with a runtime of its own, until it ends: for long
/// background work (a rebalance) that must neither take a worker's time from its clients nor
/// get only what they leave of it.
pub fn run_apart<F>(name: &str, task: F) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start {name}: {e}")))?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || rt.block_on(task))
        .map(drop)
        .map_err(|e| Error::internal(format!("cannot start {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn workers_take_a_share_of_the_pool() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(count(3, 2), 2, "at most one per pooled connection");
        assert_eq!(count(2, 64), 2);
        assert_eq!(count(0, 1), 1);
        assert_eq!(
            count(0, 7),
            1,
            "the default keeps four connections per worker"
        );
        assert_eq!(count(0, 4 * cpus), cpus);
        assert_eq!(count(0, 1000), cpus);
    }
}
