//! `kubectl-buildbot`: deploy, preview, scale and inspect Buildbot on Kubernetes.
//! Installed on the PATH, it runs as `kubectl buildbot ...`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use buildbot_webhook::policy::Policy;
use clap::{CommandFactory as _, Parser as _};

use std::io::IsTerminal as _;

use kubectl_buildbot::cli::{
    Cli, Command, DeleteArgs, DeployArgs, PreviewArgs, ScaleArgs, StatusArgs, StatusFormat,
};
use kubectl_buildbot::cluster::Cluster;
use kubectl_buildbot::commands::deploy::{self as deploy_cmd, DryRun};
use kubectl_buildbot::commands::{delete as delete_cmd, scale as scale_cmd, status as status_cmd};
use kubectl_buildbot::deploy::{Database, DeploySpec, MasterConfig, Secrets};
use kubectl_buildbot::output::Format;
use kubectl_buildbot::{output, preview, scale};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let diff_mode = matches!(&cli.command, Command::Preview(a) if a.diff);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Like `kubectl diff`: 1 means differences, so errors are 2 there.
            ExitCode::from(if diff_mode { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match &cli.command {
        Command::Preview(args) => preview(args),
        Command::Deploy(args) => runtime()?.block_on(deploy(&cli, args)),
        Command::Status(args) => runtime()?.block_on(status(&cli, args)),
        Command::Delete(args) => runtime()?.block_on(delete(&cli, args)),
        Command::Scale(args) => runtime()?.block_on(scale_workers(&cli, args)),
        Command::Completion { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "kubectl-buildbot",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("kubectl-buildbot {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a policy file, or the defaults.
fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    Policy::from_yaml(&text).with_context(|| format!("policy file {}", path.display()))
}

/// Reads `-f` inputs: files, or `-` for standard input.
fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                Ok(("<stdin>".to_string(), text))
            } else {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                Ok((f.display().to_string(), text))
            }
        })
        .collect()
}

fn preview(args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let mut results = Vec::new();
    for (name, text) in read_inputs(&args.filename)? {
        results.extend(preview::preview(&text, &name, &policy)?);
    }
    let stderr = &mut std::io::stderr();
    for r in &results {
        for w in &r.warnings {
            writeln!(
                stderr,
                "Warning: {}: {}",
                r.id,
                w.trim_start_matches("kubectl-buildbot: ")
            )?;
        }
    }
    let out = &mut std::io::stdout().lock();
    if args.diff {
        let mut any = false;
        for r in results.iter().filter(|r| r.changed()) {
            any = true;
            out.write_all(output::diff(&r.id, &r.before, &r.after).as_bytes())?;
            for c in &r.changes {
                writeln!(stderr, "{}: {}: {}", r.id, c.mutation, c.detail)?;
            }
        }
        return Ok(if any {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let objects: Vec<_> = results.into_iter().map(|r| r.after).collect();
    out.write_all(output::render(&objects, args.output).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn connect(cli: &Cli) -> anyhow::Result<Cluster> {
    Ok(Cluster::connect(
        cli.kubeconfig.as_deref(),
        cli.context.as_deref(),
        cli.namespace.as_deref(),
    )
    .await?)
}

/// The namespace without contacting a cluster: `-n`, else the kubeconfig's, else `default`.
async fn offline_namespace(cli: &Cli) -> String {
    if let Some(ns) = &cli.namespace {
        return ns.clone();
    }
    let options = kube::config::KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let from_file = match &cli.kubeconfig {
        Some(path) => match kube::config::Kubeconfig::read_from(path) {
            Ok(k) => kube::Config::from_custom_kubeconfig(k, &options).await.ok(),
            Err(_) => None,
        },
        None => kube::Config::from_kubeconfig(&options).await.ok(),
    };
    from_file.map_or_else(|| "default".to_string(), |c| c.default_namespace)
}

fn deploy_spec(args: &DeployArgs, namespace: &str) -> anyhow::Result<DeploySpec> {
    let mut spec = DeploySpec::new(&args.name, namespace);
    if let Some(image) = &args.image {
        spec.master_image = image.clone();
    }
    if let Some(image) = &args.worker_image {
        spec.worker_image = image.clone();
    }
    spec.max_workers = args.max_workers;
    spec.workers = args.workers.unwrap_or(1);
    spec.database = match (&args.database_url, &args.database_secret) {
        (Some(url), _) => Database::ExternalUrl(url.clone()),
        (None, Some(secret)) => {
            let (name, key) = secret.split_once(':').unwrap_or((secret, "url"));
            Database::ExternalSecret {
                name: name.into(),
                key: key.into(),
            }
        }
        (None, None) => Database::Bundled {
            image: args.database_image.clone(),
            storage: args.database_storage.clone(),
        },
    };
    spec.config = match (&args.config_file, &args.config_url) {
        (Some(path), _) => MasterConfig::File(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --config-file {}", path.display()))?,
        ),
        (None, Some(url)) => MasterConfig::Url(url.clone()),
        (None, None) => MasterConfig::Generated,
    };
    spec.network_policy = !args.no_network_policy;
    spec.master_storage = args.master_storage.clone();
    spec.storage_class = args.storage_class.clone();
    if let Some(url) = &args.web_url {
        spec.web_url = url.clone();
    }
    spec.policy = load_policy(args.policy.as_deref())?;
    spec.validate()?;
    Ok(spec)
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("Warning: {}", w.replace("kubectl-buildbot: ", ""));
    }
}

async fn deploy(cli: &Cli, args: &DeployArgs) -> anyhow::Result<ExitCode> {
    if args.dry_run == DryRun::Client {
        // No cluster at all: fresh passwords, nothing read or sent.
        let spec = deploy_spec(args, &offline_namespace(cli).await)?;
        let (objects, warnings) = deploy_cmd::objects(&spec, &Secrets::default().complete(&spec));
        print_warnings(&warnings);
        match args.output {
            Some(format) => print!("{}", output::render(&objects, format)),
            None => print!(
                "{}",
                deploy_cmd::result_lines(&objects, "created (dry run)")
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = connect(cli).await?;
    let spec = deploy_spec(args, &cluster.namespace)?;
    let existing = deploy_cmd::discover(&cluster, &spec).await?;
    let (spec, secrets) = deploy_cmd::reconcile(spec, args.workers.is_some(), existing);
    let (objects, warnings) = deploy_cmd::objects(&spec, &secrets);
    print_warnings(&warnings);
    let server_dry_run = args.dry_run == DryRun::Server;
    let applied = deploy_cmd::apply_all(&cluster, &objects, server_dry_run).await?;
    match args.output {
        Some(format) => print!("{}", output::render(&applied, format)),
        None => print!(
            "{}",
            deploy_cmd::result_lines(
                &applied,
                if server_dry_run {
                    "configured (server dry run)"
                } else {
                    "configured"
                }
            )
        ),
    }
    if server_dry_run || !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let stderr = &mut std::io::stderr();
    let terminal = stderr.is_terminal();
    deploy_cmd::wait_ready(
        &cluster,
        &spec,
        args.timeout,
        std::time::Duration::from_secs(2),
        terminal,
        stderr,
    )
    .await?;
    eprint!("{}", deploy_cmd::next_steps(&spec));
    Ok(ExitCode::SUCCESS)
}

async fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cluster = connect(cli).await?;
    let spec = DeploySpec::new(&args.name, &cluster.namespace);
    let status = status_cmd::assemble(&spec, status_cmd::collect(&cluster, &spec).await?);
    let value = serde_json::to_value(&status)?;
    match args.output {
        StatusFormat::Table => print!("{}", status_cmd::render_table(&status)),
        StatusFormat::Json => print!("{}", output::render(&[value], Format::Json)),
        StatusFormat::Yaml => print!("{}", output::render(&[value], Format::Yaml)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(cli: &Cli, args: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let cluster = connect(cli).await?;
    let spec = DeploySpec::new(&args.name, &cluster.namespace);
    if args.purge && !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "--purge deletes the database and the master's data for good: add --yes to confirm"
            );
        }
        eprint!(
            "Delete Buildbot {:?} in namespace {:?} with its database, volumes and passwords, for good? [y/N] ",
            spec.name, cluster.namespace
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Nothing deleted.");
            return Ok(ExitCode::from(1));
        }
    }
    let result = delete_cmd::delete(&cluster, &spec, args.purge).await?;
    for d in &result.deleted {
        println!("{d} deleted");
    }
    if result.deleted.is_empty() {
        eprintln!(
            "Nothing of {:?} found in namespace {:?}.",
            spec.name, cluster.namespace
        );
    }
    if !result.kept.is_empty() {
        eprintln!("Kept (delete with --purge): {}", result.kept.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn scale_workers(cli: &Cli, args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let print = |objects: &[serde_json::Value], suffix: &str| match args.output {
        Some(format) => print!("{}", output::render(objects, format)),
        None => print!("{}", deploy_cmd::result_lines(objects, suffix)),
    };
    let max = args.max.unwrap_or(0);
    if args.dry_run == DryRun::Client {
        let spec = DeploySpec::new(&args.name, &offline_namespace(cli).await);
        if args.auto {
            // The slots are only known on the cluster; the rest can be checked here.
            scale::check_bounds(&spec, args.min, max, u32::MAX, args.queue)?;
        }
        let object = match args.workers {
            Some(n) => scale::scale_object(&spec, n),
            None if args.queue => {
                scale::scaled_object(&spec, args.min, max, args.builds_per_worker)
            }
            None => scale::hpa(&spec, args.min, max, args.cpu),
        };
        print(&[object], "configured (dry run)");
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = connect(cli).await?;
    let spec = DeploySpec::new(&args.name, &cluster.namespace);
    let server_dry_run = args.dry_run == DryRun::Server;
    let suffix = if server_dry_run {
        "configured (server dry run)"
    } else {
        "configured"
    };
    match args.workers {
        Some(n) if server_dry_run => {
            cluster
                .scale("apps/v1", "StatefulSet", &spec.worker_name(), n, true)
                .await?;
            print(&[scale::scale_object(&spec, n)], suffix);
        }
        Some(n) => {
            scale_cmd::scale_to(
                &cluster,
                &spec,
                n,
                args.timeout,
                std::time::Duration::from_secs(5),
                &mut std::io::stderr(),
            )
            .await?;
        }
        None if args.queue => {
            let applied = scale_cmd::autoscale_queue(
                &cluster,
                &spec,
                args.min,
                max,
                args.builds_per_worker,
                server_dry_run,
            )
            .await?;
            print(&[applied], suffix);
        }
        None => {
            let applied =
                scale_cmd::autoscale_cpu(&cluster, &spec, args.min, max, args.cpu, server_dry_run)
                    .await?;
            print(&[applied], suffix);
        }
    }
    Ok(ExitCode::SUCCESS)
}
