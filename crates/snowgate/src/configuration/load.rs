//! Loading: the YAML file under the `SNOWGATE__*` environment, `*_file` secrets, and the
//! check that every key in the file is one snowgate knows.
use std::path::{Path, PathBuf};

use super::problems::key_problem;
use super::{Secret, Settings};

/// A configuration problem, naming the key and its environment-variable form.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// `servicenow.token` → `SNOWGATE__SERVICENOW__TOKEN`.
pub fn env_name(key: &str) -> String {
    format!("SNOWGATE__{}", key.replace('.', "__").to_uppercase())
}

impl Settings {
    /// Load `file` (optional) and the `SNOWGATE__*` environment, resolve `*_file` secrets.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!(
                    "the file {} does not exist",
                    f.display()
                )));
            }
            if let Ok(text) = std::fs::read_to_string(f) {
                check_yaml_keys(&text)?;
            }
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Yaml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SNOWGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let mut settings = Self::from_builder(builder)?;
        settings.resolve_secret_files()?;
        Ok(settings)
    }

    /// The settings that YAML `text` alone gives, read as `load` reads its file, but without
    /// the `SNOWGATE__*` environment and without reading `*_file` secrets (their paths are
    /// kept): a check of configuration text that touches nothing else (the fuzz target).
    pub fn from_yaml_str(text: &str) -> Result<Settings, ConfigError> {
        check_yaml_keys(text)?;
        Self::from_builder(
            config::Config::builder()
                .add_source(config::File::from_str(text, config::FileFormat::Yaml)),
        )
    }

    fn from_builder(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> Result<Settings, ConfigError> {
        builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError(describe_config_error(&e)))
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        fn read(key: &str, file: &Option<PathBuf>, target: &mut Secret) -> Result<(), ConfigError> {
            if let Some(path) = file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(key_problem(
                        &format!("{key}_file"),
                        &format!("names {} which cannot be read: {e}", path.display()),
                    ))
                })?;
                *target = Secret::new(text.trim().to_string());
            }
            Ok(())
        }
        let sn = &mut self.servicenow;
        read("servicenow.token", &sn.token_file, &mut sn.token)?;
        read("servicenow.password", &sn.password_file, &mut sn.password)?;
        read(
            "servicenow.client_secret",
            &sn.client_secret_file,
            &mut sn.client_secret,
        )?;
        if let Some(j) = &mut self.jenkins {
            read("jenkins.api_token", &j.api_token_file, &mut j.api_token)?;
        }
        read(
            "store.password",
            &self.store.password_file,
            &mut self.store.password,
        )?;
        if let Some(b) = &mut self.callback.basic_auth {
            read(
                "callback.basic_auth.password",
                &b.password_file,
                &mut b.password,
            )?;
        }
        for t in self
            .auth
            .pipeline_tokens
            .iter_mut()
            .chain(self.auth.operator_tokens.iter_mut())
        {
            read("auth.*_tokens[].token", &t.token_file, &mut t.token)?;
        }
        Ok(())
    }
}

/// The config crate (0.14) panics on a YAML mapping key that is neither a string nor an
/// integer (an `unreachable!` in its YAML reader, rust-cli/config-rs issue 547; found by the
/// config_yaml fuzz target). Every snowgate key is a name, so such a key is refused first.
fn check_yaml_keys(text: &str) -> Result<(), ConfigError> {
    use yaml_rust2::Yaml;
    fn walk(v: &Yaml) -> Result<(), ConfigError> {
        match v {
            Yaml::Hash(h) => h.iter().try_for_each(|(k, v)| {
                let what = match k {
                    Yaml::String(_) | Yaml::Integer(_) => return walk(v),
                    Yaml::Null => "empty".to_string(),
                    Yaml::Boolean(b) => format!("`{b}`"),
                    Yaml::Real(r) => format!("`{r}`"),
                    Yaml::Array(_) => "a list".to_string(),
                    Yaml::Hash(_) => "a mapping".to_string(),
                    Yaml::Alias(_) | Yaml::BadValue => "not a name".to_string(),
                };
                Err(ConfigError(format!(
                    "a YAML key is {what}; keys are names such as `servicenow`"
                )))
            }),
            Yaml::Array(a) => a.iter().try_for_each(walk),
            _ => Ok(()),
        }
    }
    // A syntax error is left to the config crate, which reports it with its position.
    match yaml_rust2::YamlLoader::load_from_str(text) {
        Ok(docs) => docs.iter().try_for_each(walk),
        Err(_) => Ok(()),
    }
}

fn describe_config_error(e: &config::ConfigError) -> String {
    let text = e.to_string();
    // The config crate names the key as `for key "servicenow.timeout"`; add its env form.
    if let Some(start) = text.find("for key `").or_else(|| text.find("for key \"")) {
        let rest = &text[start + 9..];
        if let Some(end) = rest.find(['`', '"']) {
            let key = &rest[..end];
            return format!("{text} (environment variable {})", env_name(key));
        }
    }
    text
}
