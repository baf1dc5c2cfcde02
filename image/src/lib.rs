//! OCI images for isola: references, pulls from registries (Docker Registry HTTP API
//! v2), imports (OCI layout, oci-archive, docker-archive), a content-addressed store,
//! and layer unpacking with whiteouts.

pub mod auth;
pub mod disk;
pub mod extract;
pub mod import;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use disk::DiskError;
pub use reference::Reference;
pub use store::{ImageDisk, ImageRecord, Store, StoreError};
