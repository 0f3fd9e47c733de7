//! Reports from profiler recordings: the reader of `profiler watch --record` files, the
//! timeline of each container, PNG charts, flame graphs of the bytes charged, the
//! self-contained HTML page, and the memory request/limit recommendations.
pub mod chart;
mod endings;
pub mod files;
pub mod growth;
pub mod history;
pub mod html;
mod node;
pub mod page;
mod processes;
pub mod recommend;
pub mod recording;
pub mod report;
mod runtimes;
pub mod stacks;
#[cfg(test)]
mod testing;
pub mod timeline;

pub use report::{page_from, write_report, Page, ReportError, Written, PAGE};
