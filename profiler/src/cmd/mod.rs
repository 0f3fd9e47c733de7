//! One module per subcommand.
pub mod doctor;
pub mod floor;
pub mod report;
pub mod serve;
mod start;
pub mod watch;
