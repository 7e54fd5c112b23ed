//! The `leasehold` binary: parse the configuration, then serve, print the OpenAPI document,
//! or run an operator subcommand against a running leasehold.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use leasehold::app::{self, App};
use leasehold::cli::{self, Operation};
use leasehold::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => match leasehold::http::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("leasehold: cannot render the OpenAPI document: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Leases(command) => cli::run(&cli.client, Operation::Leases(command)).await,
        Command::Resource(command) => cli::run(&cli.client, Operation::Resource(command)).await,
        Command::Probe(args) => cli::run(&cli.client, Operation::Probe(args)).await,
        Command::Serve => {
            leasehold::telemetry::init(cli.config.log_format);
            match serve(&cli.config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "leasehold stopped");
                    eprintln!("leasehold: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: &leasehold::config::Config) -> Result<(), app::StartError> {
    let config = config
        .clone()
        .with_platform(|name| std::env::var(name).ok())
        .map_err(app::StartError::Platform)?;
    let app = App::build(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr()).await?;
    tracing::info!(listen = %listener.local_addr()?, "leasehold serving; OpenAPI UI at /docs");
    app.serve(listener, app::shutdown_signal()).await
}
