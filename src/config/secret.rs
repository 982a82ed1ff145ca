//! Secrets: a value that can be given inline, as `${ENV_VAR}`, or through a `*_file` path, and
//! that can never be printed (`Debug` and `Display` show `<redacted>`).

use std::fmt;

/// A secret string. Compare with [`Secret::expose`] only where the value is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be resolved; the message never contains the secret itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the secret is empty")]
    Empty,
}

/// Expands `${NAME}` references (anywhere in the value) from the environment.
pub fn expand_env(value: &str) -> Result<String, SecretError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let v = std::env::var(name).map_err(|_| SecretError::MissingEnv(name.to_string()))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves an inline value (with `${ENV}` expansion) or reads a file (trailing newline
/// trimmed). The caller has already checked that at most one of them is set.
pub fn resolve(inline: Option<&str>, file: Option<&str>) -> Result<Option<Secret>, SecretError> {
    let value = match (inline, file) {
        (Some(v), _) => expand_env(v)?,
        (None, Some(path)) => {
            let path = expand_env(path)?;
            std::fs::read_to_string(&path)
                .map_err(|e| SecretError::File {
                    path: path.clone(),
                    reason: e.kind().to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        }
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(Some(Secret(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_and_expands() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(expand_env("plain").unwrap(), "plain");
        assert_eq!(
            expand_env("${PORTCULLIS_SURELY_UNSET_VAR}"),
            Err(SecretError::MissingEnv(
                "PORTCULLIS_SURELY_UNSET_VAR".into()
            ))
        );
        let path = std::env::temp_dir().join(format!("pc-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let got = resolve(None, path.to_str()).unwrap().unwrap();
        assert_eq!(got.expose(), "from-file");
        std::fs::remove_file(path).unwrap();
    }
}
