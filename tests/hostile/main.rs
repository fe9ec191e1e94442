//! Hostile input (issue 13): one test per class of attack found by the attacker's pass, plus
//! the attacks that already held (traversal, oversize, encodings, auth edge cases), so that they
//! keep holding. Each module covers one area; see the README's "Limits and hostile input".

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod azure;
mod bearer;
mod cache;
mod etcd;
mod gcs;
mod memory;
mod ops;
mod package;
mod tenants;
mod uploads;
mod yaml;
