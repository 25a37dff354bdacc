//! Range reads over HTTP, with the rules every blob source shares.
//!
//! One attempt sends `GET` with `Range: bytes=START-END` (inclusive end) and
//! `Accept-Encoding: identity`, then accepts only:
//!
//! | answer | taken as |
//! |---|---|
//! | 206 + `Content-Range: bytes START-END/TOTAL` equal to what was asked (TOTAL = blob size or `*`), body exactly that long | the range |
//! | 200 with the blob's size (Content-Length, and the body counted to its end) | the whole blob: the range is sliced out of it |
//! | anything else | an error, never bytes |
//!
//! Failures are classed (`error::Class`): connect errors, timeouts, 429, 5xx except 501, cut or
//! short bodies are retried with exponential backoff and jitter until the policy's deadline or
//! attempt count; a 401 from the registry refreshes the token once; a 401/403/400/404 from a
//! cached redirect target (an expired presigned storage URL) drops the cached target so the
//! next attempt asks the registry again. Redirects are followed by reqwest, which drops
//! `Authorization` across hosts; the final URL is cached per blob so later reads skip the
//! registry round trip.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};

use crate::cache::{CacheWriter, DiskCache};
use crate::client::{Client, Counters, Credential, RepoAuth, RetryPolicy};
use crate::error::{Class, FetchError};
use crate::http::{MAX_REFUSAL_TEXT, classify, header_u64, one_line, parse_content_range, read_at_most, redact};
use crate::token;

/// Where one blob lives: its URL, how to authenticate there, and the redirect target learnt.
pub(crate) struct Endpoint {
    pub url: Url,
    /// Registry auth; `None` for plain URLs.
    pub auth: Option<Arc<RepoAuth>>,
    /// The final URL of the last redirect (blob storage), used directly until it fails.
    redirect: Mutex<Option<Url>>,
    /// Whether the "server ignores Range" warning was logged (once per blob).
    pub warned_whole: std::sync::atomic::AtomicBool,
    /// The retry policy for requests here, when not the `Remote`'s own.
    policy: Option<RetryPolicy>,
}

impl Endpoint {
    pub fn new(url: Url, auth: Option<Arc<RepoAuth>>) -> Self {
        Endpoint {
            url,
            auth,
            redirect: Mutex::new(None),
            warned_whole: std::sync::atomic::AtomicBool::new(false),
            policy: None,
        }
    }

    /// The same, retried under `policy` instead of the `Remote`'s.
    pub fn with_policy(self, policy: Option<RetryPolicy>) -> Self {
        Endpoint { policy, ..self }
    }

    fn cached_redirect(&self) -> Option<Url> {
        self.redirect.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_redirect(&self, url: Option<Url>) {
        *self.redirect.lock().unwrap_or_else(|p| p.into_inner()) = url;
    }

    /// Builds a request to the blob: to the cached redirect target without credentials, or
    /// to the blob URL with them. Returns the builder, whether it is direct, and the auth
    /// generation used.
    async fn request(
        &self,
        inner: &Client,
        method: reqwest::Method,
    ) -> Result<(reqwest::RequestBuilder, bool, u64), FetchError> {
        let (url, direct) = match self.cached_redirect() {
            Some(u) => (u, true),
            None => (self.url.clone(), false),
        };
        // Credentials go to the registry's own origin only, never to blob storage elsewhere.
        let same_origin = url.origin() == self.url.origin();
        let mut req = inner.http_for(&url).request(method, url);
        let mut generation = 0;
        if same_origin && let Some(auth) = &self.auth {
            let (credential, g) = token::current(inner, auth).await?;
            generation = g;
            req = match credential {
                Credential::Bearer(t) => req.bearer_auth(t),
                Credential::Basic(u, p) => req.basic_auth(u, Some(p)),
                Credential::Nothing => req,
            };
        }
        Ok((req, direct, generation))
    }
}

/// Classifies a failing status. `direct` means the request went to a cached redirect target.
fn status_error(status: StatusCode, direct: bool, url: &Url) -> FetchError {
    let detail = format!("{status} from {}", redact(url));
    match status.as_u16() {
        400 | 401 | 403 | 404 if direct => {
            FetchError::new(Class::ExpiredRedirect, "blob storage refused a redirect target", detail)
        }
        401 => FetchError::new(Class::Unauthorized, "registry refused the credentials", detail),
        403 => FetchError::new(Class::Unauthorized, "access to the blob denied", detail),
        404 => FetchError::new(Class::NotFound, "not found", detail),
        416 => FetchError::permanent("range not satisfiable", detail),
        429 => FetchError::transient("server busy (429)", detail),
        501 => FetchError::permanent("server error (501)", detail),
        500..=599 => FetchError::transient("server error (5xx)", detail),
        _ => FetchError::permanent("unexpected HTTP status", detail),
    }
}

/// Receives a whole blob sent as a 200, keeping `[start, end)`; with a cache, every byte also
/// goes to a cache writer, returned for the caller to commit. Fails unless exactly `size`
/// bytes arrive.
async fn take_from_full(
    inner: &Client,
    mut resp: reqwest::Response,
    size: u64,
    start: u64,
    end: u64,
    cache: Option<&DiskCache>,
) -> Result<(Vec<u8>, Option<CacheWriter>), FetchError> {
    if let Some(len) = header_u64(&resp, CONTENT_LENGTH)
        && len != size
    {
        return Err(FetchError::permanent(
            "server sent 200 with a body that is not the blob",
            format!("Content-Length {len}, blob size {size}"),
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
    let mut pos = 0u64;
    let mut writer = cache.and_then(DiskCache::writer);
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, "reading the response failed"))? {
        Counters::add(&inner.counters.bytes, chunk.len() as u64);
        let c_end = pos + chunk.len() as u64;
        if c_end > size {
            return Err(FetchError::transient("response longer than the blob", format!("more than {size} bytes")));
        }
        let lo = start.max(pos);
        let hi = end.min(c_end);
        if lo < hi {
            out.extend_from_slice(&chunk[(lo - pos) as usize..(hi - pos) as usize]);
        }
        if let Some(w) = writer.as_mut() {
            w.write(&chunk);
        }
        pos = c_end;
    }
    if pos != size {
        return Err(FetchError::transient("response body cut short", format!("{pos} of {size} bytes")));
    }
    Ok((out, writer))
}

/// The result of one range attempt.
pub(crate) enum Got {
    /// Exactly the range.
    Range(Vec<u8>),
    /// The range, sliced from a whole-blob 200 answer, and the whole blob written to the
    /// cache (not yet committed), when there is a cache.
    FromWhole(Vec<u8>, Option<CacheWriter>),
}

/// Sends a GET for the blob at `ep` (with `Range: bytes=START-(END-1)` when `range` is given)
/// and returns its answer when it is a success; caches the redirect target it was sent to.
/// `seen_generation` gets the auth generation used.
async fn send_get(
    inner: &Client,
    ep: &Endpoint,
    range: Option<(u64, u64)>,
    seen_generation: &mut u64,
) -> Result<reqwest::Response, FetchError> {
    let (req, direct, generation) = ep.request(inner, reqwest::Method::GET).await?;
    *seen_generation = generation;
    let req = match range {
        Some((start, end)) => req.header(RANGE, format!("bytes={}-{}", start, end - 1)),
        None => req,
    };
    let req = req.header(ACCEPT_ENCODING, "identity");
    Counters::add(&inner.counters.requests, 1);
    let timeout = inner.options.request_timeout;
    let resp = match tokio::time::timeout(timeout, req.send()).await {
        Err(_) => return Err(FetchError::transient("request timed out", format!("no answer in {timeout:?}"))),
        Ok(Err(e)) => return Err(classify(&e, "request failed")),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let final_url = resp.url().clone();
    if !status.is_success() {
        return Err(status_error(status, direct, &final_url));
    }
    if !direct && final_url != ep.url {
        tracing::debug!(from = %redact(&ep.url), to = %redact(&final_url), "blob redirected; caching the target");
        ep.set_redirect(Some(final_url));
    }
    Ok(resp)
}

/// Checks that a 206 answer's Content-Range is exactly `[start, end)` of a blob of `size`.
fn check_partial(resp: &reqwest::Response, size: u64, start: u64, end: u64) -> Result<(), FetchError> {
    if end <= start {
        return Err(FetchError::permanent("206 for an empty range", format!("from {}", redact(resp.url()))));
    }
    let cr = resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some((a, b, total)) = cr.as_deref().and_then(parse_content_range) else {
        return Err(FetchError::permanent(
            "206 without a valid Content-Range",
            format!("Content-Range {cr:?} from {}", redact(resp.url())),
        ));
    };
    if a != start || b != end - 1 || total.is_some_and(|t| t != size) {
        return Err(FetchError::transient(
            "206 for another range than asked",
            format!("asked bytes {start}-{}/{size}, got {}", end - 1, cr.unwrap_or_default()),
        ));
    }
    Ok(())
}

/// One attempt at `[start, end)` of a blob of `size` bytes.
async fn attempt(
    inner: &Client,
    ep: &Endpoint,
    size: u64,
    start: u64,
    end: u64,
    seen_generation: &mut u64,
    cache: Option<&DiskCache>,
) -> Result<Got, FetchError> {
    let mut resp = send_get(inner, ep, Some((start, end)), seen_generation).await?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            check_partial(&resp, size, start, end)?;
            let want = end - start;
            let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
            while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, "reading the response failed"))? {
                Counters::add(&inner.counters.bytes, chunk.len() as u64);
                if out.len() as u64 + chunk.len() as u64 > want {
                    return Err(FetchError::transient("206 body longer than its range", format!("{want} bytes asked")));
                }
                out.extend_from_slice(&chunk);
            }
            if (out.len() as u64) < want {
                return Err(FetchError::transient("response body cut short", format!("{} of {want} bytes", out.len())));
            }
            Ok(Got::Range(out))
        }
        StatusCode::OK => {
            let (data, writer) = take_from_full(inner, resp, size, start, end, cache).await?;
            Ok(Got::FromWhole(data, writer))
        }
        other => Err(FetchError::permanent(
            "unexpected HTTP status",
            format!("{other} from {} for a range request", redact(resp.url())),
        )),
    }
}

/// Why streaming a blob stopped.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The network or server, after the retry policy.
    Fetch(FetchError),
    /// The sink refused the bytes (a local write failed).
    Sink(std::io::Error),
}

/// Streams a whole blob of `size` bytes to `sink`, in order, each byte once, under the retry
/// policy. A body cut short is resumed with a Range from the first byte not yet received, and
/// the policy's deadline starts again whenever an attempt brought bytes, so a long transfer
/// is not given up for one late cut. Answers are taken as range reads take them: a 206 with
/// exactly the asked Content-Range, or a 200 with the blob's size (to a resumed request, the
/// bytes already received are skipped); a body longer than the blob is an error.
pub(crate) async fn stream_blob(
    inner: &Client,
    ep: &Endpoint,
    size: u64,
    sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
) -> Result<(), StreamError> {
    let mut retry = Retry::new(inner, ep);
    let mut done = 0u64;
    loop {
        let before = done;
        let mut generation = 0;
        match stream_attempt(inner, ep, size, &mut done, &mut generation, sink).await {
            Ok(()) => return Ok(()),
            Err(StreamError::Fetch(e)) => {
                if done > before {
                    retry = Retry::new(inner, ep);
                }
                retry.after(e, generation).await.map_err(StreamError::Fetch)?;
            }
            Err(sink_error) => return Err(sink_error),
        }
    }
}

/// One attempt of [`stream_blob`], from byte `done` on; `done` counts what reached the sink.
async fn stream_attempt(
    inner: &Client,
    ep: &Endpoint,
    size: u64,
    done: &mut u64,
    seen_generation: &mut u64,
    sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
) -> Result<(), StreamError> {
    let fetch = StreamError::Fetch;
    let range = (*done > 0).then_some((*done, size));
    let mut resp = send_get(inner, ep, range, seen_generation).await.map_err(fetch)?;
    // Where the body starts in the blob.
    let mut pos = match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            check_partial(&resp, size, *done, size).map_err(fetch)?;
            *done
        }
        StatusCode::OK => {
            if let Some(len) = header_u64(&resp, CONTENT_LENGTH).filter(|&len| len != size) {
                return Err(fetch(FetchError::permanent(
                    "server sent 200 with a body that is not the blob",
                    format!("Content-Length {len}, blob size {size}"),
                )));
            }
            0
        }
        other => {
            return Err(fetch(FetchError::permanent(
                "unexpected HTTP status",
                format!("{other} from {} for a blob", redact(resp.url())),
            )));
        }
    };
    while let Some(chunk) = resp.chunk().await.map_err(|e| fetch(classify(&e, "reading the response failed")))? {
        Counters::add(&inner.counters.bytes, chunk.len() as u64);
        let c_end = pos + chunk.len() as u64;
        if c_end > size {
            return Err(fetch(FetchError::permanent(
                "response longer than the blob",
                format!("more than {size} bytes"),
            )));
        }
        if c_end > *done {
            let skip = usize::try_from(done.saturating_sub(pos)).unwrap_or(0);
            sink(&chunk[skip..]).map_err(StreamError::Sink)?;
            *done = c_end;
        }
        pos = c_end;
    }
    if *done < size {
        return Err(fetch(FetchError::transient("response body cut short", format!("{done} of {size} bytes"))));
    }
    Ok(())
}

/// A manifest or index: the body of a GET with `Accept: accept`, at most `max` bytes (a longer
/// answer is refused while it arrives, never held whole), under the same retry, auth and
/// redirect rules as blob reads.
pub(crate) async fn fetch_manifest(
    inner: &Client,
    ep: &Endpoint,
    accept: &str,
    max: u64,
) -> Result<Vec<u8>, FetchError> {
    let mut retry = Retry::new(inner, ep);
    let mut generation = 0;
    loop {
        match manifest_attempt(inner, ep, accept, max, &mut generation).await {
            Ok(body) => return Ok(body),
            Err(e) => retry.after(e, generation).await?,
        }
    }
}

async fn manifest_attempt(
    inner: &Client,
    ep: &Endpoint,
    accept: &str,
    max: u64,
    seen_generation: &mut u64,
) -> Result<Vec<u8>, FetchError> {
    let (req, direct, generation) = ep.request(inner, reqwest::Method::GET).await?;
    *seen_generation = generation;
    let timeout = inner.options.request_timeout;
    let mut resp = match tokio::time::timeout(timeout, req.header(ACCEPT, accept).send()).await {
        Err(_) => return Err(FetchError::transient("request timed out", format!("no answer in {timeout:?}"))),
        Ok(Err(e)) => return Err(classify(&e, "request failed")),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if !status.is_success() {
        return Err(status_error(status, direct, resp.url()));
    }
    let too_large = |what: String| FetchError::permanent("manifest too large", format!("{what}, at most {max} taken"));
    if let Some(len) = header_u64(&resp, CONTENT_LENGTH).filter(|&len| len > max) {
        return Err(too_large(format!("{len} bytes")));
    }
    let body = read_at_most(&mut resp, max).await?;
    if !body.complete {
        return Err(too_large(format!("more than {max} bytes")));
    }
    Ok(body.bytes)
}

/// The retry policy and the auth/redirect rules, applied between attempts.
struct Retry<'a> {
    inner: &'a Client,
    ep: &'a Endpoint,
    policy: RetryPolicy,
    t0: Instant,
    backoff: Duration,
    attempts: u32,
    refreshed: bool,
    re_resolved: u32,
}

impl<'a> Retry<'a> {
    fn new(inner: &'a Client, ep: &'a Endpoint) -> Self {
        let policy = ep.policy.clone().unwrap_or_else(|| inner.options.retry.clone());
        Retry {
            inner,
            ep,
            t0: Instant::now(),
            backoff: policy.initial_backoff,
            policy,
            attempts: 0,
            refreshed: false,
            re_resolved: 0,
        }
    }

    /// After a failed attempt: `Ok` to try again (having waited if needed), `Err` to give up.
    /// `generation` is the auth generation the attempt used.
    async fn after(&mut self, err: FetchError, generation: u64) -> Result<(), FetchError> {
        self.attempts += 1;
        let policy = &self.policy;
        match err.class {
            Class::Unauthorized if !self.refreshed && self.ep.auth.is_some() => {
                self.refreshed = true;
                if let Some(auth) = &self.ep.auth {
                    token::refresh(self.inner, auth, generation).await?;
                }
                Ok(())
            }
            Class::ExpiredRedirect if self.re_resolved < 3 => {
                tracing::debug!(detail = %err.detail, "redirect target failed; resolving the redirect again");
                self.re_resolved += 1;
                self.ep.set_redirect(None);
                Ok(())
            }
            Class::Transient => {
                let elapsed = self.t0.elapsed();
                if self.attempts >= policy.max_attempts || elapsed + self.backoff > policy.deadline {
                    return Err(FetchError {
                        detail: format!("{} (gave up after {} attempts in {elapsed:.1?})", err.detail, self.attempts),
                        ..err
                    });
                }
                tracing::debug!(attempt = self.attempts, detail = %err.detail, "{}; retrying", err.what);
                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(jitter(self.backoff)).await;
                self.backoff = (self.backoff * 2).min(policy.max_backoff);
                Ok(())
            }
            _ => Err(err),
        }
    }
}

/// `d` scaled by a pseudo-random factor in [0.5, 1.0).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(frac)
}

/// Reads `[start, end)` of a blob of `size` bytes, with retries. With a cache, a whole-blob
/// answer (200) is also written to a cache writer (see [`Got::FromWhole`]).
pub(crate) async fn fetch_range(
    inner: &Client,
    ep: &Endpoint,
    size: u64,
    start: u64,
    end: u64,
    cache: Option<&DiskCache>,
) -> Result<Got, FetchError> {
    let mut retry = Retry::new(inner, ep);
    loop {
        let mut generation = 0;
        match attempt(inner, ep, size, start, end, &mut generation, cache).await {
            Ok(got) => return Ok(got),
            Err(e) => retry.after(e, generation).await?,
        }
    }
}

/// Finds a blob's size: `HEAD` (Content-Length of a 200), else `GET bytes=0-0` (the total of
/// a 206's Content-Range).
pub(crate) async fn fetch_size(inner: &Client, ep: &Endpoint) -> Result<u64, FetchError> {
    let mut retry = Retry::new(inner, ep);
    loop {
        let mut generation = 0;
        match probe_size(inner, ep, &mut generation).await {
            Ok(n) => return Ok(n),
            Err(e) => retry.after(e, generation).await?,
        }
    }
}

async fn probe_size(inner: &Client, ep: &Endpoint, generation: &mut u64) -> Result<u64, FetchError> {
    let (req, direct, g) = ep.request(inner, reqwest::Method::HEAD).await?;
    *generation = g;
    Counters::add(&inner.counters.requests, 1);
    let resp = req.header(ACCEPT_ENCODING, "identity").send().await.map_err(|e| classify(&e, "HEAD failed"))?;
    let status = resp.status();
    if status == StatusCode::OK
        && let Some(n) = header_u64(&resp, CONTENT_LENGTH)
    {
        return Ok(n);
    }
    if !status.is_success() && status != StatusCode::METHOD_NOT_ALLOWED {
        return Err(status_error(status, direct, resp.url()));
    }
    let (req, direct, g) = ep.request(inner, reqwest::Method::GET).await?;
    *generation = g;
    Counters::add(&inner.counters.requests, 1);
    let resp = req
        .header(RANGE, "bytes=0-0")
        .header(ACCEPT_ENCODING, "identity")
        .send()
        .await
        .map_err(|e| classify(&e, "size probe failed"))?;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range)
            .and_then(|(_, _, total)| total)
            .ok_or_else(|| FetchError::permanent("cannot tell the blob's size", "206 without a total")),
        StatusCode::OK => header_u64(&resp, CONTENT_LENGTH)
            .ok_or_else(|| FetchError::permanent("cannot tell the blob's size", "no Content-Length")),
        s => Err(status_error(s, direct, resp.url())),
    }
}

/// One kind of request to a registry, as [`send_expecting`] sends it.
pub(crate) struct Call<'a> {
    pub method: reqwest::Method,
    /// The statuses that count as success; the answer is returned for the caller to read.
    pub ok: &'a [StatusCode],
    /// Each attempt must be answered within the request timeout. Without (uploads, whose length
    /// has no bound), only each read waits at most that long.
    pub whole_timeout: bool,
    /// Adds each attempt's headers and body.
    pub prepare: &'a (dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + Sync),
}

/// Sends `call` to `ep`, with its credentials, under the retry policy. Returns the answer when
/// its status is one of `call.ok`. Other answers are classed as range reads' are (a 401 gets
/// the credential once more; 429 and 5xx are retried), with the start of their text (at most
/// `MAX_REFUSAL_TEXT` bytes read) in the error's detail.
pub(crate) async fn send_expecting(
    inner: &Client,
    ep: &Endpoint,
    call: &Call<'_>,
) -> Result<reqwest::Response, FetchError> {
    let mut retry = Retry::new(inner, ep);
    loop {
        let mut generation = 0;
        match send_once(inner, ep, call, &mut generation).await {
            Ok(r) => return Ok(r),
            Err(e) => retry.after(e, generation).await?,
        }
    }
}

/// One attempt of [`send_expecting`]; `seen_generation` gets the auth generation used.
pub(crate) async fn send_once(
    inner: &Client,
    ep: &Endpoint,
    call: &Call<'_>,
    seen_generation: &mut u64,
) -> Result<reqwest::Response, FetchError> {
    let (req, direct, generation) = ep.request(inner, call.method.clone()).await?;
    *seen_generation = generation;
    let sending = (call.prepare)(req).send();
    let answer = if call.whole_timeout {
        let timeout = inner.options.request_timeout;
        tokio::time::timeout(timeout, sending)
            .await
            .map_err(|_| FetchError::transient("request timed out", format!("no answer in {timeout:?}")))?
    } else {
        sending.await
    };
    let mut resp = answer.map_err(|e| classify(&e, "request failed"))?;
    let status = resp.status();
    if call.ok.contains(&status) {
        return Ok(resp);
    }
    let url = resp.url().clone();
    let text = read_at_most(&mut resp, MAX_REFUSAL_TEXT).await.map(|b| b.bytes).unwrap_or_default();
    let mut err = if status.is_success() {
        FetchError::permanent("unexpected HTTP status", format!("{status} from {}", redact(&url)))
    } else {
        status_error(status, direct, &url)
    };
    if !text.is_empty() {
        err.detail = format!("{}: {}", err.detail, one_line(&text));
    }
    Err(err)
}
