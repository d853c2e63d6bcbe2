//! The smallest embedded tine application: one handler, the whole `tine` command line.
//!
//! ```sh
//! cargo run --example hello -- --bind 127.0.0.1:8000 --workers 2
//! curl localhost:8000/            # Hello, World!
//! curl localhost:8000/hello/tine  # Hello, tine!
//! ```

use std::process::ExitCode;

use tine::handler::{BuildError, Request, Response, WorkerInfo};

/// Called on a pool thread for every request; it may block.
fn hello(request: Request) -> Response {
    match request.method() {
        "GET" | "HEAD" => {}
        _ => return Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD"),
    }
    match request.path() {
        "/" => Response::text(200, "Hello, World!\n"),
        path => match path.strip_prefix("/hello/") {
            Some(name) if !name.is_empty() => {
                let name = tine::handler::percent_decode_path(name);
                Response::text(200, format!("Hello, {name}!\n"))
            }
            _ => Response::text(404, "not found\n"),
        },
    }
}

fn main() -> ExitCode {
    // The factory runs in every worker after fork; this handler needs no state, so it only
    // hands out the function.
    let factory = |_worker: &WorkerInfo| Ok::<_, BuildError>(hello);
    tine::exit_status(tine::Server::from_args().and_then(|server| server.serve(factory)))
}
