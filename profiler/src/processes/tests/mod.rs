//! Tests of the module: the growth and ranking on synthetic readings ([`growth`]), and the
//! reading on recorded `/proc` text, a made-up cgroup tree and a real child process
//! ([`procfs`]).
mod growth;
mod procfs;
