use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Create DB (WAL mode) unless it exists, applying the SQL of --script once. Run as an init container.
    InitDb {
        #[arg(long)]
        script: Option<PathBuf>,
        db: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("litecar-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
