//! End-to-end tests of the `xfer` binary, one module per command, built as a
//! single test binary (ripgrep's layout). Each test gets its own folder.
mod util;

mod adopt;
mod augment;
mod cli;
mod device;
mod draft;
mod extract;
mod predict;
mod quant;
mod serve;
mod train;
mod writers;
