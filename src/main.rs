fn main() -> std::process::ExitCode {
    isotool::output::install_interrupt_cleanup();
    isotool::cli::main()
}
