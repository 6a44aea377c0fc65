//! Parsing and validation: pointers and messages.
use super::*;

#[test]
fn render_debug() {
    let raw = RawListParams {
        filter: Some(r#"{"not":{"error":{"eq":"x"},"sequenceNumber":{"gt":1}},"or":[{"not":{"or":[{"error":{"eq":"y"}},{"error":{"eq":"z"}}]}}, {"and":[{"not":{"not":{"error":{"null":true}}}}]}]}"#.into()),
        ..Default::default()
    };
    let req = parse_list_params(&raw).unwrap();
    let scope = vec!["ws_a".to_string()];
    let m = sql::matching(&req.node, &scope);
    let q = sql::count(m);
    println!("{}", q.to_string(sea_query::PostgresQueryBuilder));
}
