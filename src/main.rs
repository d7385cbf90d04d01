fn main() -> std::process::ExitCode {
    isotool::cli::main()
}
