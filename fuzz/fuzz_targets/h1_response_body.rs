//! The lean HTTP/1.1 client's response reader (src/proxy/h1.rs): the head's framing (RFC 9112
//! §6.3) and the chunked-body decoder, differentially against hyper's client reading the same
//! bytes as the response to the same request.
//!
//! Input: a selector byte (odd: the request was `HEAD`), then everything the upstream sends
//! before it closes the connection. Properties: nothing panics; the lean client and hyper
//! agree — both read a response with the same status and the same body bytes, or both refuse
//! it. (A refusal is a 502; a disagreement is a response-splitting or desync risk, or a valid
//! response Portcullis would break.)
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use portcullis::proxy::h1::fuzzing::read_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
}

/// Status and body as hyper's HTTP/1 client reads them, or why it refused.
fn hyper_reads(input: &[u8], head: bool) -> Result<(u16, Vec<u8>), String> {
    let input = Bytes::copy_from_slice(input);
    RT.with(|rt| {
        rt.block_on(async {
            let (client, mut server) = tokio::io::duplex(1 << 20);
            // The upstream answers once the request head has arrived, then closes.
            let upstream = tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if server.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = server.write_all(&input).await;
                let _ = server.shutdown().await;
                // Keep the stream open for reading until the client is done with it.
                let mut rest = Vec::new();
                let _ = server.read_to_end(&mut rest).await;
            });
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
                .await
                .map_err(|e| e.to_string())?;
            let conn = tokio::spawn(conn);
            let req = Request::builder()
                .method(if head { Method::HEAD } else { Method::GET })
                .uri("/")
                .header("host", "upstream")
                .body(Empty::<Bytes>::new())
                .expect("a request");
            let exchange = async {
                let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes()
                    .to_vec();
                Ok((status, body))
            };
            let out = tokio::time::timeout(Duration::from_secs(5), exchange)
                .await
                .expect("hyper did not finish reading a closed connection");
            conn.abort();
            upstream.abort();
            out
        })
    })
}

/// Responses the lean client refuses (502) where hyper reads on, by design: RFC 9112 §6.3 says
/// a message with both `Transfer-Encoding` and `Content-Length` "ought to be handled as an
/// error" (request smuggling, response splitting), and RFC 9110 §8.6 lets a recipient refuse a
/// `Content-Length` list; the lean client also refuses a malformed or repeated `Content-Length`
/// where it does not frame anything (HEAD, 204, 304), which hyper ignores, and a
/// `Transfer-Encoding` that is not a list of tokens or comes in HTTP/1.0, and a `101` to a request that asked for no
/// upgrade. The reverse — lean reading what hyper refuses — is never allowed.
fn refused_by_design(input: &[u8]) -> bool {
    // The head's field lines (httparse also takes bare LF line ends).
    let text = String::from_utf8_lossy(input).to_ascii_lowercase();
    // Empty lines before the status line are skipped, as httparse skips them, and so are
    // interim (1xx other than 101) heads, as both clients skip them.
    let mut text = text.trim_start_matches(['\r', '\n']);
    while text.get(9..10) == Some("1") && text.get(9..12) != Some("101") {
        let end = [
            text.find("\n\n").map(|i| i + 2),
            text.find("\n\r\n").map(|i| i + 3),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(end) = end else { break };
        text = text[end..].trim_start_matches(['\r', '\n']);
    }
    let lines: Vec<&str> = text
        .split('\n')
        .skip(1)
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.is_empty())
        .collect();
    let field = |name: &str| {
        lines
            .iter()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim_end() == name)
            .map(|(_, v)| v.trim().to_string())
            .collect::<Vec<_>>()
    };
    let te = field("transfer-encoding");
    let cl = field("content-length");
    let valid =
        |v: &String| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit());
    let token = |t: &str| {
        let t = t.split(';').next().unwrap_or_default().trim();
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    // A 101 the request did not ask for: the lean client never upgrades (hyper hands it over).
    let switching = text.get(9..12) == Some("101");
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing (hyper refuses some).
    let te_in_http10 = text.starts_with("http/1.0") && !te.is_empty();
    switching
        || te_in_http10
        || (!te.is_empty() && !cl.is_empty())
        || cl.len() > 1
        || !cl.iter().all(valid)
        || !te.iter().all(|v| v.split(',').all(token))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let head = sel & 1 == 1;
    let lean = read_response(input, head).map(|r| (r.status.as_u16(), r.body));
    let hyper = hyper_reads(input, head);
    match (&lean, &hyper) {
        (Ok(l), Ok(h)) => assert_eq!(
            l,
            h,
            "lean and hyper read different responses from {:?}",
            String::from_utf8_lossy(input)
        ),
        (Err(_), Err(_)) => {}
        (Err(_), Ok(_)) if refused_by_design(input) => {}
        _ => panic!(
            "lean {:?} but hyper {:?} for {:?}",
            lean.as_ref().map(|(s, b)| (s, String::from_utf8_lossy(b))),
            hyper.as_ref().map(|(s, b)| (s, String::from_utf8_lossy(b))),
            String::from_utf8_lossy(input)
        ),
    }
});
