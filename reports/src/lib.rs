//! Reports from profiler recordings: the reader of `profiler watch --record` files and the
//! memory request/limit recommendations. (The HTML and PNG report that builds on them is
//! issue 5's next step.)
pub mod recommend;
pub mod recording;
