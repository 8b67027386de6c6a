//! The HTTP client that talks to OpenID providers: discovery, keys, the token endpoint.
//!
//! Its own, small, and strict: hyper-util's client over rustls (ring, the webpki roots), plain
//! HTTP only for loopback issuers (which configuration already restricts). It follows no
//! redirects — a token request that is redirected could carry the client secret and the code
//! somewhere else, and OpenID Connect needs none —, gives up after [`TIMEOUT`], and reads at
//! most [`MAX_BODY`] of an answer, so a hostile or broken provider can neither hang a login
//! nor fill memory.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The longest one request to a provider may take, answer included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from a provider (a JWKS with a few RSA keys is a few KiB).
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Why a request to a provider failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No answer in time.
    #[error("no answer within {} s", TIMEOUT.as_secs())]
    Timeout,
    /// Connecting or talking failed.
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The answer's body could not be read, or was over [`MAX_BODY`].
    #[error("reading the answer failed (or it was over {MAX_BODY} bytes)")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request could not be built.
    #[error("building the request")]
    Build(#[source] http::Error),
}

/// A cheap-to-clone client (one connection pool for every provider).
#[derive(Clone, Debug)]
pub(crate) struct ProviderClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What [`ProviderClient::execute`] returns: the answer with its body read.
pub(crate) type Answer =
    Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, HttpError>> + Send>>;

impl ProviderClient {
    /// A client trusting the webpki roots (Mozilla's), on the process's ring provider.
    pub(crate) fn new() -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        #[allow(clippy::expect_used)] // ring supports the default protocol versions: a constant.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .expect("ring supports TLS 1.2 and 1.3")
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            inner: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// Sends `request` and reads its answer (see the module docs for the limits).
    pub(crate) fn execute(&self, request: http::Request<Vec<u8>>) -> Answer {
        let client = self.inner.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
            let work = async {
                let response = client.request(request).await.map_err(HttpError::Request)?;
                let (parts, body) = response.into_parts();
                let bytes = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map_err(HttpError::Body)?
                    .to_bytes();
                Ok(http::Response::from_parts(parts, bytes.to_vec()))
            };
            tokio::time::timeout(TIMEOUT, work)
                .await
                .map_err(|_| HttpError::Timeout)?
        })
    }

    /// `GET url`, accepting JSON.
    pub(crate) async fn get(&self, url: &url::Url) -> Result<http::Response<Vec<u8>>, HttpError> {
        let request = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(HttpError::Build)?;
        self.execute(request).await
    }
}

impl ProviderClient {
    /// `GET url` on a connection of its own, closed after the answer: a balancer in front of
    /// `url` chooses a backend per connection as often as per request.
    pub(crate) async fn get_on_new_connection(
        &self,
        url: &url::Url,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let request = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONNECTION, "close")
            .body(Vec::new())
            .map_err(HttpError::Build)?;
        self.execute(request).await
    }
}

/// What `openidconnect` sends its requests through.
impl<'c> openidconnect::AsyncHttpClient<'c> for ProviderClient {
    type Error = HttpError;
    type Future = Answer;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        self.execute(request)
    }
}

impl Default for ProviderClient {
    fn default() -> Self {
        Self::new()
    }
}
