//! `sslmode` in a PostgreSQL `store.url`, read as libpq reads it. Compiled also without the
//! `postgres` feature: the configuration check reads the URL either way.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ))
            }
        })
    }
}

/// `store.url` without its `sslmode` (which tokio-postgres reads only in part), and the mode.
pub fn split_sslmode(url: &str) -> Result<(String, SslMode), String> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok((url.to_string(), SslMode::default()));
    };
    let mut mode = SslMode::default();
    let mut rest = Vec::new();
    for (k, v) in parsed.query_pairs() {
        if k == "sslmode" {
            mode = SslMode::parse(&v)?;
        } else {
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    Ok((parsed.to_string(), mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_the_url() {
        let (url, mode) =
            split_sslmode("postgres://u@db:5432/snowgate?sslmode=verify-full&application_name=x")
                .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(url, "postgres://u@db:5432/snowgate?application_name=x");
        let (url, mode) = split_sslmode("postgres://u@db/snowgate").unwrap();
        assert_eq!(mode, SslMode::Prefer);
        assert_eq!(url, "postgres://u@db/snowgate");
        let (url, mode) = split_sslmode("postgres://u@db/s?sslmode=disable").unwrap();
        assert_eq!(mode, SslMode::Disable);
        assert_eq!(url, "postgres://u@db/s");
        assert!(split_sslmode("postgres://u@db/s?sslmode=allow-anything")
            .unwrap_err()
            .contains("verify-full"));
    }
}
