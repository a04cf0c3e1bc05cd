//! The bodies the official ServiceNow DevOps Jenkins plugin (6.2.0) sends, checked member by
//! member, so that a sender that differs from the plugin is refused instead of passing by
//! accident. Pure functions over JSON; each error names the member.
//!
//! Sources: the plugin's `DevOpsModel.registerPipelineAndNotify` (the changeControl POST),
//! `DevOpsModel.sendBuildAndToken` (the acknowledgement PUT) and `DevOpsRunStatusModel` (stage
//! events), plus the API reference's "DevOps - POST /devops/orchestration/changeControl" and "DevOps -
//! PUT /devops/orchestration/changeControl/{changeControlId}" sections where they add a rule.
//!
//! Modules: `registration` (the changeControl POST and its acknowledgement PUT) and `events`
//! (stage and run events); this module holds the member checks they share.

use serde_json::{Map, Value};

use super::protocol::stage_after_hash;

#[cfg(test)]
mod builders;
mod events;
mod registration;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use builders::{plugin_acknowledgement, plugin_registration};
pub(crate) use events::check_event;
pub(crate) use registration::{check_acknowledgement, check_registration, PluginRegistration};

/// The first member anywhere in `value` whose value is `null`, as a dotted path. The plugin
/// builds its bodies with json-lib, whose `put(key, null)` removes the key, and Gson (events)
/// omits nulls: a `null` member never leaves it.
pub(crate) fn first_null(value: &Value, at: &str) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    match value {
        Value::Null => Some(at.to_string()),
        Value::Object(map) => map.iter().find_map(|(k, v)| first_null(v, &join(k))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_null(v, &format!("{at}[{i}]"))),
        _ => None,
    }
}

fn no_nulls(body: &Map<String, Value>) -> Result<(), String> {
    match first_null(&Value::Object(body.clone()), "") {
        Some(path) => Err(format!(
            "{path} is null: the official plugin leaves out members without a value"
        )),
        None => Ok(()),
    }
}

/// A member that must be a string (empty allowed only where `allow_empty`).
fn string<'a>(object: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a str, String> {
    match object.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        None | Some(Value::String(_)) => Err(format!("{at}{key} is required")),
        Some(_) => Err(format!("{at}{key} must be a string")),
    }
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{at}{key} must be a string")),
    }
}

/// The plugin's flags are the strings `"true"`/`"false"` (`GenericUtils.isMultiBranch`,
/// `isFreestyle`), never JSON booleans.
fn string_flag(object: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match object.get(key) {
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        None => Err(format!("{key} is required")),
        Some(_) => Err(format!(
            "{key} must be the string \"true\" or \"false\", as the official plugin sends it"
        )),
    }
}

fn equal(key: &str, got: &str, want: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{key} must be {want:?}, got {got:?}"))
    }
}

/// `https://ci/job/folder/job/app#Deploy/Prod/` → (`https://ci/job/folder/job/app/`,
/// `Deploy/Prod`): the plugin's task URL is the job URL with its last `/` replaced by
/// `#<stage path>/`.
pub(crate) fn split_task_url(task_url: &str) -> Option<(String, String)> {
    let (job, _) = task_url.split_once('#')?;
    let stage = stage_after_hash(task_url)?;
    if !task_url.ends_with('/') || job.is_empty() {
        return None;
    }
    Some((format!("{job}/"), stage))
}

/// The `parentNode` object: `{id, name, parentId, upstreamStageName?, upstreamTaskExecutionURL?}`.
fn parent_node(body: &Map<String, Value>, stage: &str) -> Result<(), String> {
    let node = match body.get("parentNode") {
        Some(Value::Object(node)) => node,
        None => return Err("parentNode is required".into()),
        Some(_) => return Err("parentNode must be an object".into()),
    };
    string(node, "id", "parentNode.")?;
    equal(
        "parentNode.name",
        string(node, "name", "parentNode.")?,
        stage,
    )?;
    // `""` at top level, the enclosing stage's node id inside another stage.
    match node.get("parentId") {
        Some(Value::String(_)) => {}
        None => return Err("parentNode.parentId is required (\"\" at top level)".into()),
        Some(_) => return Err("parentNode.parentId must be a string".into()),
    }
    optional_string(node, "upstreamStageName", "parentNode.")?;
    optional_string(node, "upstreamTaskExecutionURL", "parentNode.")?;
    Ok(())
}

/// The stage fields the plugin fills from the current stage in both the POST and the PUT
/// (`DevOpsModel.addStageNodeParams`): `parentStageName` `<item>#<stage>`, `parentStageURL` the
/// task URL, `parentNode`, `parentStageExecutionURL`.
fn stage_node_params(
    body: &Map<String, Value>,
    item: &str,
    stage: &str,
    task_url: &str,
) -> Result<String, String> {
    equal(
        "parentStageName",
        string(body, "parentStageName", "")?,
        &format!("{item}#{stage}"),
    )?;
    equal(
        "parentStageURL",
        string(body, "parentStageURL", "")?,
        task_url,
    )?;
    parent_node(body, stage)?;
    Ok(string(body, "parentStageExecutionURL", "")?.to_string())
}

/// `orchestrationTaskDetails` as the API reference requires it (`triggerType` one of user, scm,
/// upstream; `upstreamTaskExecutionURL` "Required if triggerType is set to upstream").
pub(crate) fn check_trigger(details: &Map<String, Value>) -> Result<(), String> {
    let at = "orchestrationTaskDetails.";
    match string(details, "triggerType", at)? {
        "user" | "scm" => Ok(()),
        "upstream" => string(details, "upstreamTaskExecutionURL", at)
            .map(|_| ())
            .map_err(|e| format!("{e} when triggerType is upstream")),
        other => Err(format!(
            "{at}triggerType must be one of user, scm, upstream (got {other:?})"
        )),
    }
}
