pub mod app;
pub mod block;
pub mod mempool;
pub mod validator;
