//! Issue 12, class 2: memory is bounded by the limits for any input. One feature with far
//! more distinct property names than `max_property_names` is analysed with the names
//! beyond the cap counted, not kept (the structure sizes themselves are checked by the
//! unit tests of `feature` and `report`).

use geobatch_analysis::{AnalysisOptions, analyze_reader};

#[test]
fn a_feature_with_a_hundred_thousand_property_names_keeps_only_the_cap() {
    let names: Vec<String> = (0..100_000).map(|n| format!(r#""p{n}":{n}"#)).collect();
    let input = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":null,"properties":{{{}}}}}]}}"#,
        names.join(",")
    );
    let options = AnalysisOptions {
        max_property_names: 1000,
        ..AnalysisOptions::default()
    };

    let report = analyze_reader(input.as_bytes(), &options).expect("report");

    assert_eq!(report.properties.len(), 1000);
    assert_eq!(report.untracked_properties, 99_000);
    assert!(report.properties.contains_key("p999"));
    assert!(!report.properties.contains_key("p1000"));
}
