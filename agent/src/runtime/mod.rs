//! The narrow runtime interface berth needs from a container engine, and its Docker implementation.

pub mod docker;
