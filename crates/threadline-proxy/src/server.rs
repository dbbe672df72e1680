//! Listeners: the reverse proxy, the admin endpoints, the forward proxy; connection
//! limits, timeouts and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use threadline_tower::{PeerAddr, ThreadlineLayer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower_layer::Layer;

use crate::body::ProxyBody;
use crate::config::{Limits, ProxyConfig, Timeouts};
use crate::egress::{Egress, EgressShared};
use crate::error::{Error, ErrorKind};
use crate::forward::{Forward, HttpClient, Shared};
use crate::headers::ContextNames;
use crate::keyroute::KeyRoutes;
use crate::metrics::Metrics;
use crate::route::{Route, RuleTable};

/// The proxy, built from a [`ProxyConfig`]; [`Proxy::start`] binds and runs it.
pub struct Proxy {
    config: ProxyConfig,
    route: Arc<dyn Route>,
    // `with_route` replaced the config's routing.
    custom_route: bool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy routing by the config's rules, then to its upstream.
    pub fn new(config: ProxyConfig) -> Result<Proxy, Error> {
        #[cfg(not(feature = "tls"))]
        if config.tls.is_some() {
            return Err(Error::config(
                "a TLS certificate is configured but the proxy was built without the `tls` feature",
            ));
        }
        let table = config.rules.iter().cloned().fold(
            RuleTable::new(Some(config.upstream.clone())),
            RuleTable::rule,
        );
        Ok(Proxy {
            config,
            route: Arc::new(table),
            custom_route: false,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// Chooses upstreams with `route` instead of the config's rules and upstream: the
    /// seam for route tables (see [`Route`]).
    pub fn with_route(mut self, route: impl Route) -> Self {
        self.route = Arc::new(route);
        self.custom_route = true;
        self
    }

    /// The metrics (also served on the admin listener's `/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Binds every configured listener and serves them on the current Tokio runtime
    /// until [`Running::shutdown`].
    pub async fn start(self) -> Result<Running, Error> {
        let c = &self.config;
        let builder = Arc::new(server_builder(&c.timeouts, &c.limits));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        #[cfg(feature = "tls")]
        let tls = match &c.tls {
            Some(files) => Some(crate::tls::acceptor(files)?),
            None => None,
        };

        let listener = bind(c.listen).await?;
        let local = local_addr(&listener)?;
        let metrics = self.metrics.clone();
        let layer = ThreadlineLayer::new(c.policy.clone()).trust(c.trust.clone());
        // Routing by key: the rules' sources start here, on the runtime that serves.
        // The same tables route the app's own calls through the egress listener.
        let router = match &c.routing {
            Some(r) => Some(r.start().await?),
            None => None,
        };
        let route: Arc<dyn Route> = match (&c.routing, &router) {
            (Some(r), Some(router)) if !self.custom_route => {
                let service = r
                    .service
                    .clone()
                    .unwrap_or_else(|| c.upstream.authority().host().to_owned());
                Arc::new(KeyRoutes::with_fallback(
                    router.clone(),
                    service,
                    self.route.clone(),
                ))
            }
            _ => self.route.clone(),
        };
        let shared = Arc::new(Shared {
            route,
            h1: client(&c.timeouts, false),
            h2: client(&c.timeouts, true),
            metrics: metrics.clone(),
            policy: c.policy.clone(),
            names: ContextNames::of(&c.policy),
            upstream_timeout: c.timeouts.upstream,
            access_log: c.access_log,
            forwarded: c.forwarded_headers,
            tls: c.tls.is_some(),
        });
        let make = move |peer: SocketAddr| {
            let svc = layer.layer(Forward {
                shared: shared.clone(),
                peer,
            });
            tower_util::InsertPeer { inner: svc, peer }
        };
        let accept = Accept {
            listener,
            builder: builder.clone(),
            permits: Arc::new(Semaphore::new(c.limits.max_connections)),
            metrics: metrics.clone(),
            egress: false,
            drain: c.timeouts.drain,
            header_timeout: c.timeouts.header,
        };
        #[cfg(feature = "tls")]
        tasks.push(tokio::spawn(accept.run(make, tls, stop_rx.clone())));
        #[cfg(not(feature = "tls"))]
        tasks.push(tokio::spawn(accept.run(
            make,
            None::<NoTls>,
            stop_rx.clone(),
        )));

        let mut admin_addr = None;
        if let Some(addr) = c.admin {
            let listener = bind(addr).await?;
            admin_addr = Some(local_addr(&listener)?);
            let metrics = metrics.clone();
            let accept = Accept {
                listener,
                builder: builder.clone(),
                permits: Arc::new(Semaphore::new(64)),
                metrics: metrics.clone(),
                egress: false,
                drain: Duration::from_secs(1),
                header_timeout: c.timeouts.header,
            };
            let make = move |_peer| {
                let metrics = metrics.clone();
                tower_util::Admin { metrics }
            };
            tasks.push(tokio::spawn(accept.run(
                make,
                None::<NoTls>,
                stop_rx.clone(),
            )));
        }

        let mut egress_addr = None;
        if let Some(e) = &c.egress {
            let listener = bind(e.listen).await?;
            egress_addr = Some(local_addr(&listener)?);
            let shared = Arc::new(EgressShared {
                targets: e.targets.clone(),
                client: client(&c.timeouts, false),
                metrics: metrics.clone(),
                policy: c.policy.clone(),
                names: ContextNames::of(&c.policy),
                timeout: c.timeouts.upstream,
                access_log: c.access_log,
                router: router.clone(),
            });
            let accept = Accept {
                listener,
                builder: builder.clone(),
                permits: Arc::new(Semaphore::new(c.limits.max_connections)),
                metrics: metrics.clone(),
                egress: true,
                drain: c.timeouts.drain,
                header_timeout: c.timeouts.header,
            };
            let make = move |peer| Egress {
                shared: shared.clone(),
                peer,
            };
            tasks.push(tokio::spawn(accept.run(
                make,
                None::<NoTls>,
                stop_rx.clone(),
            )));
        }

        Ok(Running {
            local,
            admin: admin_addr,
            egress: egress_addr,
            stop: stop_tx,
            tasks,
            metrics,
        })
    }
}

/// A started proxy: its addresses, and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    local: SocketAddr,
    admin: Option<SocketAddr>,
    egress: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Running {
    /// The reverse proxy's address (the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The admin listener's address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The forward proxy's address, when configured.
    pub fn egress_addr(&self) -> Option<SocketAddr> {
        self.egress
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, asks every connection to finish (HTTP/1.1: after its request
    /// in flight; HTTP/2: GOAWAY), and waits for them up to the drain timeout; then
    /// closes what is left.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Runs until `signal` completes, then [`Running::shutdown`].
    pub async fn serve_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::with_source(ErrorKind::Bind, format!("cannot listen on {addr}"), e))
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr, Error> {
    l.local_addr()
        .map_err(|e| Error::with_source(ErrorKind::Bind, "no local address", e))
}

fn server_builder(t: &Timeouts, l: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header)
        .max_buf_size(l.max_header_bytes.max(8192))
        .max_headers(l.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(l.max_streams)
        .keep_alive_interval(t.idle / 2)
        .keep_alive_timeout(t.idle / 2);
    b
}

fn client(t: &Timeouts, h2: bool) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(t.connect));
    connector.set_nodelay(true);
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(t.idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if h2 {
        b.http2_only(true);
    }
    b.build(connector)
}

/// Stands in for the TLS acceptor when the `tls` feature is off.
#[derive(Clone)]
pub(crate) enum NoTls {}

/// Turns an accepted TCP stream into the stream HTTP is served on.
pub(crate) trait Handshake: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Handshake for NoTls {
    type Stream = TcpStream;
    async fn handshake(&self, _: TcpStream) -> std::io::Result<TcpStream> {
        match *self {}
    }
}

struct Accept {
    listener: TcpListener,
    builder: Arc<auto::Builder<TokioExecutor>>,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    egress: bool,
    drain: Duration,
    header_timeout: Duration,
}

impl Accept {
    async fn run<M, S, H>(self, make: M, tls: Option<H>, mut stop: watch::Receiver<bool>)
    where
        M: Fn(SocketAddr) -> S + Send + 'static,
        S: tower_service::Service<
                Request<Incoming>,
                Response = Response<ProxyBody>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        H: Handshake,
    {
        let graceful = GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!(target: "threadline_proxy", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let svc = TowerToHyperService::new(make(peer));
            let metrics = self.metrics.clone();
            let egress = self.egress;
            metrics.connection(egress, 1);
            match &tls {
                None => {
                    let conn = self
                        .builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                        metrics.connection(egress, -1);
                        drop(permit);
                    });
                }
                Some(h) => {
                    let h = h.clone();
                    let builder = self.builder.clone();
                    let within = self.header_timeout;
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        if let Ok(Ok(stream)) = tokio::time::timeout(within, h.handshake(tcp)).await
                        {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .into_owned();
                            let _ = watcher.watch(conn).await;
                        }
                        metrics.connection(egress, -1);
                        drop(permit);
                    });
                }
            }
        }
        drop(self.listener);
        let _ = tokio::time::timeout(self.drain, graceful.shutdown()).await;
    }
}

/// Small services around the forwarding one.
mod tower_util {
    use super::*;
    use std::task::{Context, Poll};

    /// Puts the connection's peer address into each request (for the trust policy).
    #[derive(Clone)]
    pub(crate) struct InsertPeer<S> {
        pub(crate) inner: S,
        pub(crate) peer: SocketAddr,
    }

    impl<S> tower_service::Service<Request<Incoming>> for InsertPeer<S>
    where
        S: tower_service::Service<Request<Incoming>>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

        #[inline]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: Request<Incoming>) -> S::Future {
            req.extensions_mut().insert(PeerAddr(self.peer));
            self.inner.call(req)
        }
    }

    /// `/healthz` and `/metrics`.
    #[derive(Clone)]
    pub(crate) struct Admin {
        pub(crate) metrics: Arc<Metrics>,
    }

    impl tower_service::Service<Request<Incoming>> for Admin {
        type Response = Response<ProxyBody>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<ProxyBody>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<Incoming>) -> Self::Future {
            let (status, ctype, body) = match req.uri().path() {
                "/healthz" => (StatusCode::OK, "text/plain", ProxyBody::full("ok\n")),
                "/metrics" => (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    ProxyBody::full(self.metrics.render()),
                ),
                _ => (StatusCode::NOT_FOUND, "text/plain", ProxyBody::empty()),
            };
            let mut resp = Response::new(body);
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ctype),
            );
            std::future::ready(Ok(resp))
        }
    }
}
