use clap::Parser;

fn main() {
    let cli = berth::cli::Cli::parse();
    // Unlocked handles: holding the stderr lock here would block every log line written from another
    // thread (the blocking pool where git runs) for as long as the agent runs.
    let code = berth::cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code);
}
