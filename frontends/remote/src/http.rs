//! Small HTTP helpers every request path shares: classing reqwest errors for the retry policy,
//! URLs safe to log, `Content-Range` and numeric headers, and bodies read under a bound. A
//! leaf: it imports nothing of this crate but `error`.

use reqwest::Url;

use crate::error::FetchError;

/// How much of a refusal's body is read for the error message.
pub(crate) const MAX_REFUSAL_TEXT: u64 = 1 << 10;

/// Classifies a reqwest error: everything on the wire is transient; building errors are not.
pub(crate) fn classify(e: &reqwest::Error, what: &'static str) -> FetchError {
    if e.is_builder() || e.is_redirect() {
        FetchError::permanent(what, e.to_string())
    } else {
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        // An untrusted or invalid certificate will not get better by retrying.
        if detail.contains("certificate") {
            return FetchError::permanent("TLS certificate not trusted", detail);
        }
        FetchError::transient(what, detail)
    }
}

/// A URL for logs: presigned query strings are credentials, so they are left out.
pub(crate) fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    let _ = u.set_password(None);
    u.to_string()
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (a <= b).then_some((a, b, total))
}

pub(crate) fn header_u64(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The start of a response body, read under a bound.
pub(crate) struct BoundedBody {
    /// At most the bound's worth of bytes.
    pub bytes: Vec<u8>,
    /// Whether that is the whole body (false: more arrived, and reading stopped there).
    pub complete: bool,
}

/// Reads a response body until it ends or passes `max` bytes, whichever comes first; nothing
/// past `max` is kept and no more is read once it is passed.
pub(crate) async fn read_at_most(resp: &mut reqwest::Response, max: u64) -> Result<BoundedBody, FetchError> {
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, "reading the response failed"))? {
        if bytes.len() + chunk.len() > cap {
            let room = cap - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(BoundedBody { bytes, complete: false });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(BoundedBody { bytes, complete: true })
}

/// The start of a refusal's text, on one line, for a message.
pub(crate) fn one_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, Some(100))));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
        assert_eq!(parse_content_range("bytes 0-x/100"), None);
    }

    #[test]
    fn redaction() {
        let u = Url::parse("https://user:pw@store.example/blob?X-Amz-Signature=abc").unwrap();
        let r = redact(&u);
        assert!(!r.contains("abc") && !r.contains("pw"), "{r}");
    }
}
