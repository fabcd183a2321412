//! The box's age identities (`secrets.age_key_file`, `--age-key`), read from an `age-keygen` file.
//! Errors name the file, never its content.

use std::path::{Path, PathBuf};

/// Why the age key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("age key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "age key file {path} holds no age identity (AGE-SECRET-KEY-1…), or one berth cannot use"
    )]
    Parse { path: PathBuf },
}

/// Identities that may unwrap a SOPS data key.
pub struct Identities(Vec<Box<dyn age::Identity>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({})", self.0.len())
    }
}

impl Identities {
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|b| b.as_ref() as &dyn age::Identity)
    }

    /// Parse an identity file's text (comments allowed, as `age-keygen` writes them).
    pub fn parse(text: &[u8], path: &Path) -> Result<Identities, KeyError> {
        let parse_err = || KeyError::Parse {
            path: path.to_path_buf(),
        };
        let file = age::IdentityFile::from_buffer(text).map_err(|_| parse_err())?;
        let ids = file.into_identities().map_err(|_| parse_err())?;
        if ids.is_empty() {
            return Err(parse_err());
        }
        Ok(Identities(ids))
    }

    /// Load `path`; `Ok(None)` when it does not exist (a box with no encrypted files needs no key).
    pub fn load(path: &Path) -> Result<Option<Identities>, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => Identities::parse(&bytes, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}
