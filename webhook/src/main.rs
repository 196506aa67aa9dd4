//! `buildbot-webhook`: the mutating admission webhook for Buildbot pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use buildbot_policy::duration::parse_duration;
use buildbot_policy::Policy;
use buildbot_webhook::server::{Server, ServerConfig};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "buildbot-webhook",
    version,
    about = "Mutating admission webhook that makes every Buildbot pod correct"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve AdmissionReview v1 on POST /mutate over HTTPS (also /healthz, /readyz, /metrics).
    Serve(ServeArgs),
    /// Print the default policy as YAML: every field the --config file may set.
    DefaultConfig,
    /// Check a policy file and print it with every default filled in.
    CheckConfig {
        /// The policy file (YAML).
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:8443", env = "BUILDBOT_WEBHOOK_LISTEN")]
    listen: SocketAddr,
    /// PEM certificate chain; reloaded when the file changes.
    #[arg(long, env = "BUILDBOT_WEBHOOK_TLS_CERT")]
    tls_cert: PathBuf,
    /// PEM private key; reloaded when the file changes.
    #[arg(long, env = "BUILDBOT_WEBHOOK_TLS_KEY")]
    tls_key: PathBuf,
    /// Policy file (YAML); the built-in defaults when absent.
    #[arg(long, env = "BUILDBOT_WEBHOOK_CONFIG")]
    config: Option<PathBuf>,
    /// How often to check the certificate files for a rotation (e.g. 5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    cert_reload_interval: Duration,
    /// Connections beyond this are closed at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Time allowed for a TLS handshake and for each request's headers and body.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    read_timeout: Duration,
    /// On SIGTERM, how long to wait for in-flight reviews.
    #[arg(long, default_value = "25s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Threads serving requests (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json, env = "BUILDBOT_WEBHOOK_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUILDBOT_WEBHOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return ctrl_c.await.unwrap_or(());
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::DefaultConfig => print!("{}", Policy::default().to_yaml()),
        Command::CheckConfig { file } => print!("{}", Policy::from_file(&file)?.to_yaml()),
        Command::Serve(args) => {
            init_logging(args.log_format);
            let mut config = ServerConfig::new(args.listen, args.tls_cert, args.tls_key);
            if let Some(path) = &args.config {
                config.policy = Policy::from_file(path)?;
            }
            config.cert_reload_interval = args.cert_reload_interval;
            config.max_connections = args.max_connections;
            config.read_timeout = args.read_timeout;
            config.drain_timeout = args.drain_timeout;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = args.worker_threads {
                runtime.worker_threads(usize::from(n));
            }
            let runtime = runtime.enable_all().build()?;
            runtime.block_on(async {
                let server = Server::bind(config).await?;
                tracing::info!(addr = %server.local_addr(), "buildbot-webhook serving /mutate");
                server.run(terminated()).await;
                tracing::info!("stopped");
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}
