//! chartroom: a Helm chart repository server compatible with ChartMuseum.
//!
//! Layers, from the bottom: [`storage`] (bytes and listings), [`chart`] (package parsing),
//! [`index`] (the in-memory index of one repository), [`repository`] (repositories over one
//! storage backend), [`api`] (HTTP request handling), [`daemon`] (listeners, signals, systemd).

#[macro_use]
pub mod log;

pub mod api;
pub mod chart;
pub mod chart_yaml;
pub mod config;
pub mod daemon;
pub mod index;
pub mod keylock;
pub mod publish;
pub mod repository;
pub mod storage;
pub mod tar_reader;
pub mod timefmt;
pub mod version;
pub mod yaml;
pub mod yaml11;
