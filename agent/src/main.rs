use clap::Parser;

fn main() {
    let cli = match berth::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's usage errors exit 2, which `berth diff` uses for "something would change": a usage
            // error exits 64 (EX_USAGE) instead; --help and --version still exit 0.
            let _ = e.print();
            let code = match e.exit_code() {
                0 => 0,
                _ => berth::cli::exit::USAGE,
            };
            std::process::exit(code);
        }
    };
    // Unlocked handles: holding the stderr lock here would block every log line written from another
    // thread (the blocking pool where git runs) for as long as the agent runs.
    let code = berth::cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}
