//! Hostile input: uploads.
