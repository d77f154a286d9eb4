//! Per-run certificates: one CA, one certificate per member (server and
//! peer, with the member's loopback IP), one client certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Files one member is started with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// Certificates written under one directory, cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    inner: Arc<Inner>,
}

fn write(path: &Path, contents: &str) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn leaf_params(
    common_name: &str,
    sans: Vec<String>,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    Ok(params)
}

impl TlsMaterial {
    /// Generates a CA and certificates for `members` (name, IP) into `dir`.
    /// `members` holds each member's name and the names and addresses its
    /// certificate must be valid for.
    pub fn generate(dir: &Path, members: &[(String, Vec<String>)]) -> Result<Self, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "raftcert run CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        write(&dir.join("ca.pem"), &ca_pem)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let both = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        for (name, sans) in members {
            let key = KeyPair::generate()?;
            let params = leaf_params(name, sans.clone(), both.clone())?;
            let cert = params.signed_by(&key, &issuer)?;
            write(&dir.join(format!("{name}.pem")), &cert.pem())?;
            write(&dir.join(format!("{name}-key.pem")), &key.serialize_pem())?;
        }
        let client_key = KeyPair::generate()?;
        let client_params = leaf_params(
            "raftcert-client",
            vec!["raftcert-client".to_string()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        let client_cert = client_params.signed_by(&client_key, &issuer)?;
        let client_cert_pem = client_cert.pem();
        let client_key_pem = client_key.serialize_pem();
        write(&dir.join("client.pem"), &client_cert_pem)?;
        write(&dir.join("client-key.pem"), &client_key_pem)?;
        Ok(TlsMaterial {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                ca_pem,
                client_cert_pem,
                client_key_pem,
            }),
        })
    }

    pub fn member_files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: self.inner.dir.join(format!("{name}.pem")),
            key: self.inner.dir.join(format!("{name}-key.pem")),
            ca: self.inner.dir.join("ca.pem"),
        }
    }

    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }
    pub fn client_cert_pem(&self) -> &str {
        &self.inner.client_cert_pem
    }
    pub fn client_key_pem(&self) -> &str {
        &self.inner.client_key_pem
    }
}
