//! The subject of a request: whom limits, bans and sessions are counted against.
//!
//! Both sides spell it the same way, because the edge vouches for it in the signed tunnel
//! envelope and the origin keys its limiter and ban list with it:
//!
//! - `ip:<address>` for an anonymous caller. IPv4 is the address; IPv6 is its /64
//!   (`ip:2001:db8:1:2::/64`), since one host usually owns a whole /64 and could otherwise take
//!   a fresh identity with every address in it. An IPv4-mapped IPv6 address
//!   (`::ffff:192.0.2.1`) is the IPv4 client it maps.
//! - `user:<name>` for the holder of an API key.
//!
//! [`Subject`] can only hold a normalised value, and `FromStr` normalises again, so a subject
//! read from a header or a cache is the same value the sender meant, or an error.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// The longest user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 128;

/// The block of addresses an anonymous caller is counted by: an IPv4 address, or an IPv6 /64.
/// Built only by normalising an address, so two spellings of one block are one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpBlock(IpAddr);

impl IpBlock {
    /// Prefix length of an IPv6 block.
    pub const IPV6_PREFIX_LEN: u8 = 64;

    /// The block `ip` belongs to.
    pub fn of(ip: IpAddr) -> IpBlock {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpBlock(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !(u128::MAX >> Self::IPV6_PREFIX_LEN);
                IpBlock(IpAddr::V6(Ipv6Addr::from(network)))
            }
        }
    }

    /// The first address of the block (the IPv4 address itself).
    pub fn network(self) -> IpAddr {
        self.0
    }

    /// 32 for IPv4, 64 for IPv6.
    pub fn prefix_len(self) -> u8 {
        match self.0 {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => Self::IPV6_PREFIX_LEN,
        }
    }

    pub fn contains(self, ip: IpAddr) -> bool {
        IpBlock::of(ip) == self
    }
}

impl fmt::Display for IpBlock {
    /// IPv4 as the address; IPv6 as its four network groups in lowercase hex followed by
    /// `::/64`, zeros included (`2001:db8:0:0::/64`): the spelling the origin has always used
    /// for its Redis keys, so limits and bans stored before carry over.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                write!(f, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// The name of an API key's holder: 1-128 of `A-Z a-z 0-9 . _ @ -`. It becomes a limiter
/// subject and a Redis key part, so braces, spaces, colons and control characters are out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    pub fn new(name: &str) -> Result<UserName, SubjectError> {
        if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
            return Err(SubjectError::UserName {
                name: excerpt(name),
                problem: format!("must be 1 to {MAX_USER_NAME_LEN} characters"),
            });
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
        {
            return Err(SubjectError::UserName {
                name: excerpt(name),
                problem: format!(
                    "may contain only letters, digits, '.', '_', '@' and '-' (found {c:?})"
                ),
            });
        }
        Ok(UserName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name already known to pass [`UserName::new`] (an account id).
    pub(crate) fn trusted(name: String) -> UserName {
        debug_assert!(UserName::new(&name).is_ok(), "{name}");
        UserName(name)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whom a request is counted against. `Display` and `FromStr` give the wire spelling
/// (`ip:203.0.113.7`, `ip:2001:db8:1:2::/64`, `user:alice`); serde uses the same string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    /// An anonymous caller, by address block.
    Ip(IpBlock),
    /// The holder of an API key.
    User(UserName),
}

impl Subject {
    pub const IP_PREFIX: &'static str = "ip:";
    pub const USER_PREFIX: &'static str = "user:";

    /// The subject of an anonymous caller at `ip`.
    pub fn anonymous(ip: IpAddr) -> Subject {
        Subject::Ip(IpBlock::of(ip))
    }

    /// The subject of the key holder `name`.
    pub fn user(name: &str) -> Result<Subject, SubjectError> {
        UserName::new(name).map(Subject::User)
    }

    /// `true` for `ip:` subjects.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Subject::Ip(_))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Ip(block) => write!(f, "{}{block}", Self::IP_PREFIX),
            Subject::User(name) => write!(f, "{}{name}", Self::USER_PREFIX),
        }
    }
}

/// Why a string is not a subject. Messages start with "subject" and quote (a bounded part of)
/// the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject {0:?} is neither ip:<address> nor user:<name>")]
    UnknownKind(String),
    #[error("subject {text:?}: {problem}")]
    Address { text: String, problem: String },
    #[error("subject user name {name:?} {problem}")]
    UserName { name: String, problem: String },
}

/// At most 64 bytes of untrusted input, for error messages.
fn excerpt(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_owned();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn parse_ip(text: &str) -> Result<IpBlock, SubjectError> {
    let problem = |problem: &str| SubjectError::Address {
        text: excerpt(text),
        problem: problem.to_owned(),
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, len)) => {
            let len = Some(len)
                .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|l| l.parse::<u8>().ok())
                .ok_or_else(|| problem("the prefix length is not a number"))?;
            (addr, Some(len))
        }
        None => (text, None),
    };
    let ip = addr
        .parse::<IpAddr>()
        .map_err(|_| problem("not an IPv4 or IPv6 address"))?;
    match (ip, prefix) {
        (_, None) | (IpAddr::V4(_), Some(32)) => {}
        (IpAddr::V4(_), Some(_)) => return Err(problem("an IPv4 subject is one address (/32)")),
        (IpAddr::V6(v6), Some(_)) if v6.to_ipv4_mapped().is_some() => {
            return Err(problem(
                "an IPv4-mapped address is its IPv4 client: write it without a prefix",
            ))
        }
        // A prefix of 64 or longer lies inside one /64: it names exactly one subject.
        (IpAddr::V6(_), Some(len)) if (IpBlock::IPV6_PREFIX_LEN..=128).contains(&len) => {}
        (IpAddr::V6(_), Some(_)) => {
            return Err(problem("an IPv6 subject is one /64 (prefix 64 to 128)"))
        }
    }
    Ok(IpBlock::of(ip))
}

impl FromStr for Subject {
    type Err = SubjectError;

    /// Parses and normalises: `ip:2001:db8:1:2:aa:bb:cc:dd` is `ip:2001:db8:1:2::/64`,
    /// `ip:::ffff:192.0.2.1` is `ip:192.0.2.1`.
    fn from_str(s: &str) -> Result<Subject, SubjectError> {
        if let Some(addr) = s.strip_prefix(Self::IP_PREFIX) {
            parse_ip(addr).map(Subject::Ip)
        } else if let Some(name) = s.strip_prefix(Self::USER_PREFIX) {
            Subject::user(name)
        } else {
            Err(SubjectError::UnknownKind(excerpt(s)))
        }
    }
}

impl TryFrom<String> for Subject {
    type Error = SubjectError;
    fn try_from(s: String) -> Result<Subject, SubjectError> {
        s.parse()
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn spellings_the_origin_has_always_used() {
        assert_eq!(
            Subject::anonymous(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(
            Subject::anonymous(ip("2001:DB8::1")).to_string(),
            "ip:2001:db8:0:0::/64"
        );
        assert_eq!(Subject::anonymous(ip("::1")).to_string(), "ip:0:0:0:0::/64");
        assert_eq!(
            Subject::anonymous(ip("203.0.113.7")).to_string(),
            "ip:203.0.113.7"
        );
        assert_eq!(Subject::user("alice").unwrap().to_string(), "user:alice");
    }

    #[test]
    fn parsing_normalises_to_the_64() {
        for text in [
            "ip:2001:db8:1:2:aa:bb:cc:dd",
            "ip:2001:db8:1:2::/64",
            "ip:2001:0db8:0001:0002::",
            "ip:2001:db8:1:2:ffff::/80",
            "ip:2001:db8:1:2::5/128",
        ] {
            assert_eq!(
                text.parse::<Subject>().unwrap().to_string(),
                "ip:2001:db8:1:2::/64",
                "{text}"
            );
        }
        assert_eq!(
            "ip:2001:db8::/64".parse::<Subject>().unwrap().to_string(),
            "ip:2001:db8:0:0::/64"
        );
        assert_eq!(
            "ip:198.51.100.7/32".parse::<Subject>().unwrap().to_string(),
            "ip:198.51.100.7"
        );
    }

    /// An IPv4 client reaching a dual-stack socket appears as `::ffff:a.b.c.d`: it is the same
    /// client as `a.b.c.d`, not a member of the /64 `::ffff:0:0` shares with every IPv4 address.
    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_client() {
        let v4 = Subject::anonymous(ip("10.1.2.3"));
        assert_eq!(Subject::anonymous(ip("::ffff:10.1.2.3")), v4);
        assert_eq!("ip:::ffff:10.1.2.3".parse::<Subject>(), Ok(v4.clone()));
        assert_eq!(v4.to_string(), "ip:10.1.2.3");
        assert_ne!(
            Subject::anonymous(ip("::ffff:10.1.2.3")),
            Subject::anonymous(ip("::ffff:10.1.2.4"))
        );
        assert!("ip:::ffff:10.1.2.3/64".parse::<Subject>().is_err());
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for (text, kind) in [
            ("", "kind"),
            ("nokind", "kind"),
            ("key:k1", "kind"),
            ("IP:1.2.3.4", "kind"),
            ("ip:", "address"),
            ("ip:unknown", "address"),
            ("ip:1.2.3.4.5", "address"),
            ("ip:1.2.3.4/24", "address"),
            ("ip:2001:db8::/48", "address"),
            ("ip:2001:db8::/129", "address"),
            ("ip:2001:db8::/x", "address"),
            ("ip:2001:db8::/+64", "address"),
            ("ip:2001:db8::/", "address"),
            ("ip: 1.2.3.4", "address"),
            ("ip:fe80::1%eth0", "address"),
            ("user:", "user"),
            ("user:a b", "user"),
            ("user:x{y}", "user"),
            ("user:a:b", "user"),
        ] {
            let err = text.parse::<Subject>().unwrap_err();
            let matches = match kind {
                "kind" => matches!(err, SubjectError::UnknownKind(_)),
                "address" => matches!(err, SubjectError::Address { .. }),
                _ => matches!(err, SubjectError::UserName { .. }),
            };
            assert!(matches, "{text:?}: {err:?}");
            assert!(err.to_string().starts_with("subject"), "{err}");
        }
        let long = format!("user:{}", "u".repeat(MAX_USER_NAME_LEN + 1));
        let err = long.parse::<Subject>().unwrap_err();
        assert!(err.to_string().len() < 200, "inputs are quoted in part");
        assert!(format!("user:{}", "u".repeat(MAX_USER_NAME_LEN))
            .parse::<Subject>()
            .is_ok());
    }

    #[test]
    fn serde_uses_the_wire_spelling_and_normalises() {
        let s = Subject::anonymous(ip("2001:db8:1:2::9"));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#""ip:2001:db8:1:2::/64""#
        );
        let back: Subject = serde_json::from_str(r#""ip:2001:db8:1:2:0:0:0:9""#).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Subject>(r#""ip:nope""#).is_err());
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            // IPv4-mapped IPv6.
            any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
        ]
    }

    fn any_subject() -> impl Strategy<Value = Subject> {
        prop_oneof![
            any_ip().prop_map(Subject::anonymous),
            "[A-Za-z0-9._@-]{1,128}".prop_map(|n| Subject::user(&n).unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn display_and_from_str_round_trip(s in any_subject()) {
            let text = s.to_string();
            let back: Subject = text.parse().unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn every_address_in_one_64_is_one_subject(
            network in any::<u64>(), a in any::<u64>(), b in any::<u64>()
        ) {
            let addr = |host: u64| IpAddr::V6(Ipv6Addr::from(((network as u128) << 64) | host as u128));
            // Leave out the /64 that holds the IPv4-mapped range: its members are IPv4 clients.
            prop_assume!(network != 0);
            let (x, y) = (addr(a), addr(b));
            prop_assert_eq!(Subject::anonymous(x), Subject::anonymous(y));
            // A full address, as an older edge sent it, parses to the same subject.
            prop_assert_eq!(format!("ip:{x}").parse::<Subject>().unwrap(), Subject::anonymous(y));
            prop_assert!(IpBlock::of(x).contains(y));
        }

        #[test]
        fn different_64s_are_different_subjects(n1 in 1u64.., n2 in 1u64.., host in any::<u64>()) {
            prop_assume!(n1 != n2);
            let addr = |n: u64| IpAddr::V6(Ipv6Addr::from(((n as u128) << 64) | host as u128));
            prop_assert_ne!(Subject::anonymous(addr(n1)), Subject::anonymous(addr(n2)));
        }

        #[test]
        fn mapped_ipv6_is_the_ipv4_subject(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            prop_assert_eq!(
                Subject::anonymous(IpAddr::V6(v4.to_ipv6_mapped())),
                Subject::anonymous(IpAddr::V4(v4))
            );
            prop_assert_eq!(Subject::anonymous(IpAddr::V4(v4)).to_string(), format!("ip:{v4}"));
        }

        #[test]
        fn parsing_any_string_never_panics_and_accepts_only_normal_forms(text in ".{0,80}") {
            if let Ok(s) = text.parse::<Subject>() {
                let again: Subject = s.to_string().parse().unwrap();
                prop_assert_eq!(again, s);
            }
        }

        #[test]
        fn parsing_ip_text_gives_the_anonymous_subject(ip in any_ip()) {
            prop_assert_eq!(format!("ip:{ip}").parse::<Subject>().unwrap(), Subject::anonymous(ip));
        }
    }
}
