//! Handlers, type-erased: async functions and tower services behind one signature.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tower_service::Service;

use crate::body::Body;
use crate::error::BoxError;
use crate::request::Request;
use crate::response::{internal_error, IntoResponse, Response};
use crate::service_upgrade::ServiceUpgrade;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What the dispatch table holds for each route.
pub(crate) type BoxHandler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;

pub(crate) fn from_fn<F, Fut>(f: F) -> BoxHandler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoResponse,
{
    Arc::new(move |req| {
        let fut = f(req);
        Box::pin(async move { fut.await.into_response() })
    })
}

/// A tower service: cloned for each request (the usual tower pattern, cheap for an axum
/// `Router`), driven to readiness, then called. The mutex only makes a `Send` service
/// shareable between the tasks that clone it; it is held for the clone alone. An upgrade
/// request goes through hyper first, for its `OnUpgrade` ([`ServiceUpgrade`]).
pub(crate) fn from_service<S, B>(service: S) -> BoxHandler
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = Mutex::new(service);
    Arc::new(move |mut req: Request| {
        let mut svc = service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            if let Err(e) = poll_fn(|cx| svc.poll_ready(cx)).await {
                let e: BoxError = e.into();
                tracing::error!(error = %e, "service not ready");
                return internal_error();
            }
            let upgrade = req.take_upgrade();
            let mut req: http::Request<Body> = req.into();
            let upgrade = match upgrade {
                Some(upgraded) => match ServiceUpgrade::prepare(&mut req, upgraded).await {
                    Ok(upgrade) => Some(upgrade),
                    Err(e) => {
                        tracing::error!(error = %e, "upgrade not prepared");
                        return internal_error();
                    }
                },
                None => None,
            };
            match svc.call(req).await {
                Ok(res) => {
                    let res = res.into_response();
                    if let Some(upgrade) = upgrade {
                        upgrade.answered(res.status());
                    }
                    res
                }
                Err(e) => {
                    let e: BoxError = e.into();
                    tracing::error!(error = %e, "service failed");
                    internal_error()
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PathParams;
    use crate::Json;
    use axum::extract::{Extension, Path};
    use axum::routing::{get, post};
    use http::StatusCode;

    fn request(method: &str, uri: &str, body: &'static str) -> Request {
        Request::from(
            http::Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .extension(PathParams::from_iter([("rest", &uri[5..])]))
                .body(Body::from(body))
                .unwrap(),
        )
    }

    async fn run(h: &BoxHandler, req: Request) -> (StatusCode, http::HeaderMap, Bytes) {
        let (s, h, b) = h(req).await.into_parts();
        (s, h, b.collect_bytes().await.unwrap())
    }

    #[tokio::test]
    async fn closures_and_fns_become_handlers() {
        async fn hello(req: Request) -> Json<serde_json::Value> {
            Json(serde_json::json!({ "path": req.path() }))
        }
        let h = from_fn(hello);
        let (s, _, b) = run(&h, request("GET", "/api/x", "")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &br#"{"path":"/api/x"}"#[..]));

        let h = from_fn(|mut req: Request| async move {
            let v: serde_json::Value = req.json().await?;
            Ok::<_, crate::Error>(Json(v))
        });
        let (s, _, b) = run(&h, request("POST", "/api/x", "[1]")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &b"[1]"[..]));
        let (s, _, _) = run(&h, request("POST", "/api/x", "[1")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn an_axum_router_runs_unchanged() {
        let router = axum::Router::new()
            .route(
                "/api/users/{id}",
                get(|Path(id): Path<u32>| async move { format!("user {id}") }),
            )
            .route(
                "/api/echo",
                post(|body: axum::body::Bytes| async move { body }),
            )
            .route(
                "/api/params",
                get(|Extension(p): Extension<PathParams>| async move {
                    p.get("rest").unwrap_or_default().to_owned()
                }),
            );
        let h = from_service(router);

        let (s, _, b) = run(&h, request("GET", "/api/users/7", "")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &b"user 7"[..]));

        let (s, _, b) = run(&h, request("POST", "/api/echo", "payload")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &b"payload"[..]));

        let (s, _, b) = run(&h, request("GET", "/api/params", "")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &b"params"[..]));

        let (s, _, _) = run(&h, request("GET", "/api/missing", "")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    /// axum's `ConnectInfo` extractor behind `.service(...)`: it answered 500 before the SDK
    /// gave the request the client's address.
    #[tokio::test]
    async fn axum_connect_info_gets_the_client_address_the_gateway_forwarded() {
        use axum::extract::ConnectInfo;
        use std::net::SocketAddr;

        let router = axum::Router::new().route(
            "/api/whoami",
            get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.to_string() }),
        );
        let h = from_service(router);
        let forwarded = |xff: &str| {
            Request::from(
                http::Request::get("/api/whoami")
                    .header("x-forwarded-for", xff)
                    .body(Body::empty())
                    .unwrap(),
            )
        };
        // The gateway appends the peer it accepted; what came before is the client's word.
        let (s, _, b) = run(&h, forwarded("198.51.100.7, 203.0.113.9")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &b"203.0.113.9:0"[..]));
        let (s, _, b) = run(&h, forwarded("2001:db8::1")).await;
        assert_eq!((s, &b[..]), (StatusCode::OK, &b"[2001:db8::1]:0"[..]));
        // Without the header there is no address to give, as axum says with a 500.
        let (s, _, _) = run(&h, request("GET", "/api/whoami", "")).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[derive(Clone)]
    struct Failing;

    impl Service<http::Request<Body>> for Failing {
        type Response = http::Response<Body>;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<http::Response<Body>, std::io::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::ready(Err(std::io::Error::other("backend down")))
        }
    }

    #[tokio::test]
    async fn a_service_error_is_500() {
        let h = from_service(Failing);
        let (s, _, b) = run(&h, request("GET", "/api/x", "")).await;
        assert_eq!(
            (s, &b[..]),
            (StatusCode::INTERNAL_SERVER_ERROR, &b"internal error"[..])
        );
    }
}
