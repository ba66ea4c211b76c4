//! The thin IO around the core: HTTPS (rustls, reloading certificate, optionally verifying client
//! certificates) with `POST /validate`, `POST /mutate` (when `pin_digests`) and `GET /healthz`, bounded
//! bodies, a deadline per request, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, Answer};
use crate::client_ca::ClientCa;
use crate::cluster::NamespaceSource;
use crate::config::WebhookConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::oracle::ImageOracle;
use crate::tls::CertReloader;

/// A client that connects but never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AppState {
    admission: Arc<Admission>,
    metrics: Metrics,
    timeout: Duration,
    max_request_bytes: usize,
}

/// A bound, not yet serving webhook (bind first to learn the port, then [`run`](Self::run)).
pub struct WebhookServer {
    listener: TcpListener,
    tls: Arc<Tls>,
    state: AppState,
    reload_interval: Duration,
    pin_digests: bool,
}

/// The TLS side: the serving certificate (swapped in place by its resolver) and the client CA, whose
/// rotation needs a new server configuration (rustls fixes the verifier per configuration).
struct Tls {
    certs: Arc<CertReloader>,
    clients: Option<ClientCa>,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    fn load(config: &WebhookConfig) -> Result<Self> {
        let certs = Arc::new(CertReloader::load(&config.cert_file, &config.key_file)?);
        let clients = config
            .client_ca_file
            .as_deref()
            .map(|file| ClientCa::load(file, certs.provider()))
            .transpose()?;
        let acceptor = Self::build(&certs, clients.as_ref())?;
        Ok(Tls {
            certs,
            clients,
            acceptor: RwLock::new(acceptor),
        })
    }

    fn build(certs: &Arc<CertReloader>, clients: Option<&ClientCa>) -> Result<TlsAcceptor> {
        let config = certs.server_config(clients.map(ClientCa::verifier))?;
        Ok(TlsAcceptor::from(config))
    }

    /// The acceptor for the next connection.
    fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the files (each on its own: a broken one does not hold up the other); whether anything
    /// new is served.
    fn reload_if_changed(&self) -> Result<bool> {
        let certs = self.certs.reload_if_changed();
        let clients = match &self.clients {
            None => Ok(false),
            Some(clients) => clients.reload_if_changed().and_then(|changed| {
                if changed {
                    let next = Self::build(&self.certs, Some(clients))?;
                    *self.acceptor.write().unwrap_or_else(|p| p.into_inner()) = next;
                }
                Ok(changed)
            }),
        };
        Ok(certs? | clients?)
    }
}

/// Validates `config`, loads the certificate, registers the metrics in `registry`, binds, and serves
/// until `shutdown` resolves.
pub async fn serve(
    config: &WebhookConfig,
    oracle: Arc<dyn ImageOracle>,
    registry: &Registry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    WebhookServer::bind(config, oracle, registry)
        .await?
        .run(shutdown)
        .await
}

impl WebhookServer {
    /// Everything [`serve`] does before serving; errors name the key or file at fault. Namespace labels
    /// come from the oracle.
    pub async fn bind(
        config: &WebhookConfig,
        oracle: Arc<dyn ImageOracle>,
        registry: &Registry,
    ) -> Result<Self> {
        Self::bind_with(config, oracle, None, registry).await
    }

    /// [`bind`](Self::bind), with namespace labels from `namespaces` when given (see
    /// [`KubeNamespaces::for_config`](crate::KubeNamespaces::for_config)).
    pub async fn bind_with(
        config: &WebhookConfig,
        oracle: Arc<dyn ImageOracle>,
        namespaces: Option<Arc<dyn NamespaceSource>>,
        registry: &Registry,
    ) -> Result<Self> {
        let settings = config.validate()?;
        let tls = Arc::new(Tls::load(config)?);
        let metrics = Metrics::register(registry)?;
        let listener = TcpListener::bind(config.address)
            .await
            .map_err(|source| Error::Bind {
                address: config.address.to_string(),
                source,
            })?;
        Ok(WebhookServer {
            listener,
            tls,
            pin_digests: config.pin_digests,
            state: AppState {
                admission: Arc::new(match namespaces {
                    Some(source) => {
                        Admission::with_namespaces(settings, oracle, source, metrics.clone())
                    }
                    None => Admission::new(settings, oracle, metrics.clone()),
                }),
                metrics,
                timeout: config.timeout,
                max_request_bytes: config.max_request_bytes,
            },
            reload_interval: config.cert_reload_interval,
        })
    }

    /// The bound address (the port when configured as 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Bind {
            address: "bound socket".into(),
            source,
        })
    }

    /// Serves until `shutdown` resolves, then lets open requests finish (up to the request timeout).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let mut app = Router::new()
            .route("/validate", post(validate))
            .route("/healthz", get(|| async { "ok\n" }));
        if self.pin_digests {
            app = app.route("/mutate", post(mutate));
        }
        let app = app.with_state(self.state.clone());
        let graceful = GracefulShutdown::new();
        let reloader = reload_loop(
            self.tls.clone(),
            self.state.metrics.clone(),
            self.reload_interval,
        );
        tokio::pin!(shutdown, reloader);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                () = &mut reloader => continue,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("webhook accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let acceptor = self.tls.acceptor();
            let service = TowerToHyperService::new(app.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        return tracing::debug!(%peer, "webhook TLS handshake failed: {e}")
                    }
                    Err(_) => return tracing::debug!(%peer, "webhook TLS handshake timed out"),
                };
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder
                    .serve_connection(TokioIo::new(tls), service)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, "webhook connection ended: {e}");
                }
            });
        }
        let grace = self.state.timeout + Duration::from_secs(1);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("webhook connections still open after {grace:?}; closing them");
        }
        Ok(())
    }
}

/// Polls the certificate files forever (the caller stops polling it at shutdown).
async fn reload_loop(tls: Arc<Tls>, metrics: Metrics, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let tls = tls.clone();
        match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => {
                metrics.cert_reloads.with_label_values(&["ok"]).inc();
                tracing::info!("webhook serving certificate or client CA reloaded");
            }
            Ok(Err(e)) => {
                metrics.cert_reloads.with_label_values(&["error"]).inc();
                tracing::warn!("webhook certificate not reloaded (old one still served): {e}");
            }
            Err(e) => tracing::warn!("webhook certificate reload task failed: {e}"),
        }
    }
}

async fn validate(State(s): State<AppState>, body: Body) -> Response {
    answer(s, body, false).await
}

async fn mutate(State(s): State<AppState>, body: Body) -> Response {
    answer(s, body, true).await
}

/// Reads the body within the deadline and size limit, then validates or (`pin`) validates and pins.
async fn answer(s: AppState, body: Body, pin: bool) -> Response {
    let start = Instant::now();
    let deadline = start + s.timeout;
    let read = tokio::time::timeout_at(deadline, axum::body::to_bytes(body, s.max_request_bytes));
    let answer: Answer = match read.await {
        Err(_) => s.admission.body_timeout(),
        Ok(Err(e)) => {
            let inner = e.into_inner();
            if inner.is::<http_body_util::LengthLimitError>() {
                s.admission.too_large()
            } else {
                s.admission.unreadable_body(&inner.to_string())
            }
        }
        Ok(Ok(bytes)) if pin => s.admission.mutate(&bytes, deadline).await,
        Ok(Ok(bytes)) => s.admission.review(&bytes, deadline).await,
    };
    s.metrics.latency.observe(start.elapsed().as_secs_f64());
    let status = StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.response.to_review_json(),
    )
        .into_response()
}
