//! The `piswarm` binary: everything lives in the library; see `piswarm --help`.

fn main() -> std::process::ExitCode {
    piswarm::cli::main()
}
