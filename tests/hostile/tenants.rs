//! Hostile input: tenants.
