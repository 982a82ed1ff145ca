//! The lean HTTP/1.1 request-head parser (src/server/h1.rs), differentially against hyper's
//! server reading the same bytes (the server Portcullis hands every other connection to).
//!
//! The input is what a client sends on one connection, then closes. The lean parser runs
//! request after request on one buffer, as a connection does, until it needs more bytes or
//! hands the connection to hyper. Properties:
//! - every request the lean path serves, hyper reads too, in the same place in the stream:
//!   same method, same target, same header fields in the same order, HTTP/1.1, and no body
//!   (a request the lean path serves has no framing headers, so hyper must frame it as
//!   bodiless too) — so the two can never disagree on where the next request starts (request
//!   smuggling);
//! - a hand-off leaves every unserved byte in the buffer, untouched, for hyper.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use portcullis::server::h1::fuzzing::{Connection, Head};
use tokio::io::AsyncWriteExt;

#[derive(Debug, PartialEq)]
struct Seen {
    method: String,
    target: String,
    version: http::Version,
    fields: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn fields(h: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

/// The requests hyper's HTTP/1 server reads from `input` (configured as Portcullis configures
/// it), until the connection ends.
fn hyper_reads(input: &[u8]) -> Vec<Seen> {
    let seen = std::rc::Rc::new(RefCell::new(Vec::new()));
    let input = Bytes::copy_from_slice(input);
    RT.with(|rt| {
        rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            client.write_all(&input).await.expect("duplex write");
            client.shutdown().await.expect("duplex shutdown");
            let log = seen.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes().to_vec())
                        .unwrap_or_else(|_| b"<body error>".to_vec());
                    log.borrow_mut().push(Seen {
                        method: parts.method.to_string(),
                        target: parts.uri.to_string(),
                        version: parts.version,
                        fields: fields(&parts.headers),
                        body,
                    });
                    Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                // The client has sent everything and closed its side: hyper must still answer
                // every request already read (Portcullis's clients do not close early).
                .half_close(true)
                .serve_connection(TokioIo::new(server), service);
            let done = tokio::time::timeout(Duration::from_secs(5), conn).await;
            assert!(
                done.is_ok(),
                "hyper did not finish reading a closed connection"
            );
            drop(client);
        })
    });
    seen.take()
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut conn = Connection::default();
    let mut lean = Vec::new();
    let mut offset = 0;
    loop {
        let before = buf.clone();
        match conn.next(&mut buf) {
            Head::Served {
                method,
                uri,
                headers,
                consumed,
            } => {
                assert!(consumed > 0 && consumed <= before.len());
                assert_eq!(
                    &buf[..],
                    &before[consumed..],
                    "served: rest of buffer changed"
                );
                offset += consumed;
                lean.push(Seen {
                    method: method.to_string(),
                    target: uri.to_string(),
                    version: http::Version::HTTP_11,
                    fields: fields(&headers),
                    body: Vec::new(),
                });
            }
            Head::Partial | Head::HandOff => {
                assert_eq!(buf, before, "hand-off or partial changed the buffer");
                assert_eq!(&buf[..], &data[offset..]);
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
    }
    if lean.is_empty() {
        return;
    }
    let hyper = hyper_reads(data);
    assert!(
        hyper.len() >= lean.len(),
        "lean served {} requests, hyper read {}: {:?}\nlean: {lean:#?}\nhyper: {hyper:#?}",
        lean.len(),
        hyper.len(),
        String::from_utf8_lossy(data)
    );
    for (i, (l, h)) in lean.iter().zip(&hyper).enumerate() {
        assert_eq!(
            l,
            h,
            "request {i} differs: {:?}",
            String::from_utf8_lossy(data)
        );
    }
});
