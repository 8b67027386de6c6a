//! `cloakroom`: the Cloakroom session server and its admin CLI (see `cloakroom_server::cli`).

fn main() -> std::process::ExitCode {
    cloakroom_server::cli::main()
}
