//! The transitions that begin a response: the application's answer (InApp → Writing), and
//! an error response of the server's own (Reading or InApp → Writing).

use std::time::SystemTime;

use super::{Action, Answer, Conn, Ctx, KeepAlive, State};
use crate::handler::{Body, Response};
use crate::http::{self, HttpError, Version};
use crate::worker::out::{FileOut, Output, Socket, StreamOut, Tail};

impl<S: Socket> Conn<S> {
    /// InApp → Writing: the application's answer goes out. An answer for a connection no
    /// longer waiting for it (its request timed out) is dropped.
    pub(in crate::worker) fn respond(&mut self, response: Response, ctx: &mut Ctx<'_>) {
        let in_app = match self.take_state() {
            State::InApp(in_app) => in_app,
            other => {
                self.state = other;
                discard_body(response.into_parts().2, ctx);
                return;
            }
        };
        let is_head = in_app.head_request;
        let mut response = response;
        let mut reason = response.take_reason();
        let (mut status, mut headers, mut body) = response.into_parts();
        let invalid = headers.iter().find(|(n, v)| !http::valid_header(n, v));
        if invalid.is_some() || status < 200 {
            // Writing it could split the response in two, or leave the client waiting for a
            // final response (a 101 switches protocols only for an accepted WebSocket): the
            // whole answer becomes a 500.
            match invalid {
                Some((name, _)) => log::error!(
                    "the handler returned an invalid header field {name:?} (a name that is not \
                     a token, or CR, LF or NUL in the value); answered 500 instead"
                ),
                None => log::error!(
                    "the handler answered with the interim status {status}, which cannot end \
                     a request; answered 500 instead"
                ),
            }
            status = 500;
            reason = None;
            headers = vec![(
                "Content-Type".to_owned(),
                b"text/plain; charset=utf-8".to_vec(),
            )];
            let unsent = std::mem::replace(
                &mut body,
                Body::Bytes(b"500 Internal Server Error\n".to_vec()),
            );
            discard_body(unsent, ctx);
        }
        // 1xx, 204 and 304 carry no body and no framing: a 304's length is the stored
        // representation's, which the server does not know.
        let with_body = http::status_allows_body(status);
        let body_len = if with_body { body.len() } else { None };
        ctx.actions.push_back(Action::Log(Answer {
            status,
            micros: in_app.since.elapsed().as_micros() as u64,
            access: in_app.access,
        }));
        if self.body_unfinished() || in_app.websocket.is_some() {
            // The rest of a request body the application did not read is not read either:
            // the connection closes after this response. So does a refused WebSocket
            // handshake, as under uvicorn.
            self.decide_keep_alive(KeepAlive::Broken, ctx.settings);
        }
        // HTTP/1.0 has no chunked coding: a body of unknown length ends where the connection
        // does.
        self.decide_keep_alive(
            KeepAlive::Responding {
                stopping: ctx.stopping,
                close_delimited: with_body
                    && body_len.is_none()
                    && in_app.version == Version::Http10,
            },
            ctx.settings,
        );
        // A `100 Continue` begun goes out whole first.
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(self.continue_before_response());
        http::write_response_head(
            &mut head,
            in_app.version,
            http::StatusLine {
                code: status,
                reason: reason.as_deref(),
            },
            &headers,
            body_len,
            self.keep_alive,
            ctx.dates.get(SystemTime::now()),
        );
        let mut out = Output::new(std::mem::take(&mut self.spare), head);
        let sent = with_body && !is_head;
        match body {
            Body::Bytes(bytes) if sent => out.queue.push(bytes),
            Body::File(region) if sent => {
                let (file, offset, remaining) = region.into_parts();
                if remaining > 0 {
                    out.tail = Tail::File(FileOut {
                        file,
                        offset,
                        remaining,
                    });
                }
            }
            Body::Stream(producer) if sent => {
                out.tail = Tail::Stream(StreamOut::Ready {
                    producer,
                    chunked: in_app.version == Version::Http11,
                    remaining: None,
                });
            }
            Body::SizedStream(producer, len) if sent && len > 0 => {
                out.tail = Tail::Stream(StreamOut::Ready {
                    producer,
                    chunked: false,
                    remaining: Some(len),
                });
            }
            unused => discard_body(unused, ctx),
        }
        self.start_writing(out, false, ctx);
    }

    /// Reading or InApp → Writing an error response, after which the connection closes.
    pub(in crate::worker) fn fail(&mut self, err: &HttpError, ctx: &mut Ctx<'_>) {
        let mut head = Vec::with_capacity(256);
        let access = match self.take_state() {
            // One that timed out in the handler still has what it was; the application is told
            // its request is over.
            State::InApp(in_app) => {
                ctx.actions.push_back(Action::Gone);
                head.extend_from_slice(self.continue_before_response());
                in_app.access
            }
            State::Reading(reading) => {
                // A `100 Continue` begun is finished first: the response follows it.
                head.extend_from_slice(reading.continue_begun());
                None
            }
            other => {
                debug_assert!(false, "an error response while already answering");
                self.state = other;
                return;
            }
        };
        ctx.actions.push_back(Action::Log(Answer {
            status: err.status,
            micros: 0,
            access,
        }));
        let from = head.len();
        http::error_response(&mut head, err, ctx.dates.get(SystemTime::now()));
        self.decide_keep_alive(KeepAlive::Broken, ctx.settings);
        let out = Output::whole(std::mem::take(&mut self.spare), head, from);
        self.start_writing(out, true, ctx);
    }
}

/// Hands the stream of a body that will not be sent to a pool thread to drop.
fn discard_body(body: Body, ctx: &mut Ctx<'_>) {
    ctx.actions.extend(body.into_stream().map(Action::Discard));
}
