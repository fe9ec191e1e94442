//! Hostile input: yaml.
