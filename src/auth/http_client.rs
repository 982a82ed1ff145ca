//! The outbound HTTP client for talking to identity providers: rustls, no redirects followed
//! (a redirect from a token endpoint is an SSRF vector — openidconnect's own docs), a timeout
//! on every call, and a cap on response size. Also the adapter that lets `openidconnect` use it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

/// Largest IdP response we read (discovery, JWKS, token, userinfo).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request to the identity provider failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("identity provider response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("invalid request: {0}")]
    Build(String),
}

/// A cheap-to-clone client shared by every provider.
#[derive(Clone)]
pub struct IdpClient {
    inner: reqwest::Client,
}

impl IdpClient {
    pub fn new(timeout: Duration) -> IdpClient {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(root_store())
        .with_no_client_auth();
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client with a preconfigured rustls backend");
        IdpClient { inner }
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Executes a request and reads the body under the size cap.
    pub async fn execute(
        &self,
        req: reqwest::Request,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let mut resp = self.inner.execute(req).await.map_err(HttpError::Request)?;
        let mut builder = http::Response::builder()
            .status(resp.status())
            .version(resp.version());
        if let Some(h) = builder.headers_mut() {
            *h = resp.headers().clone();
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(HttpError::Request)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| HttpError::Build(e.to_string()))
    }

    pub async fn get_json(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(http::StatusCode, Bytes), HttpError> {
        let mut rb = self
            .inner
            .get(url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(t) = bearer {
            rb = rb.bearer_auth(t);
        }
        let req = rb.build().map_err(HttpError::Request)?;
        let resp = self.execute(req).await?;
        Ok((resp.status(), Bytes::from(resp.into_body())))
    }
}

/// Trust anchors for outbound TLS: the Mozilla roots, plus any extra PEM bundle named by
/// `SSL_CERT_FILE` (private CAs and test CAs).
pub fn root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Ok(path) = std::env::var("SSL_CERT_FILE") {
        add_pem_file(&mut roots, std::path::Path::new(&path));
    }
    roots
}

/// Adds every certificate of a PEM bundle; returns how many were added.
pub fn add_pem_file(roots: &mut rustls::RootCertStore, path: &std::path::Path) -> usize {
    use rustls_pki_types::pem::PemObject;
    let Ok(iter) = rustls_pki_types::CertificateDer::pem_file_iter(path) else {
        return 0;
    };
    let mut n = 0;
    for cert in iter.flatten() {
        if roots.add(cert).is_ok() {
            n += 1;
        }
    }
    n
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpClient {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let req = reqwest::Request::try_from(request).map_err(HttpError::Request)?;
            self.execute(req).await
        })
    }
}
