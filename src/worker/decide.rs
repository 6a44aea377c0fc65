//! What the worker does next for a deploy, decided from the deploy's state
//! alone: a pure function, so each case is a unit test. The worker folds
//! the deploy's events, asks [`next`], does that one thing through the
//! command path, and asks again.

use serde_json::Value;

use crate::domain::deploy::Deploy;
use crate::domain::{DeployStatus, StepName, StepStatus};

/// The one next thing to do for a deploy.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing: the deploy is terminal, or does not exist.
    Settled,
    /// Start the pending deploy.
    Start,
    /// Start this step (it is the first that has not completed).
    StartStep(StepName),
    /// Run this step (it was started) and record its outcome.
    RunStep(StepName),
    /// Its events name a step this worker does not know: fail the deploy.
    UnknownStep(String),
    /// Every step completed: complete the deploy with the URLs the
    /// promote step recorded.
    Complete {
        production_url: Option<String>,
        preview_url: Option<String>,
    },
}

/// Decides what to do next for `deploy`.
pub fn next(deploy: &Deploy) -> Next {
    let Some(status) = deploy.status else {
        return Next::Settled;
    };
    if status.is_terminal() {
        return Next::Settled;
    }
    if status == DeployStatus::Pending {
        return Next::Start;
    }
    let Some(step) = deploy.running_step().or_else(|| deploy.next_step()) else {
        let urls = deploy
            .steps
            .iter()
            .find(|s| s.name == StepName::Promote.as_str())
            .and_then(|s| s.output.clone())
            .unwrap_or(Value::Null);
        let url = |k: &str| urls.get(k).and_then(Value::as_str).map(str::to_string);
        return Next::Complete {
            production_url: url("productionUrl"),
            preview_url: url("previewUrl"),
        };
    };
    match step.name.parse::<StepName>() {
        Err(_) => Next::UnknownStep(step.name.clone()),
        Ok(name) if step.status == StepStatus::Pending => Next::StartStep(name),
        Ok(name) => Next::RunStep(name),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::deploy::STEPS;

    /// A deploy in `status` whose steps are in `steps` (in plan order).
    fn deploy(status: Option<&str>, steps: &[(&str, &str)], promoted: Option<Value>) -> Deploy {
        let steps: Vec<Value> = steps
            .iter()
            .map(|(name, status)| {
                let output = (*name == "promote").then(|| promoted.clone()).flatten();
                json!({"name": name, "status": status, "output": output})
            })
            .collect();
        serde_json::from_value(json!({"created": null, "status": status, "steps": steps}))
            .expect("a deploy state")
    }

    fn plan(statuses: [&'static str; 3]) -> Vec<(&'static str, &'static str)> {
        STEPS.iter().copied().zip(statuses).collect()
    }

    #[test]
    fn the_step_names_are_the_plan_of_every_deploy() {
        let names: Vec<&str> = StepName::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, STEPS);
    }

    #[test]
    fn a_deploy_that_does_not_exist_or_is_terminal_is_settled() {
        assert_eq!(next(&Deploy::default()), Next::Settled);
        for status in ["completed", "failed", "cancelled"] {
            let d = deploy(
                Some(status),
                &plan(["completed", "pending", "pending"]),
                None,
            );
            assert_eq!(next(&d), Next::Settled, "{status}");
        }
    }

    #[test]
    fn a_pending_deploy_is_started() {
        let d = deploy(
            Some("pending"),
            &plan(["pending", "pending", "pending"]),
            None,
        );
        assert_eq!(next(&d), Next::Start);
    }

    #[test]
    fn a_running_deploy_starts_its_first_pending_step() {
        let d = deploy(
            Some("running"),
            &plan(["pending", "pending", "pending"]),
            None,
        );
        assert_eq!(next(&d), Next::StartStep(StepName::Prepare));
        let d = deploy(
            Some("running"),
            &plan(["completed", "pending", "pending"]),
            None,
        );
        assert_eq!(next(&d), Next::StartStep(StepName::Upload));
    }

    #[test]
    fn a_started_step_is_run_again_after_a_crash() {
        let d = deploy(
            Some("running"),
            &plan(["completed", "running", "pending"]),
            None,
        );
        assert_eq!(next(&d), Next::RunStep(StepName::Upload));
    }

    #[test]
    fn when_every_step_completed_the_deploy_completes_with_the_promoted_urls() {
        let urls = json!({"previewUrl": "http://p/", "productionUrl": "http://l/"});
        let d = deploy(
            Some("running"),
            &plan(["completed", "completed", "completed"]),
            Some(urls),
        );
        assert_eq!(
            next(&d),
            Next::Complete {
                production_url: Some("http://l/".into()),
                preview_url: Some("http://p/".into()),
            }
        );
    }

    #[test]
    fn a_preview_completes_without_a_production_url() {
        let urls = json!({"previewUrl": "http://p/", "productionUrl": null});
        let d = deploy(
            Some("running"),
            &plan(["completed", "completed", "completed"]),
            Some(urls),
        );
        assert_eq!(
            next(&d),
            Next::Complete {
                production_url: None,
                preview_url: Some("http://p/".into()),
            }
        );
    }

    #[test]
    fn a_step_the_worker_does_not_know_is_named() {
        let d = deploy(Some("running"), &[("compile", "pending")], None);
        assert_eq!(next(&d), Next::UnknownStep("compile".into()));
    }
}
