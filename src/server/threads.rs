//! Serving threads: each runs a single-threaded runtime that owns the connections handed to
//! it; one acceptor hands accepted connections to the threads in turn.
//!
//! Why not one work-stealing runtime for everything: an eligibility lookup is tens of
//! microseconds. On a work-stealing runtime a connection's task and the tasks of its requests
//! wake one another across threads (and a woken task jumps the queue), so the connection
//! writes each response as soon as it is ready, one system call per response. On a thread of
//! its own, the requests of a connection that arrived together are all answered before the
//! connection runs again, and their responses leave in one write. With the load generator on
//! the same two cores, lookups went from 12–15k requests/s to 18–22k with two serving threads
//! and 21–24k with one (BENCHMARKS.md, issue 5).
//!
//! Heavy work (what-if, explain, reload) already leaves the serving threads through
//! `spawn_blocking`, so one slow request does not hold up the other connections of its thread.

use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// The serving threads of a running server.
#[derive(Debug)]
pub struct Threads {
    shutdown: watch::Sender<bool>,
    /// Each thread's end, with why it failed.
    done: Vec<oneshot::Receiver<Result<(), String>>>,
}

impl Threads {
    /// Starts `n` serving threads, each serving `router` on the connections it is handed, and
    /// the acceptor (a task of the calling runtime) that hands them what `listener` accepts.
    pub fn start<F, Fut>(
        listener: tokio::net::TcpListener,
        n: usize,
        serve: F,
    ) -> std::io::Result<Threads>
    where
        F: Fn(UnboundedReceiverStream<std::net::TcpStream>, watch::Receiver<bool>) -> Fut
            + Send
            + Clone
            + 'static,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let (shutdown, stop) = watch::channel(false);
        let mut handoff = Vec::new();
        let mut done = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::unbounded_channel::<std::net::TcpStream>();
            let (report, end) = oneshot::channel();
            let (serve, stop) = (serve.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("serve-{i}"))
                .spawn(move || {
                    let r = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(serve(UnboundedReceiverStream::new(rx), stop)),
                        Err(e) => Err(format!("starting serving thread {i}: {e}")),
                    };
                    let _ = report.send(r);
                })?;
            handoff.push(tx);
            done.push(end);
        }
        tokio::spawn(accept(listener, handoff, stop));
        Ok(Threads { shutdown, done })
    }

    /// How many serving threads there are.
    pub fn count(&self) -> usize {
        self.done.len()
    }

    /// Stops accepting and tells every thread to finish its requests in flight.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until every thread has ended; the first failure, if any.
    pub async fn wait(self) -> Result<(), String> {
        let mut first = Ok(());
        for end in self.done {
            let r = end
                .await
                .unwrap_or_else(|_| Err("a serving thread ended without a word".into()));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Accepts connections and hands them to the threads in turn, until told to stop.
async fn accept(
    listener: tokio::net::TcpListener,
    handoff: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted.and_then(|(s, _)| {
            s.set_nodelay(true)?;
            s.into_std()
        }) {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: say so, breathe, go on.
                eprintln!("mianshen serve: accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // A thread that has ended (shutting down) drops the connection.
        let _ = handoff[next % handoff.len()].send(stream);
        next = next.wrapping_add(1);
    }
}

/// The connections handed to a thread, registered with that thread's runtime.
pub fn connections(
    handed: UnboundedReceiverStream<std::net::TcpStream>,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    handed.map(tokio::net::TcpStream::from_std)
}

/// The number of serving threads for `configured` (0: one per core).
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}
