//! What a grant allows.

use serde::{Deserialize, Serialize};

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// GET, HEAD, list.
    Read,
    /// PUT, DELETE, multipart, without reading.
    Write,
    /// Read and write.
    ReadWrite,
    /// Read, write, and create or delete the bucket.
    Admin,
}

impl Permission {
    /// May read objects and list.
    pub fn can_read(self) -> bool {
        matches!(
            self,
            Permission::Read | Permission::ReadWrite | Permission::Admin
        )
    }
    /// May write and delete objects.
    pub fn can_write(self) -> bool {
        matches!(
            self,
            Permission::Write | Permission::ReadWrite | Permission::Admin
        )
    }
    /// May create and delete the bucket and change its settings.
    pub fn can_admin(self) -> bool {
        self == Permission::Admin
    }
}
