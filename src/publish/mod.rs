//! `chartroom publish`: packaging charts from a directory tree and pushing them.

pub mod helmignore;
pub mod package;
