//! The registry of repositories, artifacts, versions, staged requests and packages, and the
//! API reference's `create`/`update`/`found` answers.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{
    ArtifactEntry, ArtifactVersionRecord, BuildDetails, PackageRecord, RegistrationRequest,
};
use crate::model::Model;

/// The `create`/`update`/`found` lists of one table, as the API reference answers them.
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

/// What one artifact registration touched, table by table.
#[derive(Default)]
struct Touches {
    repos: Touched,
    arts: Touched,
    versions: Touched,
    requests: Touched,
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

    /// One artifact of an artifact registration: its repository and the artifact (found or
    /// created) and, with a version, the version (linked to the build's stage execution when
    /// `linked`, otherwise also staged); without a version the request is staged.
    fn register_artifact(
        &mut self,
        a: &ArtifactEntry,
        build: &BuildDetails,
        linked: bool,
        t: &mut Touches,
    ) {
        match self.repositories.get(&a.repository) {
            Some(id) => t.repos.found(id),
            None => {
                let id = new_sys_id();
                t.repos.create(&id);
                self.repositories.insert(a.repository.clone(), id);
            }
        }
        let key = (a.repository.clone(), a.name.clone());
        match self.artifacts.get(&key) {
            Some(id) => t.arts.found(id),
            None => {
                let id = new_sys_id();
                t.arts.create(&id);
                self.artifacts.insert(key, id);
            }
        }
        let Some(version) = &a.version else {
            // The artifact tool is to supply the version: staged until it does.
            self.stage(&mut t.requests);
            return;
        };
        let known = self.versions.iter().find(|v| {
            v.repository_name == a.repository && v.name == a.name && &v.version == version
        });
        match known {
            Some(v) => t.versions.found(&v.sys_id.clone()),
            None => {
                let id = new_sys_id();
                t.versions.create(&id);
                self.versions.push(ArtifactVersionRecord {
                    sys_id: id,
                    repository_name: a.repository.clone(),
                    name: a.name.clone(),
                    version: version.clone(),
                    semantic_version: a.semantic_version.clone(),
                    build: build.clone(),
                    linked,
                });
                if !linked {
                    self.stage(&mut t.requests);
                }
            }
        }
    }
}

impl Model {
    fn is_known_execution(&self, build: &BuildDetails) -> bool {
        build
            .query()
            .is_some_and(|q| self.find_for_change_info(&q).is_some())
    }

    /// Registers artifact versions; returns the API reference's `result` and whether anything was created
    /// (201) or everything existed already (200).
    pub(crate) fn register_artifacts(&mut self, req: &RegistrationRequest) -> (Value, bool) {
        let linked = self.is_known_execution(&req.build);
        let mut t = Touches::default();
        for a in &req.artifacts {
            self.artifacts
                .register_artifact(a, &req.build, linked, &mut t);
        }
        let Touches {
            repos,
            arts,
            versions,
            requests,
        } = t;
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

    /// Registers a package (always a new one, the API reference: "It always creates a new package even if
    /// one with same name already exists"); the API reference's `result`.
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
            // (the API reference's staged example: three requests for two artifacts).
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
