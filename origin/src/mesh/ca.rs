//! The mesh CA (rcgen): `mesh ca init` makes a CA key and self-signed certificate; `mesh issue`
//! makes a node's key and a certificate signed by the CA, valid for both TLS roles (a node is
//! a server on its mesh listener and a client toward its peers). Keys are ECDSA P-256 and
//! written with mode 0600; certificates carry a random 126-bit serial (what `mesh.revoked`
//! lists) and the node's name as CN.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// What `issue` made. Its `Debug` leaves the private key out.
#[derive(Clone)]
pub struct Issued {
    pub name: String,
    /// Lower-case hex, no separators.
    pub serial: String,
    pub not_after: SystemTime,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("name", &self.name)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What a node's certificate is for.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Valid from `not_before` (default: now minus a minute) for this long.
    pub not_before: Option<SystemTime>,
    pub validity: Duration,
}

/// A serial number as we compare them: lower-case hex without separators or leading zeros;
/// `None` when `s` is not hex.
pub fn normalize_serial(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0').to_ascii_lowercase();
    Some(if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed
    })
}

/// A certificate name: what `mesh.operators` lists and logs show.
pub fn check_name(name: &str) -> Result<(), String> {
    if (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a node name (1-64 letters, digits, - . _)"
        ))
    }
}

fn offset(t: SystemTime) -> Result<time::OffsetDateTime, String> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "a time before 1970".to_string())?
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|e| e.to_string())
}

fn serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte: DER keeps it at 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (SerialNumber::from_slice(&bytes), hex)
}

/// Writes a new file with `mode` (0600 for a key); refuses to replace one.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes the CA in `dir` (created if missing): `ca.key` (0600) and `ca.pem`, valid for
/// `validity`. Refuses to overwrite either. Returns the certificate's path.
pub fn init(dir: &Path, name: &str, validity: Duration) -> Result<PathBuf, String> {
    check_name(name)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(format!(
                "{} exists: a mesh CA is already there (certificates it signed would stop working if it were replaced)",
                p.display()
            ));
        }
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Heady mesh");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = offset(now - Duration::from_secs(60))?;
    params.not_after = offset(now + validity)?;
    params.serial_number = Some(serial().0);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(cert_path)
}

/// Signs a node certificate with the CA in `ca_dir`.
pub fn issue(ca_dir: &Path, spec: &NodeSpec) -> Result<Issued, String> {
    check_name(&spec.name)?;
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let ca_pem = read(ca_dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&read(ca_dir.join(CA_KEY))?)
        .map_err(|e| format!("{}: {e}", ca_dir.join(CA_KEY).display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| format!("{}: {e}", ca_dir.join(CA_CERT).display()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.name.as_str());
    dn.push(DnType::OrganizationName, "Heady mesh");
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    for d in std::iter::once(&spec.name).chain(&spec.dns) {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| format!("{d:?} is not a DNS name"))?;
        sans.push(SanType::DnsName(name));
    }
    sans.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let from = spec
        .not_before
        .unwrap_or_else(|| SystemTime::now() - Duration::from_secs(60));
    let not_after = from + spec.validity;
    params.not_before = offset(from)?;
    params.not_after = offset(not_after)?;
    let (sn, hex) = serial();
    params.serial_number = Some(sn);
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    Ok(Issued {
        name: spec.name.clone(),
        serial: hex,
        not_after,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `NAME.pem` and `NAME.key` (0600) into `dir`; refuses to overwrite. Returns both paths.
pub fn write_issued(dir: &Path, issued: &Issued) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert = dir.join(format!("{}.pem", issued.name));
    let key = dir.join(format!("{}.key", issued.name));
    for p in [&cert, &key] {
        if p.exists() {
            return Err(format!("{} exists", p.display()));
        }
    }
    write_new(&key, &issued.key_pem, 0o600)?;
    write_new(&cert, &issued.cert_pem, 0o644)?;
    Ok((cert, key))
}

/// When a DER certificate expires (Unix seconds).
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The peer's name (CN) and serial (normalized hex) from its DER certificate.
pub fn name_and_serial(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some((name, normalize_serial(&serial)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_one_form() {
        assert_eq!(normalize_serial("0A:1b"), Some("a1b".into()));
        assert_eq!(normalize_serial("0x00ff"), Some("ff".into()));
        assert_eq!(normalize_serial("00"), Some("0".into()));
        for bad in ["", "xyz", "0x", ":"] {
            assert_eq!(normalize_serial(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_ca_issues_node_certificates_with_their_name_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init(&ca, "test-mesh-ca", Duration::from_secs(86_400)).unwrap();
        assert!(init(&ca, "again", Duration::from_secs(60)).is_err());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(ca.join(CA_KEY)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let issued = issue(
            &ca,
            &NodeSpec {
                name: "origin-a".into(),
                ips: vec!["127.0.0.1".parse().unwrap()],
                validity: Duration::from_secs(3600),
                ..Default::default()
            },
        )
        .unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let (name, serial) = name_and_serial(&der).unwrap();
        assert_eq!(name, "origin-a");
        assert_eq!(serial, issued.serial);
        assert!(check_name("bad name").is_err());
    }

    use rustls::pki_types::pem::PemObject as _;
}
