pub mod api;
pub mod app;
pub mod block;
pub mod committee;
pub mod mempool;
pub mod run;
pub mod validator;
