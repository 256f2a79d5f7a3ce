//! Prints the jets3 CustomResourceDefinitions as multi-document YAML:
//!
//! ```text
//! cargo run -p jets3-crds --features kube --bin crdgen > crds/yaml/jets3.io_crds.yaml
//! ```

fn main() {
    print!("{}", jets3_crds::k8s::crds_yaml());
}
