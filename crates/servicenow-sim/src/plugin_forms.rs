//! The bodies the official ServiceNow DevOps Jenkins plugin (6.2.0) sends, checked member by
//! member, so that a sender that differs from the plugin is refused instead of passing by
//! accident. Pure functions over JSON; each error names the member.
//!
//! Sources: the plugin's `DevOpsModel.registerPipelineAndNotify` (the changeControl POST),
//! `DevOpsModel.sendBuildAndToken` (the acknowledgement PUT) and `DevOpsRunStatusModel` (stage
//! events), plus the seed's "DevOps - POST /devops/orchestration/changeControl" and "DevOps -
//! PUT /devops/orchestration/changeControl/{changeControlId}" sections where they add a rule.

use serde_json::{Map, Value};

use super::protocol::{job_segments, stage_after_hash};

/// What a checked changeControl POST says about its stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PluginRegistration {
    /// The job URL as Jenkins renders it, with its trailing `/` (`https://ci/job/folder/job/app/`).
    pub(crate) job_url: String,
    /// Jenkins' `JOB_NAME`: the item names along the job URL, decoded once (`folder/app`,
    /// `mb/feature%2Fx`).
    pub(crate) full_name: String,
    /// The job's own item name (`app`, `feature%2Fx`).
    pub(crate) item: String,
    /// The full stage path (`Deploy/Prod`).
    pub(crate) stage: String,
    pub(crate) multibranch: bool,
    pub(crate) freestyle: bool,
    pub(crate) branch: Option<String>,
    /// `orchestrationTaskDetails.buildNumber`.
    pub(crate) build_number: String,
    /// The stage execution URL (`…/42/execution/node/15/wfapi/describe`).
    pub(crate) task_execution_url: String,
}

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

/// `orchestrationTaskDetails` as the seed requires it (`triggerType` one of user, scm,
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

/// The changeControl POST body exactly as the plugin builds it (SPEC §2 "Wire format of the
/// official plugin"): every member named there, of the plugin's type, consistent with the task
/// URL, and no `null` members. Unknown extra members are ignored, as ServiceNow ignores them.
pub(crate) fn check_registration(body: &Map<String, Value>) -> Result<PluginRegistration, String> {
    no_nulls(body)?;
    string(body, "callbackURL", "")?;
    let task_url = string(body, "orchestrationTaskURL", "")?;
    let (job_url, stage_in_url) = split_task_url(task_url).ok_or_else(|| {
        format!("orchestrationTaskURL must be the job URL with its last / replaced by #<stage>/, got {task_url:?}")
    })?;
    let multibranch = string_flag(body, "isMultiBranch")?;
    let freestyle = string_flag(body, "isFreestyle")?;
    let branch = optional_string(body, "branchName", "")?.map(str::to_string);
    if multibranch && branch.as_deref().is_none_or(|b| b.trim().is_empty()) {
        return Err("branchName is required when isMultiBranch is \"true\"".into());
    }
    let pipeline_execution_url = string(body, "pipelineExecutionUrl", "")?;
    if !pipeline_execution_url.starts_with(&job_url) {
        return Err(format!(
            "pipelineExecutionUrl must be a build URL of {job_url}, got {pipeline_execution_url:?}"
        ));
    }
    let names = job_segments(&job_url);
    let item = names
        .last()
        .cloned()
        .ok_or_else(|| format!("orchestrationTaskURL names no Jenkins job: {task_url:?}"))?;
    let full_name = names.join("/");
    // In the POST the plugin overwrites `jobName#stage` with the plain item name.
    equal(
        "orchestrationTaskName",
        string(body, "orchestrationTaskName", "")?,
        &item,
    )?;
    let stage = string(body, "stageName", "")?.to_string();
    equal("stageName", &stage, &stage_in_url)?;
    let stage_execution_url = stage_node_params(body, &item, &stage, task_url)?;

    let at = "orchestrationTaskDetails.";
    let details = match body.get("orchestrationTaskDetails") {
        Some(Value::Object(details)) => details,
        None => return Err("orchestrationTaskDetails is required".into()),
        Some(_) => return Err("orchestrationTaskDetails must be an object".into()),
    };
    string(details, "message", at)?;
    check_trigger(details)?;
    optional_string(details, "userName", at)?;
    let build_number = match details.get("buildNumber") {
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.clone()
        }
        None => return Err(format!("{at}buildNumber is required")),
        Some(_) => {
            return Err(format!(
                "{at}buildNumber must be the build number as a string (Integer.toString), as the official plugin sends it"
            ))
        }
    };
    equal(
        "pipelineExecutionUrl",
        pipeline_execution_url,
        &format!("{job_url}{build_number}/"),
    )?;
    equal(
        "orchestrationTaskDetails.fullName",
        string(details, "fullName", at)?,
        &full_name,
    )?;
    let task_execution_url = string(details, "taskExecutionURL", at)?;
    equal(
        "orchestrationTaskDetails.taskExecutionURL",
        task_execution_url,
        &stage_execution_url,
    )?;
    match body.get("changeRequestDetails") {
        None | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(
                "changeRequestDetails must be a JSON object (the plugin parses the step's JSON into one)"
                    .into(),
            )
        }
    }
    Ok(PluginRegistration {
        job_url,
        full_name,
        item,
        stage,
        multibranch,
        freestyle,
        branch,
        build_number,
        task_execution_url: task_execution_url.to_string(),
    })
}

/// The acknowledgement `PUT …/changeControl/{token}` as the plugin sends it
/// (`sendBuildAndToken`), checked against what the token was registered with: `callbackURL`,
/// `orchestrationTaskURL`, `taskExecutionURL` (the seed's required members), `isMultiBranch`,
/// `branchName?`, `orchestrationTaskName` `<item>#<stage>`, `parentTaskExecutionURL` and the
/// stage node params.
///
/// The seed's table also marks `orchestrationTaskDetails` required, but the plugin never sends
/// it in this PUT: it is checked when present and not demanded, so that the plugin's own form
/// passes.
pub(crate) fn check_acknowledgement(
    body: &Map<String, Value>,
    callback_url: &str,
    task_url: &str,
    registered: &PluginRegistration,
) -> Result<(), String> {
    no_nulls(body)?;
    equal(
        "callbackURL",
        string(body, "callbackURL", "")?,
        callback_url,
    )?;
    equal(
        "orchestrationTaskURL",
        string(body, "orchestrationTaskURL", "")?,
        task_url,
    )?;
    equal(
        "taskExecutionURL",
        string(body, "taskExecutionURL", "")?,
        &registered.task_execution_url,
    )?;
    if string_flag(body, "isMultiBranch")? != registered.multibranch {
        return Err(format!(
            "isMultiBranch must be \"{}\" as registered",
            registered.multibranch
        ));
    }
    let branch = optional_string(body, "branchName", "")?;
    if registered.multibranch && branch != registered.branch.as_deref() {
        return Err(format!(
            "branchName must be {:?} as registered",
            registered.branch.as_deref().unwrap_or_default()
        ));
    }
    // Not overwritten in the PUT, unlike the POST: `jobName#stage`.
    equal(
        "orchestrationTaskName",
        string(body, "orchestrationTaskName", "")?,
        &format!("{}#{}", registered.item, registered.stage),
    )?;
    string(body, "parentTaskExecutionURL", "")?;
    let stage_execution_url =
        stage_node_params(body, &registered.item, &registered.stage, task_url)?;
    equal(
        "parentStageExecutionURL",
        &stage_execution_url,
        &registered.task_execution_url,
    )?;
    match body.get("orchestrationTaskDetails") {
        None => Ok(()),
        Some(Value::Object(details)) => check_trigger(details),
        Some(_) => Err("orchestrationTaskDetails must be an object".into()),
    }
}

/// A stage or run event `POST …/devops/tool/orchestration` in the plugin's
/// `DevOpsRunStatusModel` shape: `{url, number, phase, result?, pronoun, isMultiBranch,
/// timestamp, jobModel{name,url,fullName}, stageModel{…}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StageEvent {
    /// `jobModel.url`.
    pub(crate) job_url: String,
    /// `stageModel.name` (the full stage path), `None` for a run event (empty `stageModel`).
    pub(crate) stage: Option<String>,
    /// `stageModel.phase` for a stage event, the top-level `phase` for a run event.
    pub(crate) phase: String,
    /// `number`.
    pub(crate) build_number: u64,
}

fn phase(object: &Map<String, Value>, at: &str) -> Result<String, String> {
    match string(object, "phase", at)? {
        p @ ("STARTED" | "COMPLETED") => Ok(p.to_string()),
        other => Err(format!(
            "{at}phase must be STARTED or COMPLETED (got {other:?})"
        )),
    }
}

pub(crate) fn check_event(body: &Map<String, Value>) -> Result<StageEvent, String> {
    no_nulls(body)?;
    let url = string(body, "url", "")?;
    let build_number = body
        .get("number")
        .and_then(Value::as_u64)
        .ok_or("number is required: the build number as a JSON number")?;
    let run_phase = phase(body, "")?;
    string(body, "pronoun", "")?;
    if !body.contains_key("isMultiBranch") {
        return Err("isMultiBranch is required".into());
    }
    if !body.get("timestamp").is_some_and(Value::is_number) {
        return Err("timestamp is required: milliseconds since the epoch".into());
    }
    let job = match body.get("jobModel") {
        Some(Value::Object(job)) => job,
        None => return Err("jobModel is required".into()),
        Some(_) => return Err("jobModel must be an object".into()),
    };
    string(job, "name", "jobModel.")?;
    string(job, "fullName", "jobModel.")?;
    let job_url = string(job, "url", "jobModel.")?;
    if !job_url.ends_with('/') || !url.starts_with(job_url) {
        return Err(format!(
            "url must be a build URL of jobModel.url {job_url:?}, got {url:?}"
        ));
    }
    let stage_model = match body.get("stageModel") {
        Some(Value::Object(stage)) => stage,
        None => return Err("stageModel is required (empty for a run event)".into()),
        Some(_) => return Err("stageModel must be an object".into()),
    };
    if stage_model.is_empty() {
        return Ok(StageEvent {
            job_url: job_url.to_string(),
            stage: None,
            phase: run_phase,
            build_number,
        });
    }
    let at = "stageModel.";
    let stage = string(stage_model, "name", at)?.to_string();
    string(stage_model, "id", at)?;
    let stage_phase = phase(stage_model, at)?;
    let stage_url = string(stage_model, "url", at)?;
    if !stage_url.starts_with(url) {
        return Err(format!(
            "stageModel.url must be a stage execution URL of the build {url:?}, got {stage_url:?}"
        ));
    }
    if let Some(pipeline) = optional_string(stage_model, "pipelineExecutionUrl", at)? {
        equal("stageModel.pipelineExecutionUrl", pipeline, url)?;
    }
    for key in [
        "result",
        "upstreamStageName",
        "upstreamTaskExecutionURL",
        "parentStageName",
        "parentExecutionUrl",
    ] {
        optional_string(stage_model, key, at)?;
    }
    Ok(StageEvent {
        job_url: job_url.to_string(),
        stage: Some(stage),
        phase: stage_phase,
        build_number,
    })
}

/// A changeControl POST body as the plugin builds it for `stage` (a top-level stage, flow node
/// 15, no upstream sibling told) of build `build` of `job_url`, started by user alice;
/// multibranch when `branch` is given.
#[cfg(test)]
pub(crate) fn plugin_registration(
    callback_url: &str,
    job_url: &str,
    stage: &str,
    build: u32,
    branch: Option<&str>,
) -> Value {
    let names = job_segments(job_url);
    let item = names.last().cloned().unwrap_or_default();
    let base = job_url.strip_suffix('/').unwrap_or(job_url);
    let task_url = format!("{base}#{stage}/");
    let execution = format!("{job_url}{build}/execution/node/15/wfapi/describe");
    let mut body = serde_json::json!({
        "callbackURL": callback_url,
        "orchestrationTaskURL": task_url,
        "isMultiBranch": if branch.is_some() { "true" } else { "false" },
        "isFreestyle": "false",
        "pipelineExecutionUrl": format!("{job_url}{build}/"),
        "orchestrationTaskName": item,
        "stageName": stage,
        "parentStageName": format!("{item}#{stage}"),
        "parentStageURL": task_url,
        "parentNode": {"id": "15", "name": stage, "parentId": ""},
        "parentStageExecutionURL": execution,
        "orchestrationTaskDetails": {
            "message": "Started by user alice",
            "triggerType": "user",
            "userName": "alice",
            "buildNumber": build.to_string(),
            "fullName": names.join("/"),
            "taskExecutionURL": execution,
        },
    });
    if let Some(branch) = branch {
        body["branchName"] = Value::String(branch.to_string());
    }
    body
}

/// The acknowledgement the plugin sends for a registration body built by
/// [`plugin_registration`].
#[cfg(test)]
pub(crate) fn plugin_acknowledgement(registration: &Value) -> Value {
    let mut body = Map::new();
    for key in [
        "callbackURL",
        "orchestrationTaskURL",
        "isMultiBranch",
        "branchName",
        "parentStageName",
        "parentStageURL",
        "parentNode",
        "parentStageExecutionURL",
    ] {
        if let Some(v) = registration.get(key) {
            body.insert(key.to_string(), v.clone());
        }
    }
    let execution = registration["parentStageExecutionURL"].clone();
    body.insert("taskExecutionURL".into(), execution.clone());
    body.insert("parentTaskExecutionURL".into(), execution);
    body.insert(
        "orchestrationTaskName".into(),
        registration["parentStageName"].clone(),
    );
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// SPEC §2's worked example (a): `https://ci/job/folder/job/app/`, stage `Deploy` after
    /// `Build`, build 42 started by alice.
    fn worked_example() -> Value {
        json!({"callbackURL":"https://sg/sn-devops/pipeline_1b4e28ba-2fa1-41d2-883f-0016d3cca427",
         "orchestrationTaskURL":"https://ci/job/folder/job/app#Deploy/","isMultiBranch":"false",
         "isFreestyle":"false","pipelineExecutionUrl":"https://ci/job/folder/job/app/42/",
         "orchestrationTaskName":"app","stageName":"Deploy","parentStageName":"app#Deploy",
         "parentStageURL":"https://ci/job/folder/job/app#Deploy/",
         "parentNode":{"id":"15","name":"Deploy","parentId":"","upstreamStageName":"Build",
           "upstreamTaskExecutionURL":"https://ci/job/folder/job/app/42/execution/node/9/wfapi/describe"},
         "parentStageExecutionURL":"https://ci/job/folder/job/app/42/execution/node/15/wfapi/describe",
         "orchestrationTaskDetails":{"message":"Started by user alice","triggerType":"user","userName":"alice",
           "buildNumber":"42","fullName":"folder/app",
           "taskExecutionURL":"https://ci/job/folder/job/app/42/execution/node/15/wfapi/describe"}})
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_worked_examples_pass() {
        let reg = check_registration(&map(worked_example())).unwrap();
        assert_eq!(reg.job_url, "https://ci/job/folder/job/app/");
        assert_eq!(reg.full_name, "folder/app");
        assert_eq!(reg.item, "app");
        assert_eq!(reg.stage, "Deploy");
        assert_eq!(reg.build_number, "42");

        // (c) multibranch: the item is the branch job, decoded once.
        let mut mb = worked_example();
        let task = "https://ci/job/mb/job/feature%252Fx#Deploy/";
        let exec = "https://ci/job/mb/job/feature%252Fx/42/execution/node/15/wfapi/describe";
        mb["orchestrationTaskURL"] = json!(task);
        mb["parentStageURL"] = json!(task);
        mb["isMultiBranch"] = json!("true");
        mb["branchName"] = json!("feature/x");
        mb["pipelineExecutionUrl"] = json!("https://ci/job/mb/job/feature%252Fx/42/");
        mb["orchestrationTaskName"] = json!("feature%2Fx");
        mb["parentStageName"] = json!("feature%2Fx#Deploy");
        mb["parentStageExecutionURL"] = json!(exec);
        mb["orchestrationTaskDetails"]["fullName"] = json!("mb/feature%2Fx");
        mb["orchestrationTaskDetails"]["taskExecutionURL"] = json!(exec);
        let reg = check_registration(&map(mb)).unwrap();
        assert_eq!(reg.full_name, "mb/feature%2Fx");
        assert_eq!(reg.item, "feature%2Fx");
        assert_eq!(reg.branch.as_deref(), Some("feature/x"));
    }

    #[test]
    fn forms_the_plugin_never_sends_are_refused_naming_the_member() {
        type Mutation = fn(&mut Value);
        let cases: Vec<(&str, Mutation)> = vec![
            ("branchName", |v| v["branchName"] = Value::Null),
            ("isMultiBranch", |v| v["isMultiBranch"] = json!(false)),
            ("isFreestyle", |v| {
                v.as_object_mut().unwrap().remove("isFreestyle");
            }),
            ("orchestrationTaskName", |v| {
                v["orchestrationTaskName"] = json!("app#Deploy")
            }),
            ("orchestrationTaskName", |v| {
                v["orchestrationTaskName"] = json!("folder/app")
            }),
            ("stageName", |v| v["stageName"] = json!("Prod")),
            ("parentStageName", |v| {
                v.as_object_mut().unwrap().remove("parentStageName");
            }),
            ("parentNode", |v| v["parentNode"] = json!("15")),
            ("parentNode.parentId", |v| {
                v["parentNode"].as_object_mut().unwrap().remove("parentId");
            }),
            ("parentNode.name", |v| v["parentNode"]["name"] = json!("x")),
            ("buildNumber", |v| {
                v["orchestrationTaskDetails"]["buildNumber"] = json!(42)
            }),
            ("fullName", |v| {
                v["orchestrationTaskDetails"]["fullName"] = json!("app")
            }),
            ("taskExecutionURL", |v| {
                v["orchestrationTaskDetails"]["taskExecutionURL"] =
                    json!("https://ci/job/folder/job/app/42/")
            }),
            ("orchestrationTaskDetails.userName", |v| {
                v["orchestrationTaskDetails"]["userName"] = Value::Null
            }),
            ("changeRequestDetails", |v| {
                v["changeRequestDetails"] = json!("{\"a\":1}")
            }),
            ("pipelineExecutionUrl", |v| {
                v["pipelineExecutionUrl"] = json!("https://ci/job/folder/job/app/41/")
            }),
        ];
        for (member, mutate) in cases {
            let mut body = worked_example();
            mutate(&mut body);
            let err = check_registration(&map(body)).unwrap_err();
            assert!(err.contains(member), "{member}: {err}");
        }
    }

    #[test]
    fn the_builders_make_what_the_checks_accept() {
        let reg = plugin_registration(
            "https://sg/sn-devops/pipeline_x",
            "https://ci/job/mb/job/feature%252Fx/",
            "Deploy/Prod",
            7,
            Some("feature/x"),
        );
        let checked = check_registration(&map(reg.clone())).unwrap();
        assert_eq!(checked.full_name, "mb/feature%2Fx");
        let ack = plugin_acknowledgement(&reg);
        assert_eq!(
            ack["orchestrationTaskName"],
            json!("feature%2Fx#Deploy/Prod")
        );
        check_acknowledgement(
            &map(ack.clone()),
            "https://sg/sn-devops/pipeline_x",
            "https://ci/job/mb/job/feature%252Fx#Deploy/Prod/",
            &checked,
        )
        .unwrap();
        let mut wrong = ack;
        wrong["orchestrationTaskName"] = json!("feature%2Fx");
        let err = check_acknowledgement(
            &map(wrong),
            "https://sg/sn-devops/pipeline_x",
            "https://ci/job/mb/job/feature%252Fx#Deploy/Prod/",
            &checked,
        )
        .unwrap_err();
        assert!(err.contains("orchestrationTaskName"), "{err}");
    }

    #[test]
    fn stage_events_need_the_plugin_shape() {
        let good = json!({"url":"https://ci/job/folder/job/app/42/","number":42,"phase":"STARTED",
            "pronoun":"Pipeline","isMultiBranch":"false","timestamp":1700000000000u64,
            "jobModel":{"name":"app","url":"https://ci/job/folder/job/app/","fullName":"folder/app"},
            "stageModel":{"name":"Deploy","id":"15","phase":"STARTED",
              "url":"https://ci/job/folder/job/app/42/execution/node/15/wfapi/describe",
              "pipelineExecutionUrl":"https://ci/job/folder/job/app/42/","timestamp":1700000000000u64}});
        let event = check_event(&map(good.clone())).unwrap();
        assert_eq!(event.stage.as_deref(), Some("Deploy"));
        assert_eq!(event.phase, "STARTED");
        let mut bad = good.clone();
        bad["stageModel"]["phase"] = json!("started");
        assert!(check_event(&map(bad))
            .unwrap_err()
            .contains("stageModel.phase"));
        let mut bad = good.clone();
        bad["number"] = json!("42");
        assert!(check_event(&map(bad)).unwrap_err().contains("number"));
        let mut bad = good;
        bad["stageModel"]["result"] = Value::Null;
        assert!(check_event(&map(bad)).unwrap_err().contains("null"));
    }
}
