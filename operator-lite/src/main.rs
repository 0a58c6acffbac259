mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use litecar_operator::{RenderOptions, crd_yaml, initdb, manifest, render};

#[derive(Parser)]
#[command(name = "litecar-operator", version, about = "Operator for SqliteDatabase resources, run by litecar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the SqliteDatabase CustomResourceDefinition.
    Crd,
    /// Print, without a cluster, the objects the operator applies for the SqliteDatabase resources in FILE (and
    /// the Deployments in FILE that ask for litecar as a sidecar, with it injected), as a YAML stream.
    Render {
        /// The litecar image, unless a resource names its own (spec.litecar.image).
        #[arg(long, env = "LITECAR_IMAGE")]
        image: Option<String>,
        file: PathBuf,
    },
    /// Run the controller: reconcile SqliteDatabase resources (after winning the leader-election Lease).
    Run {
        /// The litecar image of the pods it renders, unless a resource names its own.
        #[arg(long, env = "LITECAR_IMAGE")]
        image: Option<String>,
        /// Only this namespace's resources (default: every namespace).
        #[arg(long)]
        namespace: Option<String>,
        /// /metrics, /healthz and /readyz.
        #[arg(long, default_value = ":8080")]
        metrics_addr: String,
        #[arg(long, default_value = "litecar-operator")]
        lease_name: String,
        /// Default: the namespace the operator runs in (from its service account), else `default`.
        #[arg(long)]
        lease_namespace: Option<String>,
        /// This process's name in the Lease (default: $POD_NAME, else the host name and process id).
        #[arg(long)]
        identity: Option<String>,
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        lease_duration: Duration,
        /// How soon a resource waiting for a Secret is looked at again.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        recheck_interval: Duration,
    },
    /// Create DB (WAL mode) unless it exists, applying the SQL of --script once. Run as an init container.
    InitDb {
        #[arg(long)]
        script: Option<PathBuf>,
        db: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    litecar::config::GoDuration::parse(s).map(|d| d.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("litecar-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            image,
            namespace,
            metrics_addr,
            lease_name,
            lease_namespace,
            identity,
            lease_duration,
            recheck_interval,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let lease_namespace = lease_namespace.unwrap_or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "default".into())
            });
            let identity = identity.or_else(|| std::env::var("POD_NAME").ok()).unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            let opts = run::Options {
                render: image.map(|image| RenderOptions { image }).unwrap_or_default(),
                namespace,
                metrics_addr,
                lease_namespace,
                lease_name,
                identity,
                lease_duration,
                recheck: recheck_interval,
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let cancel = tokio_util::sync::CancellationToken::new();
                let c = cancel.clone();
                tokio::spawn(async move {
                    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                    }
                    c.cancel();
                });
                run::run(opts, cancel).await
            })?;
        }
        Command::Crd => print!("{}", crd_yaml().context("serializing the CRD")?),
        Command::Render { image, file } => {
            let opts = image.map(|image| RenderOptions { image }).unwrap_or_default();
            print!("{}", render_file(&file, &opts)?);
        }
        Command::InitDb { script, db } => {
            let outcome = initdb::init_db(&db, script.as_deref())?;
            eprintln!("litecar-operator: {}: {:?}", db.display(), outcome);
        }
    }
    Ok(())
}

fn render_file(file: &std::path::Path, opts: &RenderOptions) -> Result<String> {
    let m = manifest::read(file)?;
    if m.databases.is_empty() {
        bail!("{}: no SqliteDatabase (database.sqlite.io/v1alpha1) in the file", file.display());
    }
    let objects = manifest::render_all(&m, opts).with_context(|| file.display().to_string())?;
    Ok(render::to_yaml_stream(&objects)?)
}
