//! What a CI's own environment says about the running job, for `snowgate gates open`: the
//! job URL, build, stage, build URL and branch that a flag did not give. The variables are the
//! ones each CI documents as always set in a job (GitHub Actions "Default environment
//! variables", GitLab "Predefined CI/CD variables", Jenkins "env-vars.html").

/// Which CI the environment says this runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ci {
    GitHub,
    GitLab,
    Jenkins,
}

impl Ci {
    pub fn name(self) -> &'static str {
        match self {
            Ci::GitHub => "GitHub Actions",
            Ci::GitLab => "GitLab CI",
            Ci::Jenkins => "Jenkins",
        }
    }
}

/// The gate fields a CI can supply; `None` where its variables are not set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CiValues {
    pub ci: Option<Ci>,
    pub job_url: Option<String>,
    pub job_name: Option<String>,
    pub build: Option<String>,
    pub stage: Option<String>,
    pub build_url: Option<String>,
    pub branch: Option<String>,
    pub environment: Option<String>,
}

/// One required value: its flag, and the variables each CI supplies it from (for the message
/// when neither is there).
pub struct Source {
    pub flag: &'static str,
    pub what: &'static str,
    pub github: &'static str,
    pub gitlab: &'static str,
    pub jenkins: &'static str,
}

pub const JOB_URL: Source = Source {
    flag: "--job-url",
    what: "job URL",
    github: "GITHUB_SERVER_URL and GITHUB_REPOSITORY",
    gitlab: "CI_PROJECT_URL",
    jenkins: "JOB_URL",
};
pub const BUILD: Source = Source {
    flag: "--build",
    what: "build number",
    github: "GITHUB_RUN_ID (and GITHUB_RUN_ATTEMPT)",
    gitlab: "CI_PIPELINE_ID",
    jenkins: "BUILD_NUMBER",
};
pub const STAGE: Source = Source {
    flag: "--stage",
    what: "stage name",
    github: "GITHUB_JOB",
    gitlab: "CI_JOB_NAME",
    jenkins: "STAGE_NAME",
};

impl Source {
    /// `no stage name: give --stage, or set GITHUB_JOB (GitHub Actions), …`.
    pub fn missing(&self, detected: Option<Ci>) -> String {
        let seen = match detected {
            Some(ci) => format!(" ({} detected, but its variable is not set)", ci.name()),
            None => {
                " (no CI detected: GITHUB_ACTIONS=true, GITLAB_CI=true, JENKINS_URL or JOB_URL)"
                    .into()
            }
        };
        format!(
            "no {}{seen}: give {}, or set {} (GitHub Actions), {} (GitLab CI) or {} (Jenkins)",
            self.what, self.flag, self.github, self.gitlab, self.jenkins
        )
    }
}

/// Which CI `var` describes: GITHUB_ACTIONS=true, GITLAB_CI=true, or JENKINS_URL/JOB_URL set.
pub fn detect(var: &dyn Fn(&str) -> Option<String>) -> Option<Ci> {
    if var("GITHUB_ACTIONS").as_deref() == Some("true") {
        Some(Ci::GitHub)
    } else if var("GITLAB_CI").as_deref() == Some("true") {
        Some(Ci::GitLab)
    } else if var("JENKINS_URL").is_some() || var("JOB_URL").is_some() {
        Some(Ci::Jenkins)
    } else {
        None
    }
}

/// The values of the CI `var` describes; an empty variable counts as unset.
pub fn values(var: &dyn Fn(&str) -> Option<String>) -> CiValues {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let ci = detect(&var);
    let mut v = match ci {
        Some(Ci::GitHub) => github(&var),
        Some(Ci::GitLab) => CiValues {
            job_url: var("CI_PROJECT_URL"),
            job_name: var("CI_PROJECT_PATH"),
            build: var("CI_PIPELINE_ID"),
            stage: var("CI_JOB_NAME"),
            build_url: var("CI_JOB_URL"),
            branch: var("CI_COMMIT_REF_NAME"),
            environment: var("CI_ENVIRONMENT_NAME"),
            ..CiValues::default()
        },
        Some(Ci::Jenkins) => CiValues {
            job_url: var("JOB_URL"),
            job_name: var("JOB_NAME"),
            build: var("BUILD_NUMBER"),
            stage: var("STAGE_NAME"),
            build_url: var("BUILD_URL"),
            branch: var("BRANCH_NAME"),
            ..CiValues::default()
        },
        None => CiValues::default(),
    };
    v.ci = ci;
    v
}

/// GitHub Actions. The build number is the run id followed by the attempt as three digits
/// (run 9876543210, attempt 2 → `9876543210002`): a re-run of a workflow keeps its run id and
/// counts GITHUB_RUN_ATTEMPT up, and snowgate keys a gate on (job URL, build, stage), so a re-run
/// gets a gate and a decision of its own instead of the first attempt's; and a newer run still
/// has the larger number, which `--supersede` compares.
fn github(var: &dyn Fn(&str) -> Option<String>) -> CiValues {
    let repo_url = match (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY")) {
        (Some(server), Some(repo)) => Some(format!("{}/{repo}", server.trim_end_matches('/'))),
        _ => None,
    };
    // GitHub sets GITHUB_RUN_ATTEMPT from its first attempt on; a runner that does not is on
    // attempt 1.
    let attempt = var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
    let run_id = var("GITHUB_RUN_ID");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let build = run_id
        .as_deref()
        .filter(|id| digits(id) && digits(&attempt) && attempt.len() <= 3)
        .map(|id| format!("{id}{attempt:0>3}"));
    let build_url = match (&repo_url, &run_id) {
        (Some(repo), Some(id)) => Some(format!("{repo}/actions/runs/{id}/attempts/{attempt}")),
        _ => None,
    };
    CiValues {
        job_url: repo_url,
        job_name: var("GITHUB_REPOSITORY"),
        build,
        stage: var("GITHUB_JOB"),
        build_url,
        branch: var("GITHUB_REF_NAME"),
        ..CiValues::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn of(pairs: &[(&str, &str)]) -> CiValues {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        values(&|k| map.get(k).cloned())
    }

    #[test]
    fn github_actions_gives_the_repository_run_attempt_and_job() {
        let v = of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "shop/app"),
            ("GITHUB_RUN_ID", "9876543210"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "deploy"),
            ("GITHUB_REF_NAME", "main"),
        ]);
        assert_eq!(v.ci, Some(Ci::GitHub));
        assert_eq!(v.job_url.as_deref(), Some("https://github.com/shop/app"));
        assert_eq!(v.job_name.as_deref(), Some("shop/app"));
        assert_eq!(v.build.as_deref(), Some("9876543210002"));
        assert_eq!(v.stage.as_deref(), Some("deploy"));
        assert_eq!(
            v.build_url.as_deref(),
            Some("https://github.com/shop/app/actions/runs/9876543210/attempts/2")
        );
        assert_eq!(v.branch.as_deref(), Some("main"));
    }

    #[test]
    fn a_github_run_without_an_attempt_is_attempt_1_and_a_bad_run_id_gives_no_build() {
        let base = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com/"),
            ("GITHUB_REPOSITORY", "shop/app"),
        ];
        let v = of(&[&base[..], &[("GITHUB_RUN_ID", "77")]].concat());
        assert_eq!(v.build.as_deref(), Some("77001"));
        assert_eq!(v.job_url.as_deref(), Some("https://github.com/shop/app"));
        let v = of(&[&base[..], &[("GITHUB_RUN_ID", "7x")]].concat());
        assert_eq!(v.build, None);
        let v = of(&[
            &base[..],
            &[("GITHUB_RUN_ID", "7"), ("GITHUB_RUN_ATTEMPT", "1000")],
        ]
        .concat());
        assert_eq!(v.build, None);
    }

    #[test]
    fn gitlab_and_jenkins_give_their_own_variables() {
        let v = of(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_URL", "https://gitlab.example.com/shop/app"),
            ("CI_PROJECT_PATH", "shop/app"),
            ("CI_PIPELINE_ID", "4711"),
            ("CI_JOB_NAME", "deploy-prod"),
            (
                "CI_JOB_URL",
                "https://gitlab.example.com/shop/app/-/jobs/99",
            ),
            ("CI_COMMIT_REF_NAME", "main"),
            ("CI_ENVIRONMENT_NAME", "Production"),
        ]);
        assert_eq!(v.ci, Some(Ci::GitLab));
        assert_eq!(
            (v.build.as_deref(), v.stage.as_deref()),
            (Some("4711"), Some("deploy-prod"))
        );
        assert_eq!(v.environment.as_deref(), Some("Production"));
        let v = of(&[
            ("JOB_URL", "https://ci/job/app/"),
            ("BUILD_NUMBER", "42"),
            ("STAGE_NAME", "Deploy"),
            ("BRANCH_NAME", ""),
        ]);
        assert_eq!(v.ci, Some(Ci::Jenkins));
        assert_eq!(v.job_url.as_deref(), Some("https://ci/job/app/"));
        assert_eq!(v.branch, None, "an empty variable is unset");
    }

    #[test]
    fn without_a_ci_nothing_is_guessed_and_the_message_names_every_variable() {
        let v = of(&[("BUILD_NUMBER", "42"), ("CI_PIPELINE_ID", "1")]);
        assert_eq!(v, CiValues::default());
        let m = STAGE.missing(None);
        for part in ["--stage", "GITHUB_JOB", "CI_JOB_NAME", "STAGE_NAME"] {
            assert!(m.contains(part), "{part} missing from {m}");
        }
        assert!(JOB_URL
            .missing(Some(Ci::GitHub))
            .contains("GitHub Actions detected"));
    }
}
