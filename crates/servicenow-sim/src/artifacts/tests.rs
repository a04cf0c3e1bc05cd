use serde_json::json;

use super::*;
use crate::model::Model;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// The API reference's artifact example.
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
fn required_fields_and_limits_follow_the_api_reference() {
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
    let no_version = with(&|v| drop(v["artifacts"][0].as_object_mut().unwrap().remove("version")));
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
