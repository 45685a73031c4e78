//! State machine modules. Each owns its tables and its transactions (ARCHITECTURE.md, where the rules live).

pub mod accounts;
pub mod challengers;
pub mod data;
pub mod disputes;
pub mod enclaves;
pub mod game;
pub mod records;
pub mod registry;
pub mod reputation;
pub mod schedule;
pub mod settlement;
pub mod sortition;
pub mod staking;
pub mod tasks;
pub mod validators;
pub mod verifier;
