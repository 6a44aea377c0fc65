use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_env("DEPLOYD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn"));
    let json = std::env::var("DEPLOYD_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    match deployd::cli::run(deployd::cli::Cli::parse_process_args()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("deployd: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
