//! Typed access to the fields of a JSON request body: each reader checks one field's type and
//! bounds, and its error names the field.
use serde_json::{Map, Value};

use super::request::{FieldError, FORBIDDEN_ATTRIBUTES, MAX_SECS, MAX_URL};

/// Typed access to the fields of a JSON object, each error naming its field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub(crate) fn missing(&self, name: &str) -> FieldError {
        FieldError::new(name, "is required")
    }

    /// A string of 1..=`max` characters; `null` counts as absent.
    pub fn string(&self, name: &str, max: usize) -> Result<Option<String>, FieldError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let len = s.chars().count();
                if s.trim().is_empty() {
                    Err(FieldError::new(name, "must not be empty"))
                } else if len > max {
                    Err(FieldError::new(
                        name,
                        format!("is {len} characters long; at most {max} are allowed"),
                    ))
                } else if s.chars().any(|c| c.is_control()) {
                    Err(FieldError::new(name, "must not contain control characters"))
                } else {
                    Ok(Some(s.clone()))
                }
            }
            Some(other) => Err(FieldError::new(
                name,
                format!("must be a string, not {}", kind(other)),
            )),
        }
    }

    /// An absolute http(s) URL.
    pub fn url(&self, name: &str) -> Result<Option<String>, FieldError> {
        let Some(s) = self.string(name, MAX_URL)? else {
            return Ok(None);
        };
        match url::Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(Some(s)),
            _ => Err(FieldError::new(name, "must be an absolute http(s) URL")),
        }
    }

    /// A Jenkins build number: digits, given as a string or a number.
    pub(crate) fn build_number(&self, name: &str) -> Result<Option<String>, FieldError> {
        let text = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(other) => {
                return Err(FieldError::new(
                    name,
                    format!("must be a string or a number, not {}", kind(other)),
                ))
            }
        };
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new(
                name,
                "must be a build number made of digits, e.g. \"42\"",
            ));
        }
        Ok(Some(text))
    }

    /// `true`/`false`, also as the strings the plugin uses (`"true"`).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, FieldError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(other) => Err(FieldError::new(
                name,
                format!("must be true or false, not {}", kind(other)),
            )),
        }
    }

    /// Whole seconds, as a number or a numeric string (the plugin's parameters are strings);
    /// 0 means "off", as in the plugin.
    pub(crate) fn seconds(&self, name: &str) -> Result<Option<u64>, FieldError> {
        let n = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(other) => {
                return Err(FieldError::new(
                    name,
                    format!("must be a whole number of seconds, not {}", kind(other)),
                ))
            }
        };
        match n {
            Some(0) => Ok(None),
            Some(n) if n <= MAX_SECS => Ok(Some(n)),
            Some(_) => Err(FieldError::new(
                name,
                format!("must be at most {MAX_SECS} seconds"),
            )),
            None => Err(FieldError::new(
                name,
                "must be a whole, non-negative number of seconds",
            )),
        }
    }

    /// A Jenkins flow node id: digits (a string or a number); `""` or `null` is absent (the
    /// plugin's `parentId` of a top-level stage).
    pub(crate) fn node_id(&self, name: &str) -> Result<Option<String>, FieldError> {
        let v = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(other) => {
                return Err(FieldError::new(
                    name,
                    format!("must be a flow node id such as \"15\", not {}", kind(other)),
                ))
            }
        };
        if v.len() > 20 || !v.chars().all(|c| c.is_ascii_digit()) {
            return Err(FieldError::new(
                name,
                "must be a flow node id: digits only (Jenkins' FlowNode.getId())",
            ));
        }
        Ok(Some(v))
    }

    pub(crate) fn input_id(&self, name: &str) -> Result<Option<String>, FieldError> {
        let key = name.rsplit('.').next().unwrap_or(name);
        let v = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(FieldError::new(
                    name,
                    format!("must be a string, not {}", kind(other)),
                ))
            }
        };
        if v.is_empty()
            || v.len() > 64
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(FieldError::new(
                name,
                "must be 1 to 64 letters, digits, `_` or `-`",
            ));
        }
        Ok(Some(v))
    }

    pub(crate) fn change_request_details(&self, name: &str) -> Result<Option<Value>, FieldError> {
        let details = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(other) => {
                return Err(FieldError::new(
                    name,
                    format!("must be an object, not {}", kind(other)),
                ))
            }
        };
        match details.get("attributes") {
            None | Some(Value::Null) => {}
            Some(Value::Object(attrs)) => {
                if let Some(bad) = FORBIDDEN_ATTRIBUTES
                    .iter()
                    .find(|k| attrs.contains_key(**k))
                {
                    return Err(FieldError::new(
                        &format!("{name}.attributes.{bad}"),
                        format!(
                            "ServiceNow does not allow setting `{bad}` (forbidden: {})",
                            FORBIDDEN_ATTRIBUTES.join(", ")
                        ),
                    ));
                }
            }
            Some(other) => {
                return Err(FieldError::new(
                    &format!("{name}.attributes"),
                    format!("must be an object, not {}", kind(other)),
                ))
            }
        }
        for flag in ["setCloseCode", "autoCloseChange"] {
            if let Some(v) = details.get(flag) {
                if !v.is_boolean() && !v.is_null() {
                    return Err(FieldError::new(
                        &format!("{name}.{flag}"),
                        "must be true or false",
                    ));
                }
            }
        }
        Ok(Some(Value::Object(details.clone())))
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
