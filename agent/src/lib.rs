//! berth: a GitOps agent for edge boxes.
//!
//! The flow is source → render → checkout → observe → plan → apply → record; each step has its module.

pub mod config;
pub mod model;
pub mod render;
pub mod runtime;
pub mod source;
