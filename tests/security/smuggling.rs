//! Request smuggling (RFC 9112 §6.1, §6.3 and §11.2; the CL.TE / TE.CL / TE.TE classes of
//! "HTTP Desync Attacks", Kettle 2019): a request whose framing is ambiguous is refused with
//! 400, or framed one way only and its connection closed; no byte of one request is ever
//! forwarded as another. Raw sockets, so that nothing normalises the bytes on the way.
//!
//! Also pinned elsewhere: tests/proxy/lean_server.rs (the lean path hands every request with
//! a body to hyper; malformed heads get hyper's 400; 431 over 100 fields on HTTP/1.1), and the
//! `h1_request_head` / `h1_response_body` fuzz targets (fuzz/).

use std::time::Duration;

use crate::harness::allow_proxy;
use crate::support::{Recorder, exchange, statuses};

const WAIT: Duration = Duration::from_secs(3);

fn setup() {
    portcullis::install_crypto();
}

/// A follow-up request that must only ever reach the upstream as itself.
const NEXT: &str = "GET /next HTTP/1.1\r\nHost: app\r\n\r\n";

fn no_smuggled_path(rec: &Recorder) {
    for p in rec.paths() {
        assert!(
            p == "/first" || p == "/next",
            "a smuggled request reached the upstream: {p} (all: {:?})",
            rec.paths()
        );
    }
}

/// RFC 9112 §6.1: a request with both Content-Length and Transfer-Encoding may be refused, or
/// read by Transfer-Encoding alone — and then its connection MUST be closed after the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_never_read_two_ways() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    for body in [
        // CL.TE: by Content-Length the body is "0\r\n\r\nX"; by chunked it is empty and
        // "XGET /smuggled" would start the next request.
        "POST /first HTTP/1.1\r\nHost: app\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nXGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n",
        // TE.CL: by chunked the body is "SMUGGLED"; by Content-Length it is "8\r\n".
        "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n",
        // TE.TE: an obfuscated second Transfer-Encoding.
        "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n",
    ] {
        rec.clear();
        let text = exchange(p.port, format!("{body}{NEXT}").as_bytes(), WAIT).await;
        let st = statuses(&text);
        assert!(!st.is_empty(), "no response to {body:?}");
        no_smuggled_path(&rec);
        if st[0] != 400 {
            assert_eq!(
                st.len(),
                1,
                "{body:?}: the connection must close after: {text}"
            );
            for s in rec.seen.lock().unwrap().iter() {
                assert!(
                    !s.body.starts_with(b"0\r\n"),
                    "read by Content-Length: {s:?}"
                );
            }
        }
    }
}

/// RFC 9112 §6.3 (5) and RFC 9110 §8.6: differing Content-Length values, or a list of them,
/// make the framing unrecoverable: 400 and close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_or_malformed_content_length_is_400() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    for cl in [
        "Content-Length: 4\r\nContent-Length: 5",
        "Content-Length: 4, 5",
        "Content-Length: +4",
        "Content-Length: -4",
        "Content-Length: 4x",
        "Content-Length: 0x04",
        "Content-Length: 99999999999999999999999",
    ] {
        rec.clear();
        let req = format!(
            "POST /first HTTP/1.1\r\nHost: app\r\n{cl}\r\n\r\nabcdeGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n"
        );
        let text = exchange(p.port, req.as_bytes(), WAIT).await;
        assert_eq!(statuses(&text), vec![400], "{cl}: {text}");
        assert!(rec.paths().is_empty(), "{cl}: {:?}", rec.paths());
    }
}

/// RFC 9112 §6.3 (4): a request whose final transfer coding is not chunked has no
/// determinable length: 400 (or 501 for a coding the server does not implement, RFC 9112
/// §6.1), never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_not_ending_in_chunked_is_refused() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    for te in [
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
        "Transfer-Encoding: identity",
    ] {
        rec.clear();
        let req = format!(
            "POST /first HTTP/1.1\r\nHost: app\r\n{te}\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n"
        );
        let text = exchange(p.port, req.as_bytes(), WAIT).await;
        let st = statuses(&text);
        assert!(
            st.len() == 1 && (st[0] == 400 || st[0] == 501),
            "{te}: {text}"
        );
        assert!(rec.paths().is_empty(), "{te}: {:?}", rec.paths());
    }
}

/// RFC 9112 §5.1 (whitespace between a field name and the colon MUST be refused with 400),
/// §5.2 (obs-fold: refuse with 400, or replace by SP), §2.2 (whitespace before the first
/// field line: refuse, or ignore those lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_tricks_in_the_head_are_400() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    for head in [
        "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n",
        "POST /first HTTP/1.1\r\nHost: app\r\nContent-Length : 4\r\n\r\n",
        "GET /first HTTP/1.1\r\nHost: app\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        "GET /first HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: app\r\n\r\n",
        "GET /first HTTP/1.1\r\nHost: app\r\nX-A: 1\r\n\tX-B: 2\r\n\r\n",
    ] {
        rec.clear();
        let text = exchange(p.port, format!("{head}{NEXT}").as_bytes(), WAIT).await;
        let st = statuses(&text);
        assert_eq!(st.first(), Some(&400), "{head:?}: {text}");
        no_smuggled_path(&rec);
        assert!(rec.paths().is_empty(), "{head:?}: {:?}", rec.paths());
    }
}

/// RFC 9112 §7.1: a chunk size is hex digits (then optional extensions) and CRLF; anything
/// else is a malformed request — the client's fault, so 400, not the 502 of an upstream
/// failure; and no part of it is forwarded as a second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_request_bodies_are_400() {
    setup();
    let rec = Recorder::start().await;
    let p = allow_proxy(&rec.url, "", "").await;
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-1\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
    ] {
        rec.clear();
        let req = format!(
            "POST /first HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n{body}{NEXT}"
        );
        let text = exchange(p.port, req.as_bytes(), WAIT).await;
        let st = statuses(&text);
        assert_eq!(st.first(), Some(&400), "{body:?}: {text}");
        no_smuggled_path(&rec);
    }
}
