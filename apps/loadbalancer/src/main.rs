fn main() -> std::process::ExitCode {
    loadbalancer::main_with(std::env::args_os())
}
