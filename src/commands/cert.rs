//! `piswarm cert`: a private certificate authority and a server certificate it signs, for
//! `serve --tls-cert/--tls-key` and `worker --tls-ca`, made with rcgen.
//!
//! What a newcomer needs and gets right the first time: the server certificate is an end-entity
//! certificate (`CA:FALSE`, `serverAuth`), names every host the workers use (a DNS name or an IP
//! address each, as rustls checks them), and is signed by a separate CA certificate (`CA:TRUE`)
//! that the workers trust. The CA's private key signs this one certificate and is never written,
//! so ca.pem can vouch for nothing else. Existing files are never overwritten: if any of the three
//! exists, nothing is written.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The files `piswarm cert` writes, in its `--out` directory.
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";

/// What to make.
#[derive(Debug, Clone)]
pub struct CertOptions {
    /// DNS names and IP addresses of the coordinator, as workers write them in `--connect`.
    pub hosts: Vec<String>,
    pub out: PathBuf,
    /// Validity, from now.
    pub days: u32,
}

/// Why no certificate was written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    BadHost(String),
    #[error("{} already exists; piswarm cert never overwrites a file: choose another --out directory, or move the old files away first", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The names in the certificate, as `DNS:name` or `IP:address`.
    pub names: Vec<String>,
    pub not_after: String,
}

impl Written {
    /// Lines telling the user what was written and what to run next.
    pub fn describe(&self) -> Vec<String> {
        let first = self
            .names
            .first()
            .map(|n| n.split_once(':').map_or(n.as_str(), |(_, v)| v))
            .unwrap_or("HOST");
        let host = if first.contains(':') {
            format!("[{first}]")
        } else {
            first.to_string()
        };
        vec![
            format!(
                "piswarm cert: wrote {} (the certificate authority: give it to every worker)",
                self.ca.display()
            ),
            format!(
                "piswarm cert: wrote {} and {} (the coordinator's; keep the key private)",
                self.cert.display(),
                self.key.display()
            ),
            format!(
                "piswarm cert: the certificate names {}; valid until {}",
                self.names.join(", "),
                self.not_after
            ),
            format!(
                "  piswarm serve  --listen 0.0.0.0:5050 --tls-cert {} --tls-key {}",
                self.cert.display(),
                self.key.display()
            ),
            format!(
                "  piswarm worker --connect {host}:5050 --tls-ca {}",
                self.ca.display()
            ),
        ]
    }
}

/// One host as it goes into the certificate: an IP address, or a DNS name that rustls accepts.
fn subject_alt_name(host: &str) -> Result<SanType, CertError> {
    let host = host.trim();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !host.is_empty()
        && rustls::pki_types::DnsName::try_from(host.to_string()).is_ok()
        && !host.contains('*');
    if !valid {
        return Err(CertError::BadHost(format!(
            "--hosts: '{host}' is neither an IP address nor a DNS name (e.g. pi.example, localhost, 10.0.0.5)"
        )));
    }
    Ok(SanType::DnsName(host.to_string().try_into()?))
}

fn describe_san(san: &SanType) -> String {
    match san {
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        SanType::DnsName(name) => format!("DNS:{}", name.as_str()),
        other => format!("{other:?}"),
    }
}

/// The date part of an RFC 3339 time: year, month, day.
fn ymd(t: SystemTime) -> (i32, u8, u8, String) {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    let date = &text[..10];
    let year = date[..4].parse().unwrap_or(1970);
    let month = date[5..7].parse().unwrap_or(1);
    let day = date[8..10].parse().unwrap_or(1);
    (year, month, day, date.to_string())
}

/// Makes the CA and the server certificate and writes ca.pem, server.pem and server.key into
/// `options.out` (created if missing), refusing if any of them exists.
pub fn write_certificates(options: &CertOptions) -> Result<Written, CertError> {
    let sans = options
        .hosts
        .iter()
        .filter(|h| !h.trim().is_empty())
        .map(|h| subject_alt_name(h))
        .collect::<Result<Vec<_>, _>>()?;
    if sans.is_empty() {
        return Err(CertError::BadHost(
            "--hosts: give at least one name or address of the coordinator".into(),
        ));
    }
    if options.days == 0 {
        return Err(CertError::BadHost("--days must be at least 1".into()));
    }
    let out = &options.out;
    let paths = [CA_FILE, CERT_FILE, KEY_FILE].map(|f| out.join(f));
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(CertError::Exists(existing.clone()));
    }

    // Valid from yesterday (clocks of workers may lag a little) for `days` days.
    let now = SystemTime::now();
    let (y0, m0, d0, _) = ymd(now - Duration::from_secs(86_400));
    let (y1, m1, d1, until) = ymd(now + Duration::from_secs(86_400 * u64::from(options.days)));
    let not_before = rcgen::date_time_ymd(y0, m0, d0);
    let not_after = rcgen::date_time_ymd(y1, m1, d1);

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::OrganizationName, "piswarm");
    ca_name.push(DnType::CommonName, "piswarm private CA");
    ca_params.distinguished_name = ca_name;
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let names: Vec<String> = sans.iter().map(describe_san).collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "piswarm");
    dn.push(
        DnType::CommonName,
        names[0]
            .split_once(':')
            .map_or(names[0].as_str(), |(_, v)| v),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &ca, &ca_key)?;

    std::fs::create_dir_all(out).map_err(|source| CertError::Io {
        path: out.clone(),
        source,
    })?;
    let [ca_path, cert_path, key_path] = paths;
    write_new(&ca_path, ca.pem().as_bytes(), 0o644)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(Written {
        ca: ca_path,
        cert: cert_path,
        key: key_path,
        names,
        not_after: until,
    })
}

/// Creates `path` (failing if it exists) with `mode` on Unix, and writes `contents`.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = open.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_dns_names_or_ip_addresses() {
        assert!(matches!(
            subject_alt_name("10.0.0.5").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(
            subject_alt_name("[::1]").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(
            subject_alt_name("pi.example").unwrap(),
            SanType::DnsName(_)
        ));
        assert!(subject_alt_name("not a host").is_err());
        assert!(subject_alt_name("*.example").is_err());
    }
}
