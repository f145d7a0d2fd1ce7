//! The `celeriac` binary: parse the command line and run. Everything lives in the library.

fn main() {
    std::process::exit(celeriac::cli::main());
}
