//! Request and response bodies. Requests deny unknown fields; the OpenAPI
//! document is derived from these same types ([`crate::http::ApiDoc`]), so
//! the two cannot drift apart. Every id in and out is a raw dataset id.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?k=10&include_seen=false` on `GET /v1/users/{user}/recommendations`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecommendQuery {
    /// How many items (1 to the service's bound, 1000 by default; default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<i64>,
    /// Keep items the user has interacted with (default false).
    pub include_seen: Option<bool>,
}

/// `POST /v1/recommendations`: recommendations for an anonymous history.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    /// Raw item ids, oldest first; must not be empty. Ids the catalogue
    /// lacks are a 422 naming them.
    #[schema(min_items = 1, max_items = 10000)]
    pub history: Vec<String>,
    /// How many items (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<i64>,
    /// Keep the history's own items in the answer (default false).
    #[serde(default)]
    pub include_seen: Option<bool>,
}

/// One recommended item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScoredItem {
    pub item: String,
    /// The model's score (higher is better; comparable within one answer).
    pub score: f32,
    /// The item's title, when the dataset has titles.
    pub title: Option<String>,
}

/// A recommendation answer, best first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    /// The user asked about; null for an anonymous history.
    pub user: Option<String>,
    pub items: Vec<ScoredItem>,
}

/// One interaction to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionIn {
    /// Raw item id; must be in the run's catalogue (else a 422 naming it).
    pub item: String,
    /// When it happened (seconds since the epoch, as the dataset's); stored,
    /// not used for ordering (appended items follow arrival order).
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// A client id for idempotency: an id already stored is a duplicate and
    /// is not applied again. Unique across all users.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub event_id: Option<String>,
}

/// `POST /v1/users/{user}/interactions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionsRequest {
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<InteractionIn>,
}

/// How an interactions request went; answered only after the commit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InteractionsAccepted {
    pub accepted: usize,
    pub duplicates: usize,
}

/// An item of the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemInfo {
    pub item: String,
    pub title: Option<String>,
    /// The item as the dataset's text template renders it (what the
    /// embedder and HSU read); null without a template.
    pub text: Option<String>,
}

/// A user's history as the model reads it: the dataset's sequence, then
/// the interactions appended through the service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub user: String,
    /// Oldest first.
    pub history: Vec<ItemInfo>,
    /// How many of `history` come from the dataset (the rest were appended).
    pub from_dataset: usize,
}

/// One HSU stage of a user's trail (the paper's case-study tables).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InterestStage {
    /// 0-based (stage 0 is the paper's "stage 1").
    pub stage: u32,
    /// `reason` (the first stage), `add`, `delete`, `update` or `retain`;
    /// null for a stage whose selection failed or a one-call summary.
    pub operation: Option<String>,
    /// Why, as the back-end answered.
    pub explanation: String,
    /// Raw item ids of the stage, oldest first.
    pub items: Vec<String>,
    /// The interests after this stage.
    pub interests: Vec<String>,
    /// `ok`, or `select_failed` / `edit_failed` (previous interests kept).
    pub status: String,
}

/// `GET /v1/users/{user}/interests`: a user's HSU interests and trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInterests {
    pub user: String,
    /// The HSU config the run names.
    pub config: String,
    /// The store variant the trail comes from: `<variant>.online` once the
    /// service has run stages for the user, else the offline run's.
    pub variant: String,
    /// Items per stage (as the offline run cut them).
    pub stage_length: usize,
    /// The user's history as the model reads it (dataset + appended).
    pub history_length: usize,
    /// Complete stages in that history; only complete stages are run.
    pub complete_stages: usize,
    /// The latest usable interests (empty when none).
    pub interests: Vec<String>,
    pub stages: Vec<InterestStage>,
    /// Whether the user waits for the HSU worker or is being updated.
    pub pending: bool,
    /// Which semantic embedding recommendations read: `online` (embedded
    /// from the online interests), `training` (the run's own row),
    /// `cold_start` (zero vector); null when the model reads none.
    pub embedding: Option<String>,
}

/// `POST /v1/admin/reload`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// A finished run folder, as a path on the server.
    pub run: String,
}

/// The run being served.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunInfo {
    pub run: String,
    pub name: String,
    pub dataset: String,
    pub backbone: String,
    pub items: u32,
    pub users: usize,
    /// The build that trained it.
    pub build: Option<String>,
    /// A user id of the dataset, for trying the service.
    pub example_user: Option<String>,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub status: String,
}
