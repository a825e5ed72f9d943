//! The `geardriver` binary: everything is in the library, so a user's own binary with its own
//! plugins runs the very same entry point.

fn main() -> std::process::ExitCode {
    geardriver::cli::main()
}
