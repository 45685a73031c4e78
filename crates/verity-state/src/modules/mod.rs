//! State machine modules. Each owns its tables and its transactions (DESIGN §3).

pub mod accounts;
