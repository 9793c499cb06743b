pub mod core;
pub mod crypto;
pub mod error;
pub mod frame;
pub mod id;
pub mod manifest;
pub mod ticket;
