//! The simulated artifact and package registration (seed `001_ca31e58e1be9e25d.txt`, sections
//! "DevOps - POST /devops/artifact/registration" and "DevOps - POST /devops/package/registration"):
//! the seed's required fields and length limits, its `create`/`update`/`found` answers, and a
//! small registry of repositories, artifacts, versions, staged requests and packages.
//!
//! An artifact version is *linked* when its build details (pipeline or project name, stage,
//! `taskExecutionNumber`, branch) name a stage execution registered through `POST
//! …/changeControl`; otherwise the request is staged (seed: "If a task execution is not found,
//! the request is persisted in the staging table"), as it is when the version is left to the
//! artifact tool. A package whose artifact versions are all known is created with one
//! version-to-package link per artifact; otherwise the request is staged.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::model::{ChangeQuery, Model};

/// Seed: names, repository names, versions, pipeline and stage names: "Maximum length: 160".
const MAX_FIELD: usize = 160;
/// Seed (package registration): `branchName` "Maximum length: 200 characters".
const MAX_PACKAGE_BRANCH: usize = 200;
/// Seed (package registration): `taskExecutionNumber` "Maximum length: 128 characters".
const MAX_EXECUTION_NUMBER: usize = 128;

/// Which pipeline run something belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDetails {
    pub pipeline_name: Option<String>,
    pub project_name: Option<String>,
    pub stage_name: Option<String>,
    pub task_execution_number: Option<String>,
    pub branch_name: Option<String>,
}

impl BuildDetails {
    fn query(&self) -> Option<ChangeQuery> {
        Some(ChangeQuery {
            pipeline: self.pipeline_name.clone(),
            project: self.project_name.clone(),
            stage: self.stage_name.clone(),
            build: self.task_execution_number.clone()?,
            branch: self.branch_name.clone(),
        })
    }

    /// Whether the build details `wanted` names (only what it names) are these.
    fn covers(&self, wanted: &BuildDetails) -> bool {
        let same = |w: &Option<String>, k: &Option<String>| w.is_none() || w == k;
        same(&wanted.pipeline_name, &self.pipeline_name)
            && same(&wanted.project_name, &self.project_name)
            && same(&wanted.stage_name, &self.stage_name)
            && same(&wanted.task_execution_number, &self.task_execution_number)
            && same(&wanted.branch_name, &self.branch_name)
    }
}

/// An artifact version as tests and the admin API see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactVersionRecord {
    pub sys_id: String,
    pub repository_name: String,
    pub name: String,
    pub version: String,
    pub semantic_version: Option<String>,
    pub build: BuildDetails,
    /// Linked to a registered stage execution; `false`: the request was staged.
    pub linked: bool,
}

/// A package as tests and the admin API see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRecord {
    /// `None` while the request is staged.
    pub sys_id: Option<String>,
    pub name: String,
    /// The sys_ids of the artifact versions in the package.
    pub artifact_versions: Vec<String>,
    pub staged: bool,
    pub build: BuildDetails,
}

/// One entry of `artifacts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArtifactEntry {
    name: String,
    repository: String,
    version: Option<String>,
    semantic_version: Option<String>,
    /// Package registration only: the artifact's own build details.
    build: BuildDetails,
}

/// A checked `POST …/artifact/registration` or `…/package/registration` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistrationRequest {
    /// The package's name (package registration).
    name: Option<String>,
    artifacts: Vec<ArtifactEntry>,
    build: BuildDetails,
}

/// An optional string of at most `max` characters; blank counts as absent.
fn text(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    max: usize,
) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(format!(
            "{prefix}{key} may be at most {max} characters long"
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{prefix}{key} must be a string")),
    }
}

fn required(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    max: usize,
) -> Result<String, String> {
    text(obj, key, prefix, max)?.ok_or_else(|| format!("{prefix}{key} is required"))
}

/// `taskExecutionNumber`: a string (a number is taken as its digits, as Jenkins pipelines
/// often send it).
fn execution_number(obj: &Map<String, Value>, prefix: &str) -> Result<Option<String>, String> {
    match obj.get("taskExecutionNumber") {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => text(obj, "taskExecutionNumber", prefix, MAX_EXECUTION_NUMBER),
    }
}

fn build_details(
    obj: &Map<String, Value>,
    prefix: &str,
    branch_max: usize,
) -> Result<BuildDetails, String> {
    Ok(BuildDetails {
        pipeline_name: text(obj, "pipelineName", prefix, MAX_FIELD)?,
        project_name: text(obj, "projectName", prefix, MAX_FIELD)?,
        stage_name: text(obj, "stageName", prefix, MAX_FIELD)?,
        task_execution_number: execution_number(obj, prefix)?,
        branch_name: text(obj, "branchName", prefix, branch_max)?,
    })
}

/// The request-level build rules both endpoints share: "pipelineName Required if projectName is
/// not passed", "stageName Required if pipelineName is passed".
fn check_build(build: &BuildDetails) -> Result<(), String> {
    if build.pipeline_name.is_none() && build.project_name.is_none() {
        return Err("pipelineName or projectName is required".into());
    }
    if build.pipeline_name.is_some() && build.stage_name.is_none() {
        return Err("stageName is required when pipelineName is passed".into());
    }
    Ok(())
}

fn artifact_list(body: &Map<String, Value>) -> Result<&Vec<Value>, String> {
    match body.get("artifacts") {
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            Err("artifacts is required: at least one entry".into())
        }
        Some(_) => Err("artifacts must be an array of objects".into()),
    }
}

/// `POST …/artifact/registration`; `has_tool`: a `toolId` (artifact tool) was passed.
pub(crate) fn parse_artifact_registration(
    body: &Map<String, Value>,
    has_tool: bool,
) -> Result<RegistrationRequest, String> {
    let build = build_details(body, "", MAX_FIELD)?;
    check_build(&build)?;
    let mut artifacts = Vec::new();
    for (i, entry) in artifact_list(body)?.iter().enumerate() {
        let prefix = format!("artifacts[{i}].");
        let obj = entry
            .as_object()
            .ok_or_else(|| format!("artifacts[{i}] must be an object"))?;
        let version = text(obj, "version", &prefix, MAX_FIELD)?;
        // Seed: "artifacts.version Required if toolId is not passed".
        if version.is_none() && !has_tool {
            return Err(format!(
                "{prefix}version is required when toolId is not passed"
            ));
        }
        artifacts.push(ArtifactEntry {
            name: required(obj, "name", &prefix, MAX_FIELD)?,
            repository: required(obj, "repositoryName", &prefix, MAX_FIELD)?,
            version,
            semantic_version: text(obj, "semanticVersion", &prefix, MAX_FIELD)?,
            build: BuildDetails::default(),
        });
    }
    Ok(RegistrationRequest {
        name: None,
        artifacts,
        build,
    })
}

/// `POST …/package/registration`.
pub(crate) fn parse_package_registration(
    body: &Map<String, Value>,
) -> Result<RegistrationRequest, String> {
    let name = required(body, "name", "", MAX_FIELD)?;
    let build = build_details(body, "", MAX_PACKAGE_BRANCH)?;
    check_build(&build)?;
    if build.task_execution_number.is_none() {
        return Err("taskExecutionNumber is required".into());
    }
    let mut artifacts = Vec::new();
    for (i, entry) in artifact_list(body)?.iter().enumerate() {
        let prefix = format!("artifacts[{i}].");
        let obj = entry
            .as_object()
            .ok_or_else(|| format!("artifacts[{i}] must be an object"))?;
        let version = text(obj, "version", &prefix, MAX_FIELD)?;
        let own = build_details(obj, &prefix, MAX_FIELD)?;
        // Seed: without `version`, the artifact is found by its own build details.
        if version.is_none() {
            if own.pipeline_name.is_none() && own.project_name.is_none() {
                return Err(format!(
                    "{prefix}pipelineName or {prefix}projectName is required when {prefix}version is not passed"
                ));
            }
            if own.stage_name.is_none() {
                return Err(format!(
                    "{prefix}stageName is required when {prefix}version is not passed"
                ));
            }
            if own.task_execution_number.is_none() {
                return Err(format!(
                    "{prefix}taskExecutionNumber is required when {prefix}version is not passed"
                ));
            }
        }
        artifacts.push(ArtifactEntry {
            name: required(obj, "name", &prefix, MAX_FIELD)?,
            repository: required(obj, "repositoryName", &prefix, MAX_FIELD)?,
            version,
            semantic_version: None,
            build: own,
        });
    }
    Ok(RegistrationRequest {
        name: Some(name),
        artifacts,
        build,
    })
}

/// The `create`/`update`/`found` lists of one table, as the seed answers them.
#[derive(Default)]
struct Touched {
    create: Vec<String>,
    found: Vec<String>,
}

impl Touched {
    fn create(&mut self, id: &str) {
        self.create.push(id.to_string());
    }

    fn found(&mut self, id: &str) {
        if !self.found.iter().any(|f| f == id) {
            self.found.push(id.to_string());
        }
    }

    fn json(&self) -> Value {
        let ids = |v: &Vec<String>| v.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>();
        json!({"create": ids(&self.create), "update": [], "found": ids(&self.found)})
    }
}

fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Everything registered so far.
#[derive(Debug, Default)]
pub(crate) struct ArtifactRegistry {
    repositories: HashMap<String, String>,
    artifacts: HashMap<(String, String), String>,
    versions: Vec<ArtifactVersionRecord>,
    staged: Vec<String>,
    packages: Vec<PackageRecord>,
}

impl ArtifactRegistry {
    pub(crate) fn versions(&self) -> Vec<ArtifactVersionRecord> {
        self.versions.clone()
    }

    pub(crate) fn packages(&self) -> Vec<PackageRecord> {
        self.packages.clone()
    }

    fn stage(&mut self, requests: &mut Touched) {
        let id = new_sys_id();
        requests.create(&id);
        self.staged.push(id);
    }
}

impl Model {
    fn is_known_execution(&self, build: &BuildDetails) -> bool {
        build
            .query()
            .is_some_and(|q| self.find_for_change_info(&q).is_some())
    }

    /// Registers artifact versions; returns the seed's `result` and whether anything was created
    /// (201) or everything existed already (200).
    pub(crate) fn register_artifacts(&mut self, req: &RegistrationRequest) -> (Value, bool) {
        let linked = self.is_known_execution(&req.build);
        let reg = &mut self.artifacts;
        let (mut repos, mut arts, mut versions, mut requests) = (
            Touched::default(),
            Touched::default(),
            Touched::default(),
            Touched::default(),
        );
        for a in &req.artifacts {
            match reg.repositories.get(&a.repository) {
                Some(id) => repos.found(id),
                None => {
                    let id = new_sys_id();
                    repos.create(&id);
                    reg.repositories.insert(a.repository.clone(), id);
                }
            }
            let key = (a.repository.clone(), a.name.clone());
            match reg.artifacts.get(&key) {
                Some(id) => arts.found(id),
                None => {
                    let id = new_sys_id();
                    arts.create(&id);
                    reg.artifacts.insert(key, id);
                }
            }
            let Some(version) = &a.version else {
                // The artifact tool is to supply the version: staged until it does.
                reg.stage(&mut requests);
                continue;
            };
            let known = reg.versions.iter().find(|v| {
                v.repository_name == a.repository && v.name == a.name && &v.version == version
            });
            match known {
                Some(v) => versions.found(&v.sys_id.clone()),
                None => {
                    let id = new_sys_id();
                    versions.create(&id);
                    reg.versions.push(ArtifactVersionRecord {
                        sys_id: id,
                        repository_name: a.repository.clone(),
                        name: a.name.clone(),
                        version: version.clone(),
                        semantic_version: a.semantic_version.clone(),
                        build: req.build.clone(),
                        linked,
                    });
                    if !linked {
                        reg.stage(&mut requests);
                    }
                }
            }
        }
        let created = [&repos, &arts, &versions, &requests]
            .iter()
            .any(|t| !t.create.is_empty());
        let result = json!({
            "status": "Success",
            "response": {
                "artifact_repository": repos.json(),
                "artifact": arts.json(),
                "artifact_version": versions.json(),
                "artifact_register_requests": requests.json(),
            },
        });
        (result, created)
    }

    /// Registers a package (always a new one, seed: "It always creates a new package even if
    /// one with same name already exists"); the seed's `result`.
    pub(crate) fn register_package(&mut self, req: &RegistrationRequest) -> Value {
        let reg = &mut self.artifacts;
        let resolved: Vec<Option<String>> = req
            .artifacts
            .iter()
            .map(|a| {
                reg.versions
                    .iter()
                    .rev()
                    .find(|v| {
                        v.repository_name == a.repository
                            && v.name == a.name
                            && match &a.version {
                                Some(version) => &v.version == version,
                                None => v.build.covers(&a.build),
                            }
                    })
                    .map(|v| v.sys_id.clone())
            })
            .collect();
        let name = req.name.clone().unwrap_or_default();
        let response = if resolved.iter().all(Option::is_some) {
            let versions: Vec<String> = resolved.into_iter().flatten().collect();
            let id = new_sys_id();
            let mut package = Touched::default();
            package.create(&id);
            let mut links = Touched::default();
            for _ in &versions {
                links.create(&new_sys_id());
            }
            reg.packages.push(PackageRecord {
                sys_id: Some(id),
                name,
                artifact_versions: versions,
                staged: false,
                build: req.build.clone(),
            });
            json!({
                "sn_devops_package": package.json(),
                "sn_devops_m2m_artifact_version_package": links.json(),
            })
        } else {
            // One staged request per artifact not yet known, and one for the package itself
            // (the seed's staged example: three requests for two artifacts).
            let mut requests = Touched::default();
            for _ in resolved.iter().filter(|r| r.is_none()) {
                reg.stage(&mut requests);
            }
            reg.stage(&mut requests);
            reg.packages.push(PackageRecord {
                sys_id: None,
                name,
                artifact_versions: resolved.into_iter().flatten().collect(),
                staged: true,
                build: req.build.clone(),
            });
            json!({ "artifact_register_requests": requests.json() })
        };
        json!({"status": "Success", "response": response, "responseCode": 201})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The seed's artifact example.
    fn seed_artifacts() -> Value {
        json!({"artifacts": [
                {"name": "sa-web.jar", "version": "3.1", "semanticVersion": "3.1.0", "repositoryName": "services-1031"},
                {"name": "sa-frontend.jar", "version": "3.2", "semanticVersion": "3.2.0", "repositoryName": "services-1031"}],
               "pipelineName": "spring-boot-app", "taskExecutionNumber": "160",
               "stageName": "Build", "branchName": "primary"})
    }

    #[test]
    fn the_seed_example_creates_a_repository_two_artifacts_and_two_staged_versions() {
        let mut model = Model::default();
        let req = parse_artifact_registration(&obj(seed_artifacts()), false).unwrap();
        let (result, created) = model.register_artifacts(&req);
        assert!(created);
        let r = &result["response"];
        assert_eq!(result["status"], "Success");
        assert_eq!(
            r["artifact_repository"]["create"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            r["artifact_repository"]["found"].as_array().unwrap().len(),
            1
        );
        assert_eq!(r["artifact"]["create"].as_array().unwrap().len(), 2);
        assert_eq!(r["artifact_version"]["create"].as_array().unwrap().len(), 2);
        assert_eq!(
            r["artifact_register_requests"]["create"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // The same again: everything found, nothing created.
        let (result, created) = model.register_artifacts(&req);
        assert!(!created);
        assert_eq!(
            result["response"]["artifact_version"]["found"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        // A package of those versions links them.
        let package = json!({"name": "sentimentpackage", "artifacts": [
                {"name": "sa-web.jar", "repositoryName": "services-1031", "version": "3.1"},
                {"name": "sa-frontend.jar", "repositoryName": "services-1031",
                 "pipelineName": "spring-boot-app", "taskExecutionNumber": "160", "stageName": "Build"}],
            "pipelineName": "spring-boot-app", "taskExecutionNumber": 160, "stageName": "Build"});
        let req = parse_package_registration(&obj(package.clone())).unwrap();
        let result = model.register_package(&req);
        assert_eq!(result["responseCode"], 201);
        let r = &result["response"];
        assert_eq!(
            r["sn_devops_package"]["create"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            r["sn_devops_m2m_artifact_version_package"]["create"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let packages = model.artifacts.packages();
        assert_eq!(packages[0].artifact_versions.len(), 2);
        assert!(!packages[0].staged);

        // Unknown versions stage the package.
        let mut unknown = package;
        unknown["artifacts"][0]["version"] = json!("9.9");
        let result = model.register_package(&parse_package_registration(&obj(unknown)).unwrap());
        assert_eq!(
            result["response"]["artifact_register_requests"]["create"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(model.artifacts.packages()[1].staged);
    }

    #[test]
    fn required_fields_and_limits_follow_the_seed() {
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = seed_artifacts();
            f(&mut v);
            obj(v)
        };
        let cases: Vec<(Map<String, Value>, &str)> = vec![
            (with(&|v| v["artifacts"] = json!([])), "artifacts"),
            (
                with(&|v| drop(v["artifacts"][0].as_object_mut().unwrap().remove("name"))),
                "artifacts[0].name",
            ),
            (
                with(&|v| v["artifacts"][1]["repositoryName"] = json!("")),
                "artifacts[1].repositoryName",
            ),
            (
                with(&|v| drop(v["artifacts"][0].as_object_mut().unwrap().remove("version"))),
                "artifacts[0].version",
            ),
            (
                with(&|v| v["artifacts"][0]["semanticVersion"] = json!("1".repeat(161))),
                "artifacts[0].semanticVersion",
            ),
            (
                with(&|v| drop(v.as_object_mut().unwrap().remove("stageName"))),
                "stageName",
            ),
            (
                with(&|v| drop(v.as_object_mut().unwrap().remove("pipelineName"))),
                "pipelineName",
            ),
            (with(&|v| v["branchName"] = json!(7)), "branchName"),
        ];
        for (body, field) in cases {
            let err = parse_artifact_registration(&body, false).unwrap_err();
            assert!(err.starts_with(field), "{field}: {err}");
        }
        let no_version =
            with(&|v| drop(v["artifacts"][0].as_object_mut().unwrap().remove("version")));
        assert!(parse_artifact_registration(&no_version, true).is_ok());

        let package = |f: &dyn Fn(&mut Value)| {
            let mut v = json!({"name": "p", "artifacts": [{"name": "a", "repositoryName": "r", "version": "1.0"}],
                               "pipelineName": "app", "stageName": "Build", "taskExecutionNumber": "1"});
            f(&mut v);
            obj(v)
        };
        assert!(parse_package_registration(&package(&|_| {})).is_ok());
        for (body, field) in [
            (
                package(&|v| drop(v.as_object_mut().unwrap().remove("name"))),
                "name",
            ),
            (
                package(&|v| drop(v.as_object_mut().unwrap().remove("taskExecutionNumber"))),
                "taskExecutionNumber",
            ),
            (
                package(&|v| v["branchName"] = json!("b".repeat(201))),
                "branchName",
            ),
            (
                package(&|v| drop(v["artifacts"][0].as_object_mut().unwrap().remove("version"))),
                "artifacts[0].pipelineName",
            ),
        ] {
            let err = parse_package_registration(&body).unwrap_err();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }
}
