//! Configuration: process settings and the CLI, the compiled config in force, file reload.

pub mod cli;
pub mod compiled;
pub mod reload;
pub mod settings;
