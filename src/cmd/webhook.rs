//! `fathom webhook certs`: TLS for the admission webhook without cert-manager (a self-signed CA, a
//! serving certificate for the webhook Service, and the `caBundle` patch).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `fathom webhook`.
#[derive(clap::Args, Debug)]
pub struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
}

#[derive(clap::Subcommand, Debug)]
enum WebhookCommand {
    /// Write a self-signed CA (ca.crt), a serving certificate (tls.crt) and its key (tls.key) for the
    /// webhook Service, and print the JSON patch that puts the CA into the ValidatingWebhookConfiguration.
    Certs(CertsArgs),
}

/// Arguments of `fathom webhook certs`.
#[derive(clap::Args, Debug)]
struct CertsArgs {
    /// The Service the API server calls (deploy/base/webhook.yaml: fathom-webhook).
    #[arg(long)]
    service: String,
    /// Its namespace.
    #[arg(long)]
    namespace: String,
    /// Directory for ca.crt, tls.crt and tls.key (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Entries in the configuration's `webhooks` list (deploy/base/webhook.yaml has one).
    #[arg(long, default_value_t = 1)]
    webhooks: usize,
}

/// Runs `fathom webhook ...`.
pub fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        WebhookCommand::Certs(a) => certs(&a),
    }
}

fn certs(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let bundle = fathom_webhook::certs::generate(&args.service, &args.namespace)
        .context("generating the webhook certificates")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write(&args.out.join("ca.crt"), &bundle.ca_pem, false)?;
    write(&args.out.join("tls.crt"), &bundle.cert_pem, false)?;
    write(&args.out.join("tls.key"), &bundle.key_pem, true)?;
    let patch = fathom_webhook::certs::ca_bundle_patch(&bundle.ca_pem, args.webhooks);
    let dir = args.out.display();
    eprintln!(
        "wrote {dir}/ca.crt, {dir}/tls.crt and {dir}/tls.key for {names}\n\
         next:\n  kubectl -n {ns} create secret tls fathom-webhook-tls --cert={dir}/tls.crt --key={dir}/tls.key\n  \
         kubectl patch validatingwebhookconfiguration fathom-image-admission --type json -p '<the patch below>'",
        names = fathom_webhook::certs::service_names(&args.service, &args.namespace).join(", "),
        ns = args.namespace,
    );
    // The patch alone on stdout, for `-p "$(fathom webhook certs ...)"`.
    println!("{patch}");
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`; a private key is readable by its owner only.
fn write(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
