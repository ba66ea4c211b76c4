//! `fathom watch add|list|rm|history`: tag and repository watches, against the database (with the
//! configuration's registry access) or the core's API (`--api`). Both print the same records.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use fathom_catalog::store::ListFilter;
use fathom_catalog::{Catalog, CatalogMetrics, RepositoryRequest, Watch, WatchDetail};
use reqwest::Method;
use serde_json::{json, Value};

use super::backend::ApiClient;
use super::client::ClientArgs;

/// Arguments of `fathom watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Where to work: the database (`registry`, `services.catalog` and `database.url` from the
    /// configuration), or the core's API.
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: WatchCommand,
}

/// `fathom watch` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WatchCommand {
    /// Watch a tag (resolved now and every services.catalog.watch_interval; each new digest analyzed),
    /// or with --repository a repository (new tags passing the filters become tag watches).
    Add {
        /// `registry/repository:tag`.
        #[arg(required_unless_present = "repository", conflicts_with = "repository")]
        reference: Option<String>,
        /// `registry/repository` to watch for new tags.
        #[arg(long)]
        repository: Option<String>,
        /// Only tags matching this regular expression (anywhere in the tag; anchor with ^...$).
        #[arg(long, requires = "repository")]
        include: Option<String>,
        /// No tags matching this regular expression.
        #[arg(long, requires = "repository")]
        exclude: Option<String>,
        /// List the tags that would be watched, without watching them.
        #[arg(long, requires = "repository")]
        dry_run: bool,
    },
    /// List watches.
    List {
        /// Only `tag` or `repository` watches.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Remove a watch (a repository watch takes the tag watches it made with it).
    Rm {
        /// Watch id.
        id: i64,
    },
    /// A watched tag's digests, newest first.
    History {
        /// `registry/repository:tag`.
        reference: String,
    },
}

/// Runs `fathom watch`.
pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        let target = Target::connect(&args).await?;
        let answer = target.run(&args.command).await?;
        print(&args.command, &answer, args.client.json)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The database (a catalog of this process) or the API.
enum Target {
    Database(Box<Catalog>),
    Api(ApiClient),
}

impl Target {
    async fn connect(args: &WatchArgs) -> anyhow::Result<Target> {
        if let Some(api) = args.client.api()? {
            return Ok(Target::Api(api));
        }
        let (config, pool) = args.client.database().await?;
        let options =
            fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?;
        let cache_key = fathom_analyzer::analyze::catalogers_key(
            &fathom_analyzer::catalog::default_catalogers(),
            &options,
        );
        let metrics = CatalogMetrics::unregistered()?;
        let catalog = crate::core::catalog::build(&config, pool, cache_key, metrics)?;
        Ok(Target::Database(Box::new(catalog)))
    }

    /// Runs the command; the answer as the API gives it.
    async fn run(&self, command: &WatchCommand) -> anyhow::Result<Value> {
        match self {
            Target::Database(catalog) => local(catalog, command).await,
            Target::Api(api) => remote(api, command).await,
        }
    }
}

fn value<T: serde::Serialize>(v: &T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(v)?)
}

async fn local(catalog: &Catalog, command: &WatchCommand) -> anyhow::Result<Value> {
    Ok(match command {
        WatchCommand::Add {
            reference: Some(reference),
            ..
        } => value(&catalog.add_tag(reference).await?.0)?,
        WatchCommand::Add {
            repository: Some(repository),
            include,
            exclude,
            dry_run,
            ..
        } => {
            let request = RepositoryRequest {
                repository: repository.clone(),
                include: include.clone(),
                exclude: exclude.clone(),
            };
            if *dry_run {
                value(&catalog.look(&request).await?)?
            } else {
                let (watch, look, _) = catalog.add_repository(&request).await?;
                let mut v = value(&watch)?;
                v["added"] = json!(look.tags);
                v
            }
        }
        WatchCommand::Add { .. } => anyhow::bail!("give a tag reference or --repository"),
        WatchCommand::List { kind } => {
            let mut items = Vec::new();
            let mut after = None;
            loop {
                let page = catalog
                    .list(&ListFilter {
                        kind: kind.clone(),
                        repository_watch: None,
                        after,
                        limit: 1000,
                    })
                    .await?;
                after = page.last().map(|w| w.id);
                let done = page.len() < 1000;
                items.extend(page);
                if done {
                    break;
                }
            }
            json!({ "items": items })
        }
        WatchCommand::Rm { id } => {
            catalog.remove(*id).await?;
            Value::Null
        }
        WatchCommand::History { reference } => value(&catalog.history_of(reference).await?)?,
    })
}

async fn remote(api: &ApiClient, command: &WatchCommand) -> anyhow::Result<Value> {
    match command {
        WatchCommand::Add {
            reference,
            repository,
            include,
            exclude,
            dry_run,
        } => {
            let body = match (reference, repository) {
                (Some(r), _) => json!({ "reference": r }),
                (None, Some(r)) => {
                    json!({ "repository": r, "include": include, "exclude": exclude })
                }
                (None, None) => anyhow::bail!("give a tag reference or --repository"),
            };
            let query = [("dry_run", dry_run.to_string())];
            api.call(
                Method::POST,
                "/v1/watches",
                &query,
                Some(&body),
                "watch add",
            )
            .await
        }
        WatchCommand::List { kind } => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = Vec::new();
                if let Some(k) = kind {
                    query.push(("kind", k.clone()));
                }
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let page = api
                    .call(Method::GET, "/v1/watches", &query, None, "watch list")
                    .await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
            }
            Ok(json!({ "items": items }))
        }
        WatchCommand::Rm { id } => {
            let path = format!("/v1/watches/{id}");
            api.call(Method::DELETE, &path, &[], None, "watch rm").await
        }
        WatchCommand::History { reference } => {
            // The API finds watches by id: look the tag up in the list (its canonical form).
            let (canonical, _) = fathom_catalog::tag_reference(reference)?;
            let list = Box::pin(remote(
                api,
                &WatchCommand::List {
                    kind: Some("tag".into()),
                },
            ))
            .await?;
            let id = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|w| w["reference"] == canonical.as_str())
                .and_then(|w| w["id"].as_i64())
                .with_context(|| format!("watch history: {canonical} is not watched"))?;
            let path = format!("/v1/watches/{id}");
            api.call(Method::GET, &path, &[], None, "watch history")
                .await
        }
    }
}

fn print(command: &WatchCommand, answer: &Value, as_json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        if !answer.is_null() {
            serde_json::to_writer_pretty(&mut out, answer)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    match command {
        WatchCommand::Add { dry_run: true, .. } => {
            for tag in answer["tags"].as_array().into_iter().flatten() {
                writeln!(out, "{}", tag.as_str().unwrap_or_default())?;
            }
            eprintln!(
                "fathom: {} of {} listed tags would be watched ({} filtered out, {} over the cap)",
                answer["tags"].as_array().map_or(0, Vec::len),
                answer["listed"],
                answer["filtered"],
                answer["capped"]
            );
        }
        WatchCommand::Add { .. } => {
            let watch: Watch = serde_json::from_value(answer.clone())?;
            writeln!(out, "{}", row(&watch))?;
            for tag in answer["added"].as_array().into_iter().flatten() {
                writeln!(out, "  + {}", tag.as_str().unwrap_or_default())?;
            }
        }
        WatchCommand::List { .. } => {
            for item in answer["items"].as_array().into_iter().flatten() {
                let watch: Watch = serde_json::from_value(item.clone())?;
                writeln!(out, "{}", row(&watch))?;
            }
        }
        WatchCommand::Rm { id } => writeln!(out, "removed watch {id}")?,
        WatchCommand::History { .. } => {
            let detail: WatchDetail = serde_json::from_value(answer.clone())?;
            writeln!(out, "{}", row(&detail.watch))?;
            for h in &detail.history {
                writeln!(out, "{}\t{}\t{}", h.digest, h.first_seen, h.last_seen)?;
            }
        }
    }
    Ok(())
}

/// `ID  KIND  STATUS  REFERENCE  DIGEST-or-TAGS  ERROR`, tab-separated.
fn row(w: &Watch) -> String {
    let what = match w.kind.as_str() {
        "repository" => format!(
            "{} tags watched, {} over the cap",
            w.tags_watched.unwrap_or(0),
            w.tags_capped.unwrap_or(0)
        ),
        _ => w.digest.clone().unwrap_or_else(|| "-".into()),
    };
    let mut line = format!(
        "{}\t{}\t{}\t{}\t{what}",
        w.id, w.kind, w.status, w.reference
    );
    if let Some(e) = &w.error {
        line.push('\t');
        line.push_str(e);
    }
    line
}
