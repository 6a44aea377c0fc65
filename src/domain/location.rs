//! Where a completed deploy is served, as events and rows record it.
//!
//! A deploy served by deployd itself (local hosting) is recorded by its
//! path, `/preview/<deploy>/` or `/live/<entity>/`: the host is the
//! server's `DEPLOYD_PUBLIC_URL`, which a separate worker need not know and
//! which may change (a new host, an export imported elsewhere). The API and
//! the feeds answer absolute URLs, built from the answering process's public
//! URL by [`resolve`]. A deploy served elsewhere (Cloudflare Pages) is
//! recorded by its absolute URL, answered as it is.

use crate::domain::ids::{DeployId, EntityId};

/// The path a deploy served by deployd is previewed at.
pub fn preview_path(deploy: &DeployId) -> String {
    format!("/preview/{deploy}/")
}

/// The path an entity served by deployd is live at.
pub fn live_path(entity: &EntityId) -> String {
    format!("/live/{entity}/")
}

/// The absolute URL of a recorded location: a path (starting with `/`)
/// under `public_url`, anything else as it is.
pub fn resolve(public_url: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{}{location}", public_url.trim_end_matches('/'))
    } else {
        location.to_string()
    }
}

/// The path of `url` when it is an absolute URL of deployd's own serving
/// (`/preview/<deploy id>/` or `/live/<entity id>/` on any host, nothing
/// after the path): what versions before locations were recorded stored,
/// read as the location it names (`store::upcast`). `None` for anything
/// else (a URL of another host's layout, a path already).
pub fn served_path(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return None;
    }
    let path = parsed.path();
    let rest = path.strip_suffix('/')?;
    let ours = match rest.split('/').collect::<Vec<_>>()[..] {
        ["", "preview", id] => id.parse::<DeployId>().is_ok(),
        ["", "live", id] => id.parse::<EntityId>().is_ok(),
        _ => false,
    };
    ours.then(|| path.to_string())
}

/// Rewrites the recorded locations of a published event's `data` (the
/// URLs of `DeployCompleted`, and of the promote step's `StepCompleted`
/// output) to absolute URLs under `public_url`. Other events are left as
/// they are.
pub fn resolve_event(event_type: &str, data: &mut serde_json::Value, public_url: &str) {
    let urls = match event_type {
        "DeployCompleted" => Some(data),
        "StepCompleted" => data.get_mut("output"),
        _ => None,
    };
    let Some(serde_json::Value::Object(urls)) = urls else {
        return;
    };
    for key in ["previewUrl", "productionUrl"] {
        if let Some(serde_json::Value::String(location)) = urls.get_mut(key) {
            *location = resolve(public_url, location);
        }
    }
}

/// Whether a published event's data holds locations [`resolve_event`]
/// rewrites.
pub fn has_locations(event_type: &str) -> bool {
    matches!(event_type, "DeployCompleted" | "StepCompleted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEP: &str = "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    const ENT: &str = "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

    #[test]
    fn a_path_resolves_under_the_public_url_and_a_url_stays() {
        assert_eq!(
            resolve("https://d.example/", &format!("/preview/{DEP}/")),
            format!("https://d.example/preview/{DEP}/")
        );
        assert_eq!(
            resolve("https://d.example/base", "/live/x/"),
            "https://d.example/base/live/x/"
        );
        assert_eq!(
            resolve("https://d.example", "https://abc.p.pages.dev"),
            "https://abc.p.pages.dev"
        );
    }

    #[test]
    fn only_deployds_own_serving_urls_read_as_paths() {
        assert_eq!(
            served_path(&format!("http://127.0.0.1:8080/preview/{DEP}/")),
            Some(format!("/preview/{DEP}/"))
        );
        assert_eq!(
            served_path(&format!("https://old.example/live/{ENT}/")),
            Some(format!("/live/{ENT}/"))
        );
        for other in [
            "https://abc.p.pages.dev".to_string(),
            "https://p.pages.dev/".to_string(),
            format!("/preview/{DEP}/"),
            format!("https://x.example/preview/{ENT}/"),
            format!("https://x.example/preview/{DEP}/?a=1"),
            format!("https://x.example/preview/{DEP}/index.html"),
            format!("ftp://x.example/live/{ENT}/"),
        ] {
            assert_eq!(served_path(&other), None, "{other}");
        }
    }

    #[test]
    fn published_events_carry_absolute_urls() {
        let mut completed = json!({"previewUrl": "/preview/d/", "productionUrl": null});
        resolve_event("DeployCompleted", &mut completed, "https://h.example");
        assert_eq!(
            completed,
            json!({"previewUrl": "https://h.example/preview/d/", "productionUrl": null})
        );
        let mut step = json!({"step": "promote", "output": {"previewUrl": "/preview/d/",
            "productionUrl": "/live/e/"}});
        resolve_event("StepCompleted", &mut step, "https://h.example");
        assert_eq!(step["output"]["productionUrl"], "https://h.example/live/e/");
        let mut prepare = json!({"step": "prepare", "output": {"files": 1}});
        resolve_event("StepCompleted", &mut prepare, "https://h.example");
        assert_eq!(prepare["output"], json!({"files": 1}));
    }
}
