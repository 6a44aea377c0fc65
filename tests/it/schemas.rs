//! The checked-in JSON Schemas match the code.

use std::path::Path;

#[test]
fn event_schemas_on_disk_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("event-schemas");
    let write = std::env::var("DEPLOYD_WRITE_SCHEMAS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, schema) in deployd::schemas::all() {
        let file = root.join(&path);
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if write {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "event-schemas/ is out of date for {stale:?}; run DEPLOYD_WRITE_SCHEMAS=1 cargo test --test schemas"
    );
}
