use clap::Parser;

fn main() {
    let cli = berth::cli::Cli::parse();
    let code = berth::cli::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
