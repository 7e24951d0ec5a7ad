//! Requests signed by Enterprise clients with their own ML-DSA-65 keys ("PQC API keys"):
//! HTTP Message Signatures (RFC 9421) over `@method`, `@authority`, `@path`, `@query` and, when
//! there is a body, `content-digest` (RFC 9530, `sha-256`).
//!
//! The parts are pure: the Structured Field parsing and serialization the two headers need
//! (RFC 8941, [`sf`]), the signature base (RFC 9421 §2.5), the Content-Digest check, the
//! freshness check (`now` is a parameter), and ML-DSA-65 itself (pure, empty context). The
//! origin does the I/O around them: the key lookup, the replay store, the response.
//!
//! A request carries
//!
//! ```text
//! Content-Digest: sha-256=:<base64 of SHA-256(body)>:
//! Signature-Input: sig1=("@method" "@authority" "@path" "@query" "content-digest");created=1765100000;keyid="0123456789abcdef";alg="ml-dsa-65"
//! Signature: sig1=:<base64 of the 3,309-byte ML-DSA-65 signature>:
//! ```

use crate::error_code::ErrorCode;
use base64::Engine as _;
use ml_dsa::{EncodedVerifyingKey, Keypair as _, MlDsa65};
use sha2::{Digest, Sha256, Sha512};
use std::fmt;

/// Header names (lowercase).
pub mod header {
    pub const SIGNATURE_INPUT: &str = "signature-input";
    pub const SIGNATURE: &str = "signature";
    pub const CONTENT_DIGEST: &str = "content-digest";
}

/// The `alg` parameter of a PQC API key signature.
pub const ALG: &str = "ml-dsa-65";
/// How old (or how far ahead) `created` may be.
pub const MAX_AGE_SECS: u64 = 300;
/// The label [`sign_request`] writes.
pub const LABEL: &str = "sig1";
/// Components every signature covers, in the order [`sign_request`] writes them.
pub const REQUIRED_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];
/// Covered as well whenever the request has a body.
pub const DIGEST_COMPONENT: &str = "content-digest";
/// Bytes of an ML-DSA-65 public key (FIPS 204 pkEncode).
pub const PUBLIC_KEY_BYTES: usize = 1952;
/// Bytes of an ML-DSA-65 signature (FIPS 204 sigEncode).
pub const SIGNATURE_BYTES: usize = 3309;
/// Most bytes of Signature-Input or Signature read (a signature is ~4.4 kB of base64).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Members of a dictionary, items of an inner list and parameters of one item, at most: far
/// more than any signature needs, and few enough that duplicate checks stay cheap.
pub const MAX_MEMBERS: usize = 64;

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("{header} is malformed: {problem}")]
    Malformed {
        header: &'static str,
        problem: String,
    },
    #[error("{0} is missing: a signed request carries Signature-Input and Signature")]
    Missing(&'static str),
    #[error("Signature-Input has no signature with alg=\"{ALG}\"")]
    NoPqcSignature,
    #[error("Signature has no entry labelled {0:?} (the label in Signature-Input)")]
    NoSignatureForLabel(String),
    #[error("the signature must cover {0}")]
    Uncovered(&'static str),
    #[error("the signature covers {0}, which this server does not resolve: cover only @method, @authority, @path, @query and header fields")]
    Unsupported(String),
    #[error("the covered field {0:?} is not in the request")]
    AbsentField(String),
    #[error("Content-Digest has no sha-256 digest")]
    NoSha256Digest,
    #[error("Content-Digest {0} does not match the body")]
    DigestMismatch(&'static str),
    #[error("the ML-DSA-65 signature does not verify over the request's signature base")]
    BadSignature,
    #[error("created {created} is {age_secs}s old (at most {max_secs}s)")]
    Stale {
        created: i64,
        age_secs: i64,
        max_secs: u64,
    },
    #[error("created {created} is {ahead_secs}s in the future (at most {max_secs}s)")]
    FromTheFuture {
        created: i64,
        ahead_secs: i64,
        max_secs: u64,
    },
    #[error("the signature expired at {0}")]
    Expired(i64),
}

impl SigError {
    /// The error code a refusal is answered with: the request's own shape is 400
    /// `malformed_signature`; a signature that does not match the request is 401
    /// `invalid_request_signature`; a stale one 401 `stale_signature`.
    pub fn code(&self) -> ErrorCode {
        match self {
            SigError::Malformed { .. }
            | SigError::Missing(_)
            | SigError::NoPqcSignature
            | SigError::NoSignatureForLabel(_)
            | SigError::Uncovered(_)
            | SigError::Unsupported(_)
            | SigError::AbsentField(_)
            | SigError::NoSha256Digest => ErrorCode::MalformedSignature,
            SigError::DigestMismatch(_) | SigError::BadSignature => {
                ErrorCode::InvalidRequestSignature
            }
            SigError::Stale { .. } | SigError::FromTheFuture { .. } | SigError::Expired(_) => {
                ErrorCode::StaleSignature
            }
        }
    }
}

fn malformed(header: &'static str, problem: impl Into<String>) -> SigError {
    SigError::Malformed {
        header,
        problem: problem.into(),
    }
}

/// The parts of Structured Field Values (RFC 8941) that signatures and digests use:
/// dictionaries whose members are items or inner lists, with parameters. Decimals are not
/// parsed (no signature parameter is one).
pub mod sf {
    use base64::Engine as _;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Bare {
        Integer(i64),
        String(String),
        Token(String),
        Boolean(bool),
        Bytes(Vec<u8>),
    }

    pub type Params = Vec<(String, Bare)>;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Item {
        pub bare: Bare,
        pub params: Params,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Member {
        Item(Item),
        InnerList(Vec<Item>, Params),
    }

    struct Parser<'a> {
        s: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.at).copied()
        }
        fn skip_sp(&mut self) {
            while self.peek() == Some(b' ') {
                self.at += 1;
            }
        }
        fn skip_ows(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.at += 1;
            }
        }
        fn fail<T>(&self, what: &str) -> Result<T, String> {
            Err(format!("{what} at byte {}", self.at))
        }

        fn key(&mut self) -> Result<String, String> {
            let start = self.at;
            match self.peek() {
                Some(c) if c.is_ascii_lowercase() || c == b'*' => self.at += 1,
                _ => return self.fail("expected a key (lowercase letter or *)"),
            }
            while let Some(c) = self.peek() {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c) {
                    self.at += 1;
                } else {
                    break;
                }
            }
            Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
        }

        fn bare(&mut self) -> Result<Bare, String> {
            match self.peek() {
                Some(b'-' | b'0'..=b'9') => self.integer(),
                Some(b'"') => self.string(),
                Some(b':') => self.bytes(),
                Some(b'?') => self.boolean(),
                Some(c) if c.is_ascii_alphabetic() || c == b'*' => Ok(self.token()),
                _ => self.fail("expected an item"),
            }
        }

        fn integer(&mut self) -> Result<Bare, String> {
            let negative = self.peek() == Some(b'-');
            if negative {
                self.at += 1;
            }
            let start = self.at;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.at += 1;
            }
            let digits = &self.s[start..self.at];
            if digits.is_empty() || digits.len() > 15 {
                return self.fail("expected an integer of 1-15 digits");
            }
            if self.peek() == Some(b'.') {
                return self.fail("decimals are not accepted here");
            }
            let n: i64 = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| format!("bad integer at byte {start}"))?;
            Ok(Bare::Integer(if negative { -n } else { n }))
        }

        fn string(&mut self) -> Result<Bare, String> {
            self.at += 1;
            let mut out = String::new();
            loop {
                match self.peek() {
                    None => return self.fail("unterminated string"),
                    Some(b'\\') => {
                        self.at += 1;
                        match self.peek() {
                            Some(c @ (b'"' | b'\\')) => {
                                out.push(c as char);
                                self.at += 1;
                            }
                            _ => return self.fail("bad escape in a string"),
                        }
                    }
                    Some(b'"') => {
                        self.at += 1;
                        return Ok(Bare::String(out));
                    }
                    Some(c @ 0x20..=0x7e) => {
                        out.push(c as char);
                        self.at += 1;
                    }
                    Some(_) => return self.fail("a string holds printable ASCII only"),
                }
            }
        }

        fn token(&mut self) -> Bare {
            let start = self.at;
            self.at += 1;
            while let Some(c) = self.peek() {
                if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c) {
                    self.at += 1;
                } else {
                    break;
                }
            }
            Bare::Token(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
        }

        fn bytes(&mut self) -> Result<Bare, String> {
            self.at += 1;
            let start = self.at;
            while let Some(c) = self.peek() {
                if c.is_ascii_alphanumeric() || b"+/=".contains(&c) {
                    self.at += 1;
                } else {
                    break;
                }
            }
            if self.peek() != Some(b':') {
                return self.fail("unterminated byte sequence");
            }
            let decoded = super::sf_b64()
                .decode(&self.s[start..self.at])
                .map_err(|e| format!("byte sequence at byte {start}: {e}"))?;
            self.at += 1;
            Ok(Bare::Bytes(decoded))
        }

        fn boolean(&mut self) -> Result<Bare, String> {
            self.at += 1;
            let b = match self.peek() {
                Some(b'1') => true,
                Some(b'0') => false,
                _ => return self.fail("a boolean is ?0 or ?1"),
            };
            self.at += 1;
            Ok(Bare::Boolean(b))
        }

        fn params(&mut self) -> Result<Params, String> {
            let mut out: Params = Vec::new();
            while self.peek() == Some(b';') {
                self.at += 1;
                self.skip_sp();
                let key = self.key()?;
                let value = if self.peek() == Some(b'=') {
                    self.at += 1;
                    self.bare()?
                } else {
                    Bare::Boolean(true)
                };
                if out.iter().any(|(k, _)| *k == key) {
                    return Err(format!("parameter {key:?} appears twice"));
                }
                if out.len() >= super::MAX_MEMBERS {
                    return Err(format!("more than {} parameters", super::MAX_MEMBERS));
                }
                out.push((key, value));
            }
            Ok(out)
        }

        fn item(&mut self) -> Result<Item, String> {
            let bare = self.bare()?;
            let params = self.params()?;
            Ok(Item { bare, params })
        }

        fn member(&mut self) -> Result<Member, String> {
            if self.peek() != Some(b'(') {
                return Ok(Member::Item(self.item()?));
            }
            self.at += 1;
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.peek() == Some(b')') {
                    self.at += 1;
                    let params = self.params()?;
                    return Ok(Member::InnerList(items, params));
                }
                if items.len() >= super::MAX_MEMBERS {
                    return Err(format!(
                        "more than {} items in an inner list",
                        super::MAX_MEMBERS
                    ));
                }
                items.push(self.item()?);
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return self.fail("expected a space or ) in an inner list");
                }
            }
        }
    }

    /// A dictionary field value, members in order. A key given twice is refused (RFC 8941
    /// would keep the last; for signatures an ambiguity is a reason to refuse).
    pub fn parse_dictionary(text: &str) -> Result<Vec<(String, Member)>, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
        };
        let mut out: Vec<(String, Member)> = Vec::new();
        p.skip_sp();
        if p.peek().is_none() {
            return Ok(out);
        }
        loop {
            let key = p.key()?;
            let member = if p.peek() == Some(b'=') {
                p.at += 1;
                p.member()?
            } else {
                Member::Item(Item {
                    bare: Bare::Boolean(true),
                    params: p.params()?,
                })
            };
            if out.iter().any(|(k, _)| *k == key) {
                return Err(format!("key {key:?} appears twice"));
            }
            if out.len() >= super::MAX_MEMBERS {
                return Err(format!("more than {} members", super::MAX_MEMBERS));
            }
            out.push((key, member));
            p.skip_ows();
            match p.peek() {
                None => return Ok(out),
                Some(b',') => {
                    p.at += 1;
                    p.skip_ows();
                    if p.peek().is_none() {
                        return p.fail("trailing comma");
                    }
                }
                Some(_) => return p.fail("expected , between members"),
            }
        }
    }

    pub fn serialize_bare(b: &Bare, out: &mut String) {
        match b {
            Bare::Integer(n) => out.push_str(&n.to_string()),
            Bare::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Bare::Token(t) => out.push_str(t),
            Bare::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
            Bare::Bytes(b) => {
                out.push(':');
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
                out.push(':');
            }
        }
    }

    pub fn serialize_params(params: &Params, out: &mut String) {
        for (k, v) in params {
            out.push(';');
            out.push_str(k);
            if *v != Bare::Boolean(true) {
                out.push('=');
                serialize_bare(v, out);
            }
        }
    }

    pub fn serialize_inner_list(items: &[Item], params: &Params) -> String {
        let mut out = String::from("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            serialize_bare(&item.bare, &mut out);
            serialize_params(&item.params, &mut out);
        }
        out.push(')');
        serialize_params(params, &mut out);
        out
    }
}

use sf::{Bare, Item, Member};

/// One signature's metadata from Signature-Input: its covered components and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInput {
    pub label: String,
    /// Component names in the order covered (lowercase; no component parameters).
    pub components: Vec<String>,
    /// Every parameter, in the order sent (`created`, `keyid`, `alg`, ...).
    pub params: sf::Params,
}

impl SignatureInput {
    fn param(&self, name: &str) -> Option<&Bare> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// `created` (checked present and an integer by [`parse`]).
    pub fn created(&self) -> i64 {
        match self.param("created") {
            Some(Bare::Integer(n)) => *n,
            _ => 0,
        }
    }

    pub fn expires(&self) -> Option<i64> {
        match self.param("expires") {
            Some(Bare::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    /// `keyid` (checked present and a string by [`parse`]).
    pub fn keyid(&self) -> &str {
        match self.param("keyid") {
            Some(Bare::String(s)) => s,
            _ => "",
        }
    }

    /// The value of `@signature-params`: the inner list as Signature-Input carries it (in its
    /// canonical serialization).
    pub fn signature_params(&self) -> String {
        let items: Vec<Item> = self
            .components
            .iter()
            .map(|c| Item {
                bare: Bare::String(c.clone()),
                params: Vec::new(),
            })
            .collect();
        sf::serialize_inner_list(&items, &self.params)
    }

    /// `Ok` when `created` is within [`MAX_AGE_SECS`] of `now` (either way) and `expires`, if
    /// given, has not passed.
    pub fn check_fresh(&self, now_secs: u64, max_secs: u64) -> Result<(), SigError> {
        let now = i64::try_from(now_secs).unwrap_or(i64::MAX);
        let created = self.created();
        let max = i64::try_from(max_secs).unwrap_or(i64::MAX);
        let age = now.saturating_sub(created);
        if age > max {
            return Err(SigError::Stale {
                created,
                age_secs: age,
                max_secs,
            });
        }
        if -age > max {
            return Err(SigError::FromTheFuture {
                created,
                ahead_secs: -age,
                max_secs,
            });
        }
        match self.expires() {
            Some(at) if at < now => Err(SigError::Expired(at)),
            _ => Ok(()),
        }
    }
}

/// A PQC signature found on a request: its metadata and the signature bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestSignature {
    pub input: SignatureInput,
    pub signature: Vec<u8>,
}

impl fmt::Debug for RequestSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSignature")
            .field("input", &self.input)
            .field("signature_bytes", &self.signature.len())
            .finish()
    }
}

impl RequestSignature {
    /// What the replay store remembers: SHA-256 of the signature bytes, in hex.
    pub fn replay_id(&self) -> String {
        crate::wire::hex_encode(&Sha256::digest(&self.signature))
    }
}

/// Finds the ML-DSA-65 signature among Signature-Input's entries (the first with
/// `alg="ml-dsa-65"`; others, e.g. a proxy's, are ignored) and its bytes in Signature, and
/// checks what Heady requires of it: the four request components, `content-digest` when
/// `has_body`, `created` and `keyid`, and only components the origin can resolve.
pub fn parse(
    signature_input: &str,
    signature: Option<&str>,
    has_body: bool,
) -> Result<RequestSignature, SigError> {
    const SI: &str = "Signature-Input";
    const SIG: &str = "Signature";
    if signature_input.len() > MAX_HEADER_BYTES {
        return Err(malformed(
            SI,
            format!("longer than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    let entries = sf::parse_dictionary(signature_input).map_err(|e| malformed(SI, e))?;
    let mut chosen = None;
    for (label, member) in entries {
        let Member::InnerList(items, params) = member else {
            return Err(malformed(SI, format!("{label} is not an inner list")));
        };
        if params
            .iter()
            .any(|(k, v)| k == "alg" && *v == Bare::String(ALG.into()))
        {
            chosen = Some((label, items, params));
            break;
        }
    }
    let (label, items, params) = chosen.ok_or(SigError::NoPqcSignature)?;
    let mut components: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Bare::String(name) = item.bare else {
            return Err(malformed(SI, "a component identifier is a quoted string"));
        };
        if !item.params.is_empty() {
            return Err(SigError::Unsupported(format!("{name:?} with parameters")));
        }
        let supported = REQUIRED_COMPONENTS.contains(&name.as_str())
            || (!name.starts_with('@')
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        if !supported {
            return Err(SigError::Unsupported(format!("{name:?}")));
        }
        if components.contains(&name) {
            return Err(malformed(SI, format!("{name:?} is covered twice")));
        }
        components.push(name);
    }
    for required in REQUIRED_COMPONENTS {
        if !components.iter().any(|c| c == required) {
            return Err(SigError::Uncovered(required));
        }
    }
    if has_body && !components.iter().any(|c| c == DIGEST_COMPONENT) {
        return Err(SigError::Uncovered(
            "content-digest (the request has a body)",
        ));
    }
    match params.iter().find(|(k, _)| k == "created").map(|(_, v)| v) {
        Some(Bare::Integer(_)) => {}
        Some(_) => return Err(malformed(SI, "created is an integer")),
        None => return Err(SigError::Uncovered("the created parameter")),
    }
    match params.iter().find(|(k, _)| k == "keyid").map(|(_, v)| v) {
        Some(Bare::String(_)) => {}
        Some(_) => return Err(malformed(SI, "keyid is a quoted string")),
        None => return Err(SigError::Uncovered("the keyid parameter")),
    }
    if let Some((_, v)) = params.iter().find(|(k, _)| k == "expires") {
        if !matches!(v, Bare::Integer(_)) {
            return Err(malformed(SI, "expires is an integer"));
        }
    }
    let signature = signature.ok_or(SigError::Missing(SIG))?;
    if signature.len() > MAX_HEADER_BYTES {
        return Err(malformed(
            SIG,
            format!("longer than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    let sigs = sf::parse_dictionary(signature).map_err(|e| malformed(SIG, e))?;
    let bytes = match sigs.into_iter().find(|(k, _)| *k == label) {
        Some((
            _,
            Member::Item(Item {
                bare: Bare::Bytes(b),
                ..
            }),
        )) => b,
        Some(_) => return Err(malformed(SIG, format!("{label} is not a byte sequence"))),
        None => return Err(SigError::NoSignatureForLabel(label)),
    };
    Ok(RequestSignature {
        input: SignatureInput {
            label,
            components,
            params,
        },
        signature: bytes,
    })
}

/// The request as the signature base needs it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// As sent (`POST`).
    pub method: &'a str,
    /// The host (and port, when not the scheme's default) the client addressed; compared in
    /// lowercase.
    pub authority: &'a str,
    /// As on the wire (percent-encoding untouched); empty means `/`.
    pub path: &'a str,
    /// The query string without `?`, as on the wire; `None` when the target has none.
    pub query: Option<&'a str>,
}

/// The signature base (RFC 9421 §2.5) of `input` over `req`; `field(name)` gives a header
/// field's value (all its lines trimmed and joined with `", "`), `None` when absent.
pub fn signature_base(
    input: &SignatureInput,
    req: &Request<'_>,
    field: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SigError> {
    let mut base = String::new();
    for name in &input.components {
        let value = match name.as_str() {
            "@method" => req.method.to_string(),
            "@authority" => req.authority.to_ascii_lowercase(),
            "@path" if req.path.is_empty() => "/".to_string(),
            "@path" => req.path.to_string(),
            "@query" => format!("?{}", req.query.unwrap_or("")),
            other if other.starts_with('@') => return Err(SigError::Unsupported(other.into())),
            other => field(other).ok_or_else(|| SigError::AbsentField(other.into()))?,
        };
        if value.contains(['\n', '\r']) {
            return Err(malformed(
                "Signature-Input",
                format!("{name:?} spans lines"),
            ));
        }
        base.push('"');
        base.push_str(name);
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&input.signature_params());
    Ok(base)
}

/// `Content-Digest` for `body`: `sha-256=:<base64>:` (RFC 9530).
pub fn content_digest(body: &[u8]) -> String {
    let mut out = String::from("sha-256=");
    sf::serialize_bare(&Bare::Bytes(Sha256::digest(body).to_vec()), &mut out);
    out
}

/// Checks Content-Digest against `body`: a `sha-256` member is required and must match, as
/// must `sha-512` when present; other algorithms are ignored (RFC 9530 §2).
pub fn check_content_digest(value: Option<&str>, body: &[u8]) -> Result<(), SigError> {
    const CD: &str = "Content-Digest";
    let value = value.ok_or(SigError::Missing(CD))?;
    if value.len() > MAX_HEADER_BYTES {
        return Err(malformed(
            CD,
            format!("longer than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    let members = sf::parse_dictionary(value).map_err(|e| malformed(CD, e))?;
    let digest_of = |alg: &str| {
        members
            .iter()
            .find(|(k, _)| k == alg)
            .map(|(_, m)| match m {
                Member::Item(Item {
                    bare: Bare::Bytes(b),
                    ..
                }) => Ok(b.as_slice()),
                _ => Err(malformed(CD, format!("{alg} is not a byte sequence"))),
            })
    };
    let sha256 = digest_of("sha-256").ok_or(SigError::NoSha256Digest)??;
    if sha256 != Sha256::digest(body).as_slice() {
        return Err(SigError::DigestMismatch("sha-256"));
    }
    if let Some(sha512) = digest_of("sha-512") {
        if sha512? != Sha512::digest(body).as_slice() {
            return Err(SigError::DigestMismatch("sha-512"));
        }
    }
    Ok(())
}

/// An ML-DSA-65 public key registered to an account.
#[derive(Clone)]
pub struct PublicKey {
    key: ml_dsa::VerifyingKey<MlDsa65>,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// From the 1,952-byte FIPS 204 encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, String> {
        let encoded = EncodedVerifyingKey::<MlDsa65>::try_from(bytes).map_err(|_| {
            format!(
                "an ML-DSA-65 public key is {PUBLIC_KEY_BYTES} bytes (got {})",
                bytes.len()
            )
        })?;
        Ok(PublicKey {
            key: ml_dsa::VerifyingKey::decode(&encoded),
            bytes: bytes.to_vec(),
        })
    }

    /// From the raw encoding or its base64 (standard alphabet; whitespace ignored).
    pub fn from_raw_or_base64(data: &[u8]) -> Result<PublicKey, String> {
        if data.len() == PUBLIC_KEY_BYTES {
            return PublicKey::from_bytes(data);
        }
        let text: Vec<u8> = data
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let raw = sf_b64().decode(&text).map_err(|_| {
            format!(
                "neither the {PUBLIC_KEY_BYTES}-byte FIPS 204 encoding nor its base64 ({} bytes)",
                data.len()
            )
        })?;
        PublicKey::from_bytes(&raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoding in standard base64 (what [`PublicKey::from_raw_or_base64`] reads).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// SHA-256 of the encoding, in hex: what the store keeps to find the key.
    pub fn hash_hex(&self) -> String {
        crate::wire::hex_encode(&Sha256::digest(&self.bytes))
    }

    /// The key id clients put in `keyid`: the first 16 hex digits of [`PublicKey::hash_hex`].
    pub fn key_id(&self) -> String {
        self.hash_hex()[..16].to_string()
    }

    /// `Ok` exactly when `signature` is an ML-DSA-65 signature (empty context) of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SigError> {
        let sig = ml_dsa::Signature::<MlDsa65>::try_from(signature)
            .map_err(|_| SigError::BadSignature)?;
        if self.key.verify_with_context(message, &[], &sig) {
            Ok(())
        } else {
            Err(SigError::BadSignature)
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(ml-dsa-65 {})", self.key_id())
    }
}

/// Is `id` the form of a key id ([`PublicKey::key_id`]): 16 lowercase hex digits?
pub fn is_key_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Standard base64; padding optional when reading (RFC 8941 §4.2.7).
fn sf_b64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// PKCS#8 `OneAsymmetricKey` for id-ml-dsa-65 (2.16.840.1.101.3.4.3.18) holding only the
/// 32-byte seed (RFC 9881's `seed` choice): these 22 bytes, then the seed.
const PKCS8_SEED_PREFIX: [u8; 22] = [
    0x30, 0x34, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
    0x03, 0x12, 0x04, 0x22, 0x80, 0x20,
];
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// A client's private key: the FIPS 204 seed ξ. `Debug` shows only the key id.
pub struct SigningKey {
    seed: [u8; 32],
    key: ml_dsa::SigningKey<MlDsa65>,
    public: PublicKey,
}

impl SigningKey {
    /// FIPS 204 `ML-DSA.KeyGen_internal(seed)`.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        let key = ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed.into());
        let encoded = key.verifying_key().encode();
        let public = PublicKey {
            key: key.verifying_key(),
            bytes: encoded.to_vec(),
        };
        SigningKey { seed, key, public }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// ML-DSA-65 (pure, empty context) of `message`, hedged with `randomness`.
    pub fn sign(&self, message: &[u8], randomness: &[u8; 32]) -> Vec<u8> {
        // FIPS 204 Algorithm 2 with ctx = "": M' = 0 || 0 || M.
        self.key
            .expanded_key()
            .sign_internal(&[&[0u8, 0u8][..], message], &(*randomness).into())
            .encode()
            .to_vec()
    }

    /// PEM `PRIVATE KEY` (PKCS#8 with the seed only), as OpenSSL 3.5 and RFC 9881 read it.
    pub fn to_pem(&self) -> String {
        let mut der = PKCS8_SEED_PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        format!("{PEM_BEGIN}\n{b64}\n{PEM_END}\n")
    }

    /// Reads [`SigningKey::to_pem`]'s format.
    pub fn from_pem(text: &str) -> Result<SigningKey, String> {
        let body = text
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|t| t.strip_suffix(PEM_END))
            .ok_or("expected a PEM PRIVATE KEY (as `heady-origin keys create-pq` writes)")?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the PEM body is not base64")?;
        let seed = der
            .strip_prefix(&PKCS8_SEED_PREFIX[..])
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or(
                "not an ML-DSA-65 private key holding its 32-byte seed (PKCS#8, id-ml-dsa-65)",
            )?;
        Ok(SigningKey::from_seed(seed))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(ml-dsa-65 {})", self.public.key_id())
    }
}

/// The headers that sign `req` (and `body`, when it has one) with `key` at `created`:
/// `Content-Digest` (with a body), `Signature-Input`, `Signature`.
pub fn sign_request(
    key: &SigningKey,
    req: &Request<'_>,
    body: &[u8],
    created: u64,
    randomness: &[u8; 32],
) -> Vec<(&'static str, String)> {
    let mut components: Vec<String> = REQUIRED_COMPONENTS.iter().map(|c| c.to_string()).collect();
    let mut out = Vec::new();
    let digest = (!body.is_empty()).then(|| content_digest(body));
    if let Some(d) = &digest {
        components.push(DIGEST_COMPONENT.to_string());
        out.push((header::CONTENT_DIGEST, d.clone()));
    }
    let input = SignatureInput {
        label: LABEL.to_string(),
        components,
        params: vec![
            (
                "created".into(),
                Bare::Integer(i64::try_from(created).unwrap_or(i64::MAX)),
            ),
            ("keyid".into(), Bare::String(key.public_key().key_id())),
            ("alg".into(), Bare::String(ALG.into())),
        ],
    };
    let field = |name: &str| (name == DIGEST_COMPONENT).then(|| digest.clone()).flatten();
    // Only the four derived components and content-digest are covered: always resolvable.
    let base = signature_base(&input, req, &field).unwrap_or_default();
    let signature = key.sign(base.as_bytes(), randomness);
    out.push((
        header::SIGNATURE_INPUT,
        format!("{LABEL}={}", input.signature_params()),
    ));
    let mut sig = format!("{LABEL}=");
    sf::serialize_bare(&Bare::Bytes(signature), &mut sig);
    out.push((header::SIGNATURE, sig));
    out
}

/// Everything about one signed request the origin checks without I/O, in order: the shape of
/// the headers, freshness, Content-Digest, and the signature base (returned, for the key
/// lookup and [`PublicKey::verify`]).
pub fn prepare(
    signature_input: &str,
    signature: Option<&str>,
    req: &Request<'_>,
    body: &[u8],
    field: &dyn Fn(&str) -> Option<String>,
    now_secs: u64,
) -> Result<(RequestSignature, String), SigError> {
    let sig = parse(signature_input, signature, !body.is_empty())?;
    sig.input.check_fresh(now_secs, MAX_AGE_SECS)?;
    if sig.input.components.iter().any(|c| c == DIGEST_COMPONENT) {
        check_content_digest(field(DIGEST_COMPONENT).as_deref(), body)?;
    }
    let base = signature_base(&sig.input, req, field)?;
    Ok((sig, base))
}

/// Fuzz entry point (`origin/fuzz`, target `http_sig`): arbitrary bytes as a signed request's
/// headers and body must never panic, and an accepted Signature-Input must serialize back to
/// a form that parses to the same thing. Lines: Signature-Input, Signature, Content-Digest,
/// then the body.
pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(4, '\n');
    let input = lines.next().unwrap_or("");
    let signature = lines.next();
    let digest = lines.next().map(str::to_string);
    let body = lines.next().unwrap_or("").as_bytes();
    let req = Request {
        method: "POST",
        authority: "headyapi.com",
        path: "/api/chat",
        query: Some("a=1"),
    };
    let field = |name: &str| (name == DIGEST_COMPONENT).then(|| digest.clone()).flatten();
    if let Ok((sig, base)) = prepare(input, signature, &req, body, &field, 1_000_000) {
        let again = format!("{}={}", sig.input.label, sig.input.signature_params());
        let reparsed = parse(&again, signature, !body.is_empty());
        assert_eq!(reparsed.map(|r| r.input), Ok(sig.input), "{again}");
        assert!(base.ends_with(&format!(
            "\"@signature-params\": {}",
            &again[again.find('=').unwrap_or(0) + 1..]
        )));
    }
    let _ = check_content_digest(Some(input), body);
    let _ = PublicKey::from_raw_or_base64(data);
    let _ = SigningKey::from_pem(&text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};

    #[test]
    fn the_fuzz_checks_pass_on_a_signed_request_and_junk() {
        let body = b"{}";
        let h = sign_request(
            &SigningKey::from_seed([1; 32]),
            &REQ,
            body,
            1_000_000,
            &[2; 32],
        );
        let data = format!(
            "{}\n{}\n{}\n{{}}",
            get(&h, header::SIGNATURE_INPUT).unwrap(),
            get(&h, header::SIGNATURE).unwrap(),
            get(&h, header::CONTENT_DIGEST).unwrap()
        );
        fuzz(data.as_bytes());
        for junk in [
            &b""[..],
            b"\n\n\n",
            b"sig1=(\"@method\");alg=\"ml-dsa-65\"\n\xff",
            &[0xff; 64],
        ] {
            fuzz(junk);
        }
    }

    /// The fuzz target's checked-in seeds pass its checks, so a change that makes one crash
    /// fails `cargo test`, not only a fuzz run.
    #[test]
    fn the_checked_in_fuzz_seeds_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../origin/fuzz/seeds/http_sig");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("origin/fuzz/seeds/http_sig") {
            fuzz(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 2, "{n} seeds");
    }

    /// RFC 9421 Appendix B.2's test request.
    fn rfc_field(name: &str) -> Option<String> {
        Some(
            match name {
                "date" => "Tue, 20 Apr 2021 02:07:55 GMT",
                "content-type" => "application/json",
                "content-digest" => "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
                "content-length" => "18",
                _ => return None,
            }
            .to_string(),
        )
    }

    const RFC_REQUEST: Request<'static> = Request {
        method: "POST",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
    };

    fn input_of(text: &str) -> SignatureInput {
        let (label, member) = sf::parse_dictionary(text).unwrap().remove(0);
        let Member::InnerList(items, params) = member else {
            panic!("not an inner list")
        };
        SignatureInput {
            label,
            components: items
                .into_iter()
                .map(|i| match i.bare {
                    Bare::String(s) => s,
                    other => panic!("{other:?}"),
                })
                .collect(),
            params,
        }
    }

    #[test]
    fn rfc9421_b21_minimal_signature_base() {
        let input = input_of(
            r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        );
        assert_eq!(
            signature_base(&input, &RFC_REQUEST, &rfc_field).unwrap(),
            r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#
        );
    }

    #[test]
    fn rfc9421_b23_full_coverage_signature_base() {
        let input = input_of(
            r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
        );
        let expected = concat!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
            "\"@method\": POST\n",
            "\"@path\": /foo\n",
            "\"@query\": ?param=Value&Pet=dog\n",
            "\"@authority\": example.com\n",
            "\"content-type\": application/json\n",
            "\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n",
            "\"content-length\": 18\n",
            "\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\""
        );
        assert_eq!(
            signature_base(&input, &RFC_REQUEST, &rfc_field).unwrap(),
            expected
        );
    }

    /// B.2.5 is HMAC-SHA256, deterministic: the RFC's own signature checks our base byte for
    /// byte.
    #[test]
    fn rfc9421_b25_hmac_signature_matches_the_rfc() {
        let input = input_of(
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
        );
        let base = signature_base(&input, &RFC_REQUEST, &rfc_field).unwrap();
        let secret = base64::engine::general_purpose::STANDARD
            .decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(base.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sig, "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=");
        // And the Signature header parses back to those bytes.
        let sigs =
            sf::parse_dictionary("sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:").unwrap();
        let Member::Item(Item {
            bare: Bare::Bytes(b),
            ..
        }) = &sigs[0].1
        else {
            panic!()
        };
        assert_eq!(base64::engine::general_purpose::STANDARD.encode(b), sig);
    }

    #[test]
    fn oversized_fields_are_refused_before_any_quadratic_work() {
        let body = b"x";
        let good = content_digest(body);
        // 65 distinct members: refused, however short.
        let many: Vec<String> = (0..65).map(|i| format!("a{i}=1")).collect();
        let many = format!("{}, {good}", many.join(", "));
        assert!(many.len() < MAX_HEADER_BYTES);
        assert!(matches!(
            check_content_digest(Some(&many), body),
            Err(SigError::Malformed { header: "Content-Digest", ref problem }) if problem.contains("64")
        ));
        // 64 are fine.
        let ok: Vec<String> = (0..63).map(|i| format!("a{i}=1")).collect();
        check_content_digest(Some(&format!("{}, {good}", ok.join(", "))), body).unwrap();
        // Longer than 16 KiB: refused unparsed.
        let long = format!("{good}, pad=\"{}\"", "p".repeat(MAX_HEADER_BYTES));
        assert!(matches!(
            check_content_digest(Some(&long), body),
            Err(SigError::Malformed { header: "Content-Digest", ref problem }) if problem.contains("longer")
        ));
        // Parameters and inner lists are bounded the same way.
        let params: String = (0..65).map(|i| format!(";p{i}=1")).collect();
        assert!(sf::parse_dictionary(&format!("sig1=(\"@method\"){params}")).is_err());
        let items: Vec<String> = (0..65).map(|i| format!("\"h{i}\"")).collect();
        assert!(sf::parse_dictionary(&format!("sig1=({})", items.join(" "))).is_err());
    }

    #[test]
    fn rfc9530_example_digest() {
        let body = br#"{"hello": "world"}"#;
        assert_eq!(
            content_digest(body),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
        check_content_digest(Some(&content_digest(body)), body).unwrap();
        // sha-512 is checked too when sent; unknown algorithms are ignored.
        let both = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, md5=:AAAA:";
        check_content_digest(Some(both), body).unwrap();
        assert_eq!(
            check_content_digest(Some(both), b"{\"hello\": \"world!\"}"),
            Err(SigError::DigestMismatch("sha-256"))
        );
        assert_eq!(
            check_content_digest(Some("sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"), body),
            Err(SigError::NoSha256Digest)
        );
        assert_eq!(
            check_content_digest(None, body),
            Err(SigError::Missing("Content-Digest"))
        );
    }

    #[test]
    fn structured_fields_round_trip_and_junk_is_refused() {
        let text = r#"sig1=("@method" "@authority");created=1;keyid="a\"b\\c";alg="ml-dsa-65";flag;t=tok/1:x;b=?0;bytes=:AQID:"#;
        let d = sf::parse_dictionary(text).unwrap();
        let Member::InnerList(items, params) = &d[0].1 else {
            panic!()
        };
        assert_eq!(
            format!("sig1={}", sf::serialize_inner_list(items, params)),
            text
        );
        for bad in [
            "sig1=(",
            "sig1=(\"a\"",
            "sig1=(\"a\")x",
            "sig1=(\"a\";created=1.5)",
            "sig1=(\"a\"),",
            "sig1=(\"a\"), sig1=(\"b\")",
            "Sig1=(\"a\")",
            "sig1=(\"a\");created=1;created=2",
            "sig1=:AQ!D:",
            "sig1=\"\u{7f}\"",
            "sig1=(\"a\"\"b\")",
            "sig1=1234567890123456",
        ] {
            assert!(sf::parse_dictionary(bad).is_err(), "{bad}");
        }
        assert_eq!(sf::parse_dictionary("  ").unwrap(), vec![]);
    }

    fn key() -> SigningKey {
        SigningKey::from_seed([7; 32])
    }

    fn signed(req: &Request<'_>, body: &[u8], created: u64) -> Vec<(&'static str, String)> {
        sign_request(&key(), req, body, created, &[9; 32])
    }

    fn get(headers: &[(&'static str, String)], name: &str) -> Option<String> {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }

    const REQ: Request<'static> = Request {
        method: "POST",
        authority: "headyapi.com",
        path: "/api/chat",
        query: Some("stream=false"),
    };

    fn check(
        headers: &[(&'static str, String)],
        req: &Request<'_>,
        body: &[u8],
        now: u64,
    ) -> Result<String, SigError> {
        let field = |n: &str| get(headers, n);
        let (sig, base) = prepare(
            &get(headers, header::SIGNATURE_INPUT).unwrap_or_default(),
            get(headers, header::SIGNATURE).as_deref(),
            req,
            body,
            &field,
            now,
        )?;
        key().public_key().verify(base.as_bytes(), &sig.signature)?;
        Ok(sig.input.keyid().to_string())
    }

    #[test]
    fn a_signed_request_verifies_and_every_change_is_refused() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let h = signed(&REQ, body, 1_000);
        assert_eq!(
            check(&h, &REQ, body, 1_000).unwrap(),
            key().public_key().key_id()
        );
        assert!(get(&h, header::SIGNATURE_INPUT).unwrap().starts_with(
            "sig1=(\"@method\" \"@authority\" \"@path\" \"@query\" \"content-digest\");created=1000;keyid=\""
        ));
        // The authority is compared without case.
        let upper = Request {
            authority: "HeadyAPI.com",
            ..REQ
        };
        assert!(check(&h, &upper, body, 1_000).is_ok());
        let mut changed = body.to_vec();
        changed[3] ^= 1;
        assert_eq!(
            check(&h, &REQ, &changed, 1_000),
            Err(SigError::DigestMismatch("sha-256"))
        );
        for other in [
            Request {
                path: "/api/chaT",
                ..REQ
            },
            Request {
                query: Some("stream=true"),
                ..REQ
            },
            Request { query: None, ..REQ },
            Request {
                method: "PUT",
                ..REQ
            },
            Request {
                authority: "headyme.com",
                ..REQ
            },
        ] {
            assert_eq!(
                check(&h, &other, body, 1_000),
                Err(SigError::BadSignature),
                "{other:?}"
            );
        }
        // Another key's signature.
        let other_key = SigningKey::from_seed([8; 32]);
        let h2 = sign_request(&other_key, &REQ, body, 1_000, &[1; 32]);
        assert_eq!(check(&h2, &REQ, body, 1_000), Err(SigError::BadSignature));
    }

    #[test]
    fn freshness_is_300_seconds_either_way() {
        let h = signed(&REQ, b"", 10_000);
        assert!(check(&h, &REQ, b"", 10_300).is_ok());
        assert!(check(&h, &REQ, b"", 9_700).is_ok());
        assert!(matches!(
            check(&h, &REQ, b"", 10_301),
            Err(SigError::Stale { age_secs: 301, .. })
        ));
        assert!(matches!(
            check(&h, &REQ, b"", 9_699),
            Err(SigError::FromTheFuture {
                ahead_secs: 301,
                ..
            })
        ));
        assert_eq!(
            SigError::Stale {
                created: 0,
                age_secs: 1,
                max_secs: 1
            }
            .code(),
            ErrorCode::StaleSignature
        );
    }

    #[test]
    fn no_body_needs_no_digest_but_a_body_does() {
        let h = signed(&REQ, b"", 5);
        assert!(get(&h, header::CONTENT_DIGEST).is_none());
        assert!(!get(&h, header::SIGNATURE_INPUT)
            .unwrap()
            .contains("content-digest"));
        assert!(check(&h, &REQ, b"", 5).is_ok());
        // The same headers on a request that has a body: the body is not covered.
        assert_eq!(
            check(&h, &REQ, b"x", 5),
            Err(SigError::Uncovered(
                "content-digest (the request has a body)"
            ))
        );
    }

    #[test]
    fn the_policy_names_what_is_wrong() {
        let sig = "sig1=:AAAA:";
        let cases: [(&str, SigError); 9] = [
            (
                r#"sig1=("@method" "@authority" "@path");created=1;keyid="k";alg="ml-dsa-65""#,
                SigError::Uncovered("@query"),
            ),
            (
                r#"sig1=("@method" "@authority" "@path" "@query");created=1;keyid="k";alg="ed25519""#,
                SigError::NoPqcSignature,
            ),
            (
                r#"sig1=("@method" "@authority" "@path" "@query");keyid="k";alg="ml-dsa-65""#,
                SigError::Uncovered("the created parameter"),
            ),
            (
                r#"sig1=("@method" "@authority" "@path" "@query");created=1;alg="ml-dsa-65""#,
                SigError::Uncovered("the keyid parameter"),
            ),
            (
                r#"sig1=("@method" "@authority" "@path" "@query" "@target-uri");created=1;keyid="k";alg="ml-dsa-65""#,
                SigError::Unsupported("\"@target-uri\"".into()),
            ),
            (
                r#"sig1=("@method" "@authority" "@path" "@query" "x";sf);created=1;keyid="k";alg="ml-dsa-65""#,
                SigError::Unsupported("\"x\" with parameters".into()),
            ),
            (
                r#"sig2=("@method" "@authority" "@path" "@query");created=1;keyid="k";alg="ml-dsa-65""#,
                SigError::NoSignatureForLabel("sig2".into()),
            ),
            (
                r#"sig1=("@method" "@authority" "@path" "@query");created="1";keyid="k";alg="ml-dsa-65""#,
                malformed("Signature-Input", "created is an integer"),
            ),
            (
                r#"sig1=("@method" "@authority" "@method" "@path" "@query");created=1;keyid="k";alg="ml-dsa-65""#,
                malformed("Signature-Input", "\"@method\" is covered twice"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input, Some(sig), false).unwrap_err(), want, "{input}");
            assert_eq!(want.code(), ErrorCode::MalformedSignature);
        }
        let ok =
            r#"sig1=("@method" "@authority" "@path" "@query");created=1;keyid="k";alg="ml-dsa-65""#;
        assert_eq!(
            parse(ok, None, false).unwrap_err(),
            SigError::Missing("Signature")
        );
        assert!(matches!(
            parse("sig1=(", Some(sig), false),
            Err(SigError::Malformed {
                header: "Signature-Input",
                ..
            })
        ));
        // Another signature (a proxy's) before ours is skipped.
        let two = format!(r#"proxy=("@method");created=1;keyid="p";alg="hmac-sha256", {ok}"#);
        let parsed = parse(&two, Some("proxy=:AAAA:, sig1=:AQID:"), false).unwrap();
        assert_eq!(parsed.signature, vec![1, 2, 3]);
        assert_eq!(parsed.input.keyid(), "k");
        // A covered header field that is absent.
        let with_field = r#"sig1=("@method" "@authority" "@path" "@query" "x-trace");created=1;keyid="k";alg="ml-dsa-65""#;
        let p = parse(with_field, Some(sig), false).unwrap();
        assert_eq!(
            signature_base(&p.input, &REQ, &|_| None),
            Err(SigError::AbsentField("x-trace".into()))
        );
    }

    #[test]
    fn keys_round_trip_through_pem_and_base64() {
        let k = key();
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMDQCAQAwCwYJYIZIAWUDBAMSBCKAI"));
        let back = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key().as_bytes(), k.public_key().as_bytes());
        assert_eq!(k.public_key().as_bytes().len(), PUBLIC_KEY_BYTES);
        assert!(!format!("{k:?}").contains(&format!("{:?}", [7u8; 32])));
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.public_key().as_bytes());
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        for data in [
            k.public_key().as_bytes().to_vec(),
            b64.into_bytes(),
            wrapped.into_bytes(),
        ] {
            assert_eq!(
                PublicKey::from_raw_or_base64(&data).unwrap().key_id(),
                k.public_key().key_id()
            );
        }
        assert!(PublicKey::from_raw_or_base64(b"short").is_err());
        assert!(PublicKey::from_raw_or_base64(&[0u8; 1951]).is_err());
        assert!(SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
        .is_err());
        assert_eq!(k.public_key().key_id().len(), 16);
        // The same seed gives the same public key in dilithium-py (`ML_DSA_65.key_derive`)
        // and @noble/post-quantum (`ml_dsa65.keygen(seed)`): SHA-256 of it starts so.
        assert_eq!(k.public_key().key_id(), "d3a1e51ecf491b79");
    }

    #[test]
    fn signatures_are_bound_to_the_key_and_bad_bytes_do_not_panic() {
        let k = key();
        let sig = k.sign(b"m", &[0; 32]);
        assert_eq!(sig.len(), SIGNATURE_BYTES);
        assert!(k.public_key().verify(b"m", &sig).is_ok());
        assert_eq!(
            k.public_key().verify(b"n", &sig),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            k.public_key().verify(b"m", &sig[1..]),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            k.public_key().verify(b"m", &[0xff; SIGNATURE_BYTES]),
            Err(SigError::BadSignature)
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_headers_never_panics(input in ".{0,300}", sig in ".{0,300}", body in any::<bool>()) {
            let _ = parse(&input, Some(&sig), body);
            let _ = check_content_digest(Some(&input), sig.as_bytes());
        }

        #[test]
        fn serialized_inner_lists_parse_back(
            comps in proptest::collection::vec("[a-z][a-z0-9-]{0,10}", 0..6),
            created in 0i64..=999_999_999_999_999,
            keyid in "[ -~]{0,40}",
        ) {
            let input = SignatureInput {
                label: "sig1".into(),
                components: comps,
                params: vec![
                    ("created".into(), Bare::Integer(created)),
                    ("keyid".into(), Bare::String(keyid)),
                ],
            };
            let text = format!("sig1={}", input.signature_params());
            let parsed = sf::parse_dictionary(&text).unwrap();
            let sf::Member::InnerList(items, params) = &parsed[0].1 else { panic!() };
            prop_assert_eq!(sf::serialize_inner_list(items, params), input.signature_params());
        }
    }
}
