//! What a caller presented: the one place that reads, and removes, the credential headers.
//!
//! Owns: parsing `Authorization` (`Bearer <token>` or `DPoP <token>`, RFC 6750 / RFC 9449
//! §7.1) and the `DPoP` proof header into a [`Presented`]; refusing an access token in the
//! query, a repeated header or a proof without its scheme; and taking both headers off a
//! request ([`Carried::take`]) so nothing after the edge sees them, keeping their values only
//! for a request another replica will serve (which authenticates it again). Must not: validate
//! a token or a proof (`jwt`, `introspect`, `dpop` do).

use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};

use super::Denial;

/// The proof header of RFC 9449.
pub(crate) const DPOP: &str = "dpop";

/// The credential on a request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` with its `DPoP: <proof>`.
    Dpop {
        /// The access token.
        token: &'a str,
        /// The proof JWT.
        proof: &'a str,
    },
}

impl<'a> Presented<'a> {
    /// The access token, whichever the scheme.
    pub(crate) fn token(self) -> &'a str {
        match self {
            Presented::Bearer(token) | Presented::Dpop { token, .. } => token,
        }
    }

    /// The scheme's name, as a challenge names it.
    pub(crate) fn scheme(self) -> Scheme {
        match self {
            Presented::Bearer(_) => Scheme::Bearer,
            Presented::Dpop { .. } => Scheme::Dpop,
        }
    }
}

/// An authorization scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750.
    Bearer,
    /// RFC 9449.
    Dpop,
}

/// The one header value of `name`, if present (two are a malformed request).
fn single<'h>(headers: &'h HeaderMap, name: &str, what: &str) -> Result<Option<&'h str>, Denial> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Denial::InvalidRequest(format!(
            "more than one {what} header"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Denial::InvalidToken(format!("the {what} header is not ASCII")))
}

/// What `parts` presents: `Ok(None)` for no credential at all.
pub(crate) fn presented(parts: &Parts) -> Result<Option<Presented<'_>>, Denial> {
    if let Some(q) = parts.uri.query()
        && q.split('&')
            .any(|kv| kv.split('=').next() == Some("access_token"))
    {
        return Err(Denial::InvalidRequest(
            "access tokens are accepted only in the Authorization header".into(),
        ));
    }
    let proof = single(&parts.headers, DPOP, "DPoP")?;
    let Some(value) = single(
        &parts.headers,
        header::AUTHORIZATION.as_str(),
        "Authorization",
    )?
    else {
        return match proof {
            Some(_) => Err(Denial::InvalidRequest(
                "a DPoP proof without `Authorization: DPoP <token>`".into(),
            )),
            None => Ok(None),
        };
    };
    let (scheme, token) = value
        .split_once(' ')
        .map(|(s, t)| (s, t.trim()))
        .filter(|(_, t)| !t.is_empty() && !t.contains(' '))
        .ok_or_else(|| {
            Denial::InvalidToken(
                "expected `Authorization: Bearer <token>` or `DPoP <token>`".into(),
            )
        })?;
    if scheme.eq_ignore_ascii_case("bearer") {
        if proof.is_some() {
            // RFC 9449 §7.2: a proof goes with the DPoP scheme; with Bearer it is a client's
            // mistake (or an attempt to make a bound token look like a bearer one).
            return Err(Denial::InvalidRequest(
                "a DPoP proof goes with `Authorization: DPoP <token>`, not Bearer".into(),
            ));
        }
        return Ok(Some(Presented::Bearer(token)));
    }
    if scheme.eq_ignore_ascii_case("dpop") {
        let proof = proof
            .ok_or_else(|| Denial::InvalidDpopProof("the DPoP proof header is missing".into()))?;
        return Ok(Some(Presented::Dpop { token, proof }));
    }
    Err(Denial::InvalidToken(
        "expected `Authorization: Bearer <token>` or `DPoP <token>`".into(),
    ))
}

/// The scheme `Authorization` names, whatever follows it.
pub(crate) fn scheme_named(headers: &HeaderMap) -> Option<Scheme> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let scheme = value.split(' ').next()?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Scheme::Bearer)
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some(Scheme::Dpop)
    } else {
        None
    }
}

/// The credential headers taken off a request: kept only to send it on to the replica that
/// holds its session, which authenticates the caller again from them.
#[derive(Default)]
pub(crate) struct Carried {
    authorization: Option<HeaderValue>,
    proof: Option<HeaderValue>,
}

impl Carried {
    /// Remove the credential headers from `headers`; `keep` decides whether their values are
    /// kept (for forwarding) or dropped at once.
    pub(crate) fn take(headers: &mut HeaderMap, keep: bool) -> Self {
        let authorization = headers.remove(header::AUTHORIZATION);
        let proof = headers.remove(DPOP);
        if keep {
            Self {
                authorization,
                proof,
            }
        } else {
            Self::default()
        }
    }

    /// Put the credential back on a request being forwarded.
    pub(crate) fn restore(self, headers: &mut HeaderMap) {
        if let Some(a) = self.authorization {
            headers.insert(header::AUTHORIZATION, a);
        }
        if let Some(p) = self.proof {
            headers.insert(DPOP, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)], uri: &str) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn each_scheme_and_each_malformed_presentation() {
        let p = parts(&[("authorization", "Bearer abc")], "/mcp");
        assert!(matches!(presented(&p), Ok(Some(Presented::Bearer("abc")))));
        let p = parts(&[("authorization", "dpop abc"), ("dpop", "x.y.z")], "/mcp");
        assert!(matches!(
            presented(&p),
            Ok(Some(Presented::Dpop {
                token: "abc",
                proof: "x.y.z"
            }))
        ));
        let p = parts(&[], "/mcp");
        assert!(matches!(presented(&p), Ok(None)));
        for (headers, uri) in [
            (
                vec![("authorization", "Bearer abc"), ("dpop", "x.y.z")],
                "/mcp",
            ),
            (vec![("dpop", "x.y.z")], "/mcp"),
            (
                vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
                "/mcp",
            ),
            (
                vec![
                    ("dpop", "a.b.c"),
                    ("dpop", "d.e.f"),
                    ("authorization", "DPoP t"),
                ],
                "/mcp",
            ),
            (vec![], "/mcp?access_token=abc"),
        ] {
            let p = parts(&headers, uri);
            assert!(
                matches!(presented(&p), Err(Denial::InvalidRequest(_))),
                "{headers:?} {uri}"
            );
        }
        for value in ["Basic abc", "Bearer", "Bearer a b", "DPoP "] {
            let p = parts(&[("authorization", value)], "/mcp");
            assert!(
                matches!(presented(&p), Err(Denial::InvalidToken(_))),
                "{value}"
            );
        }
        let p = parts(&[("authorization", "DPoP abc")], "/mcp");
        assert!(matches!(presented(&p), Err(Denial::InvalidDpopProof(_))));
    }

    #[test]
    fn taking_removes_both_headers_and_keeps_them_only_when_asked() {
        let mut p = parts(&[("authorization", "DPoP t"), ("dpop", "x.y.z")], "/mcp");
        let carried = Carried::take(&mut p.headers, true);
        assert!(p.headers.is_empty());
        let mut out = HeaderMap::new();
        carried.restore(&mut out);
        assert_eq!(out["authorization"], "DPoP t");
        assert_eq!(out["dpop"], "x.y.z");
        let mut p = parts(&[("authorization", "Bearer t")], "/mcp");
        let mut out = HeaderMap::new();
        Carried::take(&mut p.headers, false).restore(&mut out);
        assert!(p.headers.is_empty() && out.is_empty());
    }
}
