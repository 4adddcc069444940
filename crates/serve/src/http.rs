//! The routes: thin handlers (parse, call one [`Service`] method, answer),
//! extractors that turn axum's rejections into the service's JSON errors,
//! the bearer-token gate on write and admin routes, per-route metrics, and
//! the OpenAPI document derived from the handlers and body types.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use crate::error::ServeError;
use crate::service::Service;
use crate::types::{
    ErrorBody, HistoryRequest, InteractionsAccepted, InteractionsRequest, ItemInfo, RecommendQuery,
    Recommendations, ReloadRequest, RunInfo, Status, UserInfo, UserInterests,
};

type Svc = State<Arc<Service>>;

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A JSON body whose rejections (malformed JSON, wrong types, unknown
/// fields, non-UTF-8, wrong content type, too large) are JSON errors with
/// axum's status and message.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ServeError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(ServeError::Rejected {
                status: r.status(),
                message: r.body_text(),
            }),
        }
    }
}

/// Path parameters, rejected as JSON errors (e.g. a non-UTF-8 id).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ServeError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Params(v)),
            Err(r) => Err(ServeError::Rejected {
                status: r.status(),
                message: r.body_text(),
            }),
        }
    }
}

/// A query string, rejected as JSON errors naming the parameter.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ServeError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryOf(v)),
            Err(r) => Err(ServeError::Rejected {
                status: r.status(),
                message: r.body_text(),
            }),
        }
    }
}

/// The service's routes. Write and admin routes sit behind the bearer
/// token; every route is counted and timed.
pub fn router(service: Arc<Service>) -> Router {
    let guarded = Router::new()
        .route("/v1/users/{user}/interactions", post(add_interactions))
        .route("/v1/admin/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(
            service.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/run", get(run_info))
        .route("/v1/users/{user}", get(user))
        .route("/v1/users/{user}/recommendations", get(recommend_user))
        .route("/v1/users/{user}/interests", get(interests))
        .route("/v1/recommendations", post(recommend_history))
        .route("/v1/items/{item}", get(item))
        .merge(guarded)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(service.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(service.clone(), track))
        .with_state(service)
}

/// Counts and times every request under its route template (`/v1/users/{user}`),
/// never the concrete path, so ids do not become label values.
async fn track(State(svc): Svc, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &svc.metrics;
    m.latency
        .with_label_values(&[&route])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .inc();
    resp
}

async fn require_token(State(svc): Svc, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match svc.authorize(header) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn not_found(req: Request) -> ServeError {
    ServeError::NotFound(format!(
        "no route {} {} (see /openapi.json)",
        req.method(),
        req.uri().path()
    ))
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Status)))]
async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// The service binds only after its run is loaded, so answering at all
/// means ready; this route exists for orchestrators that ask.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The run is loaded and scoring", body = Status)))]
async fn readyz() -> Json<Status> {
    Json(Status {
        status: "ready".into(),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String,
               content_type = "text/plain")))]
async fn metrics(State(svc): Svc) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        svc.metrics.render(),
    )
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The web page", body = String, content_type = "text/html")))]
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

#[utoipa::path(get, path = "/v1/run", tag = "recommend",
    responses((status = 200, description = "The run being served", body = RunInfo)))]
async fn run_info(State(svc): Svc) -> Json<RunInfo> {
    Json(svc.info())
}

#[utoipa::path(get, path = "/v1/users/{user}/recommendations", tag = "recommend",
    params(("user" = String, Path, description = "Raw user id", min_length = 1, max_length = 256), RecommendQuery),
    responses(
        (status = 200, description = "Top-K items, best first", body = Recommendations),
        (status = 400, description = "A bad k or query parameter", body = ErrorBody),
        (status = 404, description = "Unknown user (no cold-start fallback)", body = ErrorBody),
        (status = 503, description = "The scoring queue is full", body = ErrorBody)))]
async fn recommend_user(
    State(svc): Svc,
    Params(user): Params<String>,
    QueryOf(q): QueryOf<RecommendQuery>,
) -> Result<Json<Recommendations>, ServeError> {
    let include = q.include_seen.unwrap_or(false);
    Ok(Json(svc.recommend_user(&user, q.k, include).await?))
}

#[utoipa::path(post, path = "/v1/recommendations", tag = "recommend",
    request_body = HistoryRequest,
    responses(
        (status = 200, description = "Top-K items for the history, best first", body = Recommendations),
        (status = 400, description = "Malformed body, empty or too long history, bad k", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Unknown items, named", body = ErrorBody),
        (status = 503, description = "The scoring queue is full", body = ErrorBody)))]
async fn recommend_history(
    State(svc): Svc,
    Body(req): Body<HistoryRequest>,
) -> Result<Json<Recommendations>, ServeError> {
    let include = req.include_seen.unwrap_or(false);
    Ok(Json(
        svc.recommend_history(&req.history, req.k, include).await?,
    ))
}

#[utoipa::path(post, path = "/v1/users/{user}/interactions", tag = "feedback",
    params(("user" = String, Path, description = "Raw user id; a new one is created", min_length = 1, max_length = 256)),
    request_body = InteractionsRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Committed to the store", body = InteractionsAccepted),
        (status = 400, description = "Malformed body or a bound broken", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "Writes are disabled (no token configured)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Unknown items, named; nothing written", body = ErrorBody)))]
async fn add_interactions(
    State(svc): Svc,
    Params(user): Params<String>,
    Body(req): Body<InteractionsRequest>,
) -> Result<Json<InteractionsAccepted>, ServeError> {
    Ok(Json(svc.interact(&user, req.items).await?))
}

#[utoipa::path(get, path = "/v1/items/{item}", tag = "recommend",
    params(("item" = String, Path, description = "Raw item id", min_length = 1, max_length = 256)),
    responses(
        (status = 200, description = "The item", body = ItemInfo),
        (status = 400, description = "An empty or over-long id", body = ErrorBody),
        (status = 404, description = "Unknown item", body = ErrorBody)))]
async fn item(State(svc): Svc, Params(item): Params<String>) -> Result<Json<ItemInfo>, ServeError> {
    Ok(Json(svc.item(&item)?))
}

#[utoipa::path(get, path = "/v1/users/{user}", tag = "recommend",
    params(("user" = String, Path, description = "Raw user id", min_length = 1, max_length = 256)),
    responses(
        (status = 200, description = "The user's history as the model reads it", body = UserInfo),
        (status = 400, description = "An empty or over-long id", body = ErrorBody),
        (status = 404, description = "Unknown user", body = ErrorBody)))]
async fn user(State(svc): Svc, Params(user): Params<String>) -> Result<Json<UserInfo>, ServeError> {
    Ok(Json(svc.user(&user)?))
}

#[utoipa::path(get, path = "/v1/users/{user}/interests", tag = "recommend",
    params(("user" = String, Path, description = "Raw user id", min_length = 1, max_length = 256)),
    responses(
        (status = 200, description = "The user's HSU interests, stage trail, whether an \
            update is pending and which semantic embedding scoring reads", body = UserInterests),
        (status = 400, description = "An empty or over-long id", body = ErrorBody),
        (status = 404, description = "Unknown user, or a run without HSU interests", body = ErrorBody),
        (status = 500, description = "The HSU store failed", body = ErrorBody)))]
async fn interests(
    State(svc): Svc,
    Params(user): Params<String>,
) -> Result<Json<UserInterests>, ServeError> {
    Ok(Json(svc.interests(&user)?))
}

#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin",
    request_body = ReloadRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new run is served", body = RunInfo),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "Admin routes are disabled (no token configured)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "The folder cannot be served; the old run stays", body = ErrorBody)))]
async fn reload(
    State(svc): Svc,
    Body(req): Body<ReloadRequest>,
) -> Result<Json<RunInfo>, ServeError> {
    Ok(Json(svc.reload(&req.run).await?))
}

/// Adds the bearer scheme the write routes name.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI 3 document served at `/openapi.json`, derived from the
/// handlers' annotations and the body types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hsuga serve",
        description = "Top-K sequential recommendations from a finished hsuga run; \
                       interactions in. Ids are the dataset's raw ids."
    ),
    paths(
        page, healthz, readyz, metrics, openapi, run_info, user, recommend_user,
        recommend_history, add_interactions, item, interests, reload
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;
