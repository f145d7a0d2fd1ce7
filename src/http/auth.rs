//! Bearer tokens and scopes. Two tokens: admin (everything) and read-only (GET endpoints and
//! /metrics). A server without any token accepts everyone as admin, and only on a loopback
//! address (see [`super::serve`]).
//!
//! Tokens are compared in constant time: the presented token and each configured token are
//! hashed (SHA-256) and the digests compared with `subtle`, so neither the content nor the
//! length of a configured token leaks through timing; every configured token is compared on
//! every request.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Shortest token accepted (bytes): anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// A secret that never shows in logs or `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a token.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET endpoints, /metrics.
    Read,
    /// Everything: enqueue, revoke, retry, pause, purge.
    Admin,
}

/// The configured tokens, as digests.
#[derive(Clone)]
pub struct Auth {
    admin: Option<[u8; 32]>,
    read: Option<[u8; 32]>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("admin", &self.admin.is_some())
            .field("read", &self.read.is_some())
            .finish()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Auth {
    /// Tokens for the admin and read-only scopes (either may be absent).
    pub fn new(admin: Option<&Secret>, read: Option<&Secret>) -> crate::Result<Self> {
        for (what, t) in [("admin", admin), ("read-only", read)] {
            if let Some(t) = t
                && t.expose().len() < MIN_TOKEN_LEN
            {
                return Err(crate::Error::Invalid(format!(
                    "the {what} API token must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
                )));
            }
        }
        if let (Some(a), Some(r)) = (admin, read)
            && a == r
        {
            return Err(crate::Error::Invalid(
                "the admin and read-only API tokens must differ".into(),
            ));
        }
        Ok(Auth {
            admin: admin.map(|t| digest(t.expose())),
            read: read.map(|t| digest(t.expose())),
        })
    }

    /// No token configured: everyone is admin (loopback only).
    pub fn is_open(&self) -> bool {
        self.admin.is_none() && self.read.is_none()
    }

    /// The scope the request's `Authorization: Bearer …` header grants.
    pub fn scope_of(&self, parts: &Parts) -> Result<Scope, ApiError> {
        if self.is_open() {
            return Ok(Scope::Admin);
        }
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(ApiError::unauthorized)?;
        let d = digest(presented);
        let is = |t: &Option<[u8; 32]>| match t {
            Some(t) => t.ct_eq(&d),
            None => subtle::Choice::from(0),
        };
        // Both comparisons always run.
        let (admin, read) = (is(&self.admin), is(&self.read));
        if bool::from(admin) {
            Ok(Scope::Admin)
        } else if bool::from(read) {
            Ok(Scope::Read)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// Proof that the request may read (any valid token). Put it in a handler's arguments.
#[derive(Debug, Clone, Copy)]
pub struct Read;

/// Proof that the request may act (the admin token). Put it in a handler's arguments.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Read {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth().scope_of(parts).map(|_| Read)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth().scope_of(parts)? {
            Scope::Admin => Ok(Admin),
            Scope::Read => Err(ApiError::forbidden()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = Request::builder().uri("/");
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn scopes() {
        let admin = Secret::new("a".repeat(20));
        let read = Secret::new("r".repeat(20));
        let auth = Auth::new(Some(&admin), Some(&read)).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            auth.scope_of(&parts(Some(&bearer(admin.expose()))))
                .unwrap(),
            Scope::Admin
        );
        assert_eq!(
            auth.scope_of(&parts(Some(&format!("bearer  {}", read.expose()))))
                .unwrap(),
            Scope::Read
        );
        assert!(auth.scope_of(&parts(None)).is_err());
        assert!(auth.scope_of(&parts(Some("Bearer nope"))).is_err());
        assert!(auth.scope_of(&parts(Some(admin.expose()))).is_err());
        assert!(auth.scope_of(&parts(Some("Basic abc"))).is_err());
        let open = Auth::new(None, None).unwrap();
        assert_eq!(open.scope_of(&parts(None)).unwrap(), Scope::Admin);
    }

    #[test]
    fn weak_or_equal_tokens_are_refused() {
        assert!(Auth::new(Some(&Secret::new("short")), None).is_err());
        let t = Secret::new("x".repeat(32));
        assert!(Auth::new(Some(&t), Some(&t)).is_err());
        assert!(!format!("{t:?}").contains('x'));
    }
}
