//! Content-addressed boot assets: UKIs and iPXE loaders, UKI (PE) inspection and section
//! extraction. Profiles already reference UKIs by `sha256:` digest (see `inventory::profile`);
//! the store that resolves those digests lands with the boot-assets issue.
//!
//! # Layout
//! (no modules yet)
