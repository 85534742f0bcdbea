//! `GET /api/v1/datasets`, `GET /api/v1/datasets/{id}` and `GET /api/v1/lineage`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;

use super::dto::{
    self, Dataset, DatasetDetail, DatasetUpdate, Lineage, LineageEdge, LineageNode, Page,
};
use super::error::{ApiError, ApiResult};
use super::extract::{PathParam, QueryParams};
use super::metric_routes::freshness_dto;
use super::params::Params;
use super::ApiState;
use crate::domain::freshness_state::DatasetState;
use crate::store::dataset_views::{self, DatasetSummary};
use crate::store::metric_views;

fn dataset_dto(d: DatasetSummary) -> Dataset {
    Dataset {
        id: d.id.to_string(),
        name: d.name,
        description: d.description,
        bucket: d.bucket,
        series: d.series,
        metric_count: d.metric_count,
        newest_update_at: d.newest_update_at,
        expectation: d.expectation,
        freshness: d.freshness.map(freshness_dto),
    }
}

#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets",
    params(
        ("freshness" = Option<String>, Query, description = "on_time | late | unknown: datasets with an expectation in this freshness state"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses((status = 200, body = Page<Dataset>), (status = 400, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn list(State(s): State<ApiState>, q: QueryParams) -> ApiResult<Page<Dataset>> {
    let p = Params::new(q, &["freshness", "limit", "cursor"])?;
    let limit = p.limit()?;
    let cursor = p.text("cursor")?;
    let freshness: Option<DatasetState> = p.parsed("freshness")?;
    let read = Page::<Dataset>::rows_to_read(limit);
    let rows = dataset_views::list(&s.pool, cursor.as_deref(), freshness, read).await?;
    Ok(Json(Page::keyset(
        rows,
        limit,
        |d| d.id.to_string(),
        dataset_dto,
    )))
}

#[utoipa::path(get, path = "/api/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = DatasetDetail), (status = 404, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn get(State(s): State<ApiState>, PathParam(id): PathParam) -> ApiResult<DatasetDetail> {
    let d = dataset_views::get(&s.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no dataset with id {id:?}")))?;
    let (metrics, updates) = futures::try_join!(
        dataset_views::dependent_metrics(&s.pool, &id),
        dataset_views::recent_updates(&s.pool, &id, 20)
    )?;
    Ok(Json(DatasetDetail {
        dataset: dataset_dto(d),
        metrics,
        updates: updates
            .into_iter()
            .map(|u| DatasetUpdate {
                id: u.id.to_string(),
                version_manifest_path: u.version_manifest_path,
                projections_path: u.projections_path,
                bucket: u.bucket,
                received_at: u.created_at,
            })
            .collect(),
    }))
}

/// Edges returned at most; the whole graph of a large catalog is asked for in parts.
const MAX_EDGES: i64 = 5_000;

#[utoipa::path(get, path = "/api/v1/lineage", tag = "datasets",
    params(("around" = Option<String>, Query, description = "a metric code or dataset id: only its edges")),
    responses((status = 200, body = Lineage), (status = 404, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn lineage(State(s): State<ApiState>, q: QueryParams) -> ApiResult<Lineage> {
    let p = Params::new(q, &["around"])?;
    let around = p.text("around")?;
    if let Some(a) = &around {
        if !metric_views::exists(&s.pool, a).await? {
            return Err(ApiError::not_found(format!(
                "no metric or dataset named {a:?}"
            )));
        }
    }
    let (edges, truncated) = metric_views::lineage(&s.pool, around.as_deref(), MAX_EDGES).await?;
    let mut nodes: BTreeMap<String, LineageNode> = BTreeMap::new();
    let datasets: Vec<_> = edges.iter().map(|(d, _)| d.clone()).collect();
    let names = metric_views::dataset_names(&s.pool, &datasets).await?;
    for (d, m) in &edges {
        let label = names
            .get(d)
            .cloned()
            .flatten()
            .unwrap_or_else(|| d.to_string());
        nodes
            .entry(format!("dataset:{d}"))
            .or_insert_with(|| LineageNode {
                id: format!("dataset:{d}"),
                kind: "dataset".into(),
                label,
            });
        nodes
            .entry(format!("metric:{m}"))
            .or_insert_with(|| LineageNode {
                id: format!("metric:{m}"),
                kind: "metric".into(),
                label: m.clone(),
            });
    }
    Ok(Json(Lineage {
        nodes: nodes.into_values().collect(),
        edges: edges
            .into_iter()
            .map(|(d, m)| LineageEdge {
                from: format!("dataset:{d}"),
                to: format!("metric:{m}"),
            })
            .collect(),
        truncated,
    }))
}
