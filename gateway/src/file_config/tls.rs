//! The `tls:` section: the gateway's certificate chain and key, PEM files (relative to the
//! file's folder), read and checked at load so that `vyx check` and the start refuse files
//! that cannot be used.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::checks::Checker;
use super::ConfigError;
use crate::tls::TlsFiles;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tls {
    cert: String,
    key: String,
}

impl Checker {
    pub(super) fn tls(&self, t: &Spanned<Tls>) -> Result<TlsFiles, ConfigError> {
        let files = TlsFiles {
            cert: self.resolve(&t.value.cert),
            key: self.resolve(&t.value.key),
        };
        crate::tls::load(&files).map_err(|e| self.err(t.referenced, format!("tls: {e}")))?;
        Ok(files)
    }
}
