//! Operators' views of the running proxy: the admin console (database `shardgate`) and the
//! Prometheus endpoint.

pub mod console;
mod describe;
pub mod http;
pub mod limits;
pub mod metrics;
mod show;
mod table;
