//! Hostile input: memory.
