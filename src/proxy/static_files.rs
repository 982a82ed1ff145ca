//! `file:///dir` upstreams: a static directory. GET and HEAD only; `index.html` for
//! directories; content type by extension; files streamed, never read whole. The resolved
//! path (symlinks included) must stay inside the directory, so no request can read outside it.

use std::path::{Path, PathBuf};

use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::StreamBody;
use tokio_util::io::ReaderStream;

use crate::error::RequestError;
use crate::http::body::{self, Body};

pub struct StaticDir {
    root: PathBuf,
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        Some("xml") => "application/xml",
        _ => "application/octet-stream",
    }
}

fn decode_segment(seg: &str) -> Option<String> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(seg).collect();
    let s = String::from_utf8(bytes).ok()?;
    // After decoding, a segment must still be one plain name.
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']) {
        return None;
    }
    Some(s)
}

impl StaticDir {
    pub fn new(root: PathBuf) -> StaticDir {
        let root = root.canonicalize().unwrap_or(root);
        StaticDir { root }
    }

    /// Serves a normalised request path.
    pub async fn serve(&self, method: &Method, path: &str) -> Result<Response<Body>, RequestError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(RequestError::MethodNotAllowed);
        }
        let mut target = self.root.clone();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            target.push(decode_segment(seg).ok_or(RequestError::NotFound)?);
        }
        let mut meta = tokio::fs::metadata(&target)
            .await
            .map_err(|_| RequestError::NotFound)?;
        if meta.is_dir() {
            if !path.ends_with('/') {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
                let loc = HeaderValue::from_str(&format!("{path}/"))
                    .map_err(|_| RequestError::NotFound)?;
                r.headers_mut().insert(header::LOCATION, loc);
                return Ok(r);
            }
            target.push("index.html");
            meta = tokio::fs::metadata(&target)
                .await
                .map_err(|_| RequestError::NotFound)?;
        }
        let real = tokio::fs::canonicalize(&target)
            .await
            .map_err(|_| RequestError::NotFound)?;
        if !real.starts_with(&self.root) || !meta.is_file() {
            return Err(RequestError::NotFound);
        }
        let mut r = if method == Method::HEAD {
            Response::new(body::empty())
        } else {
            let file = tokio::fs::File::open(&real)
                .await
                .map_err(|_| RequestError::NotFound)?;
            let stream = ReaderStream::with_capacity(file, 64 * 1024);
            use futures_util::TryStreamExt;
            let frames = stream.map_ok(http_body::Frame::data);
            Response::new(body::stream(StreamBody::new(frames)))
        };
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&real)),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_inside_only() {
        let dir = std::env::temp_dir().join(format!("pc-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.join("sub/a.css"), "x{}").unwrap();
        let s = StaticDir::new(dir.clone());
        let r = s.serve(&Method::GET, "/").await.unwrap();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let r = s.serve(&Method::GET, "/sub/a.css").await.unwrap();
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "3");
        assert_eq!(s.serve(&Method::GET, "/sub").await.unwrap().status(), 301);
        assert!(s.serve(&Method::GET, "/%2e%2e/etc/passwd").await.is_err());
        assert!(
            s.serve(&Method::GET, "/..%2f..%2fetc/passwd")
                .await
                .is_err()
        );
        assert!(s.serve(&Method::GET, "/missing").await.is_err());
        assert!(s.serve(&Method::POST, "/").await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
