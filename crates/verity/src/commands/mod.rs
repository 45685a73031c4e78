//! Command groups, one file each.

pub mod chat;
pub mod gateway;
pub mod keys;
pub mod language;
pub mod validator;
