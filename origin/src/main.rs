#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = heady_origin::cli::Cli::parse();
    std::process::exit(heady_origin::cli::run(cli));
}
