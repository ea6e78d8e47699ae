//! The operational HTTP listener: `/metrics` in the Prometheus text format and `/healthz`.
//!
//! Both services expose the same two paths so one scrape and one health-check configuration
//! fit either of them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Reports whether the service is healthy; `/healthz` answers 200 when it is, 503 when not.
pub type HealthCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Binds the listener up front so a bad `--metrics-addr` fails at start-up, not later.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/healthz` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: HealthCheck,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, registry, health, Router::new(), shutdown).await
}

/// Serves `/metrics`, `/healthz` and a service's own `routes` until `shutdown` resolves.
pub async fn serve_with(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: HealthCheck,
    routes: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move { render(&registry) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let healthy = health();
                async move {
                    if healthy {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn render(registry: &Registry) -> impl IntoResponse + use<> {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {err}\n"),
        ),
    }
}
