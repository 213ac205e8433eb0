//! The CRDs committed into the Helm chart are the ones the code defines.

#[test]
fn the_helm_chart_carries_the_crds_the_code_defines() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/persys/crds/persys-crds.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = persys_reconciler::crds_yaml().unwrap();
    assert!(
        committed == generated,
        "{} is out of date: run `cargo run -p persys-reconciler -- crds > deploy/helm/persys/crds/persys-crds.yaml`",
        path.display()
    );
}

#[test]
fn the_persona_crd_has_dorgus_names_status_and_validation() {
    let crds = persys_crds::all();
    let crd = serde_json::to_value(&crds[0]).unwrap();
    assert_eq!(crd["metadata"]["name"], "applicationpersonas.dorgu.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1");
    assert!(version["subresources"]["status"].is_object(), "status subresource");
    let columns: Vec<_> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Type", "Tier", "Phase", "Health", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["type"]["enum"], serde_json::json!(["api", "web", "worker", "cron", "daemon"]));
    assert_eq!(spec["properties"]["scaling"]["properties"]["targetCPU"]["maximum"].as_f64(), Some(100.0));
    assert!(
        spec["properties"]["resources"]["properties"]["limits"]["properties"]["cpu"]["pattern"].is_string(),
        "quantities carry the quantity pattern"
    );
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(status["properties"]["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(status["properties"]["phase"]["enum"], serde_json::json!(["Pending", "Active", "Degraded", "Failed"]));
}
