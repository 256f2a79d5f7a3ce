//! The identity of a namespaced object, the key of every per-resource map.

use std::fmt;

use kube::ResourceExt;

/// A namespaced object's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    /// The key of a namespaced object.
    pub fn of<K: ResourceExt>(obj: &K) -> ObjKey {
        ObjKey::new(&obj.namespace().unwrap_or_default(), &obj.name_any())
    }

    pub fn new(namespace: &str, name: &str) -> ObjKey {
        ObjKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
