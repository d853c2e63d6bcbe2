//! State built in each worker after fork: a request counter and a small cache that belong to
//! one worker process, never shared with the others, the way a database connection would be;
//! and the rest of a worker's life: told when it begins to stop, dropped before it exits.
//!
//! ```sh
//! cargo run --example per_worker -- --bind 127.0.0.1:8000 --workers 3
//! curl localhost:8000/              # which worker answered, and how many it has served
//! curl localhost:8000/whoami        # the client's address and the listener it came in on
//! curl 'localhost:8000/slow?n=7'    # computed once per worker, then from that worker's cache
//! kill -TERM <master pid>           # each worker logs that it is stopping, then its drop
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tine::handler::{BuildError, Handler, HandlerFactory, Request, Response, WorkerInfo};

/// The application's settings, known before fork: the factory.
struct App {
    greeting: String,
}

/// One worker's application, built by [`App::build`] after fork.
struct Worker {
    info: WorkerInfo,
    greeting: String,
    served: AtomicU64,
    cache: Mutex<HashMap<u64, u64>>,
}

impl HandlerFactory for App {
    fn build(&self, worker: &WorkerInfo) -> Result<Box<dyn Handler>, BuildError> {
        // Runs in the new worker process: whatever is opened here (connections, files, caches)
        // belongs to this worker alone.
        Ok(Box::new(Worker {
            info: worker.clone(),
            greeting: self.greeting.clone(),
            served: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
        }))
    }
}

impl Handler for Worker {
    fn handle(&self, request: Request) -> Response {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        match request.path() {
            "/" => Response::text(
                200,
                format!(
                    "{} from worker {} (pid {}, {} threads): {served} requests so far\n",
                    self.greeting, self.info.slot, self.info.pid, self.info.threads
                ),
            ),
            "/whoami" => Response::text(
                200,
                format!(
                    "peer {} on {}\n",
                    request
                        .peer_addr()
                        .map_or_else(|| "a unix socket client".to_owned(), |p| p.to_string()),
                    request
                        .listener()
                        .map_or_else(|| "no listener".to_owned(), |l| l.to_string())
                ),
            ),
            "/slow" => {
                let Some(n) = request.query_param("n").and_then(|n| n.parse::<u64>().ok()) else {
                    return Response::text(400, "expected /slow?n=NUMBER\n");
                };
                let cached = self.cache.lock().map(|cache| cache.get(&n).copied());
                if let Ok(Some(square)) = cached {
                    return Response::text(200, format!("{n}² = {square} (cached)\n"));
                }
                // Blocking is fine: this is a pool thread, not the event loop.
                std::thread::sleep(Duration::from_millis(200));
                let square = n.saturating_mul(n);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(n, square);
                }
                Response::text(200, format!("{n}² = {square} (computed)\n"))
            }
            _ => Response::text(404, "not found\n"),
        }
    }

    fn on_stop(&self) {
        // On the event loop: note it and return; requests in flight are still being answered.
        log::info!(
            "app in worker {} stopping after {} requests",
            self.info.slot,
            self.served.load(Ordering::Relaxed)
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Every request is answered: the place to flush, close connections, say goodbye.
        let cached = self.cache.lock().map_or(0, |cache| cache.len());
        log::info!(
            "app in worker {} dropped with {cached} cached results",
            self.info.slot
        );
    }
}

fn main() -> ExitCode {
    let app = App {
        greeting: "Hello".to_owned(),
    };
    tine::exit_status(tine::Server::from_args().and_then(|server| server.serve(app)))
}
