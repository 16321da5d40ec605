//! `POST /api/clients`: local clients, started by the dashboard.

use super::{body, ApiResult};
use crate::node::clients::MAX_PER_REQUEST as MAX_LOCAL_CLIENTS;
use crate::web::i18n::Message;
use crate::web::{AppError, AppState, ErrorBody};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a local client works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientMode {
    /// One interval, then leave (the original's client).
    Once,
    /// Until the coordinator says there is no more work.
    UntilDone,
}

impl From<ClientMode> for crate::node::ClientMode {
    fn from(mode: ClientMode) -> Self {
        match mode {
            ClientMode::Once => Self::Once,
            ClientMode::UntilDone => Self::UntilDone,
        }
    }
}

/// `POST /api/clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientsRequest {
    /// 1 to 1000 (and at most `max_local_clients` running at once).
    count: u64,
    mode: ClientMode,
}

/// Clients started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientsCreated {
    pub created: usize,
    pub mode: ClientMode,
    pub names: Vec<String>,
}

#[utoipa::path(post, path = "/api/clients", tag = "control", request_body = ClientsRequest,
    responses(
        (status = 201, description = "Clients started", body = ClientsCreated),
        (status = 409, description = "The server is stopped, TLS-only, or the local-client cap would be exceeded", body = ErrorBody),
        (status = 422, description = "A count out of range or an unknown mode", body = ErrorBody)))]
pub async fn create_clients(
    State(state): State<AppState>,
    payload: Result<Json<ClientsRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ClientsCreated>)> {
    let req = body(payload)?;
    if req.count == 0 || req.count > MAX_LOCAL_CLIENTS as u64 {
        return Err(AppError::Client(
            StatusCode::UNPROCESSABLE_ENTITY,
            Message::client_count_range(MAX_LOCAL_CLIENTS),
        ));
    }
    let names = state
        .node
        .create_clients(req.count as usize, req.mode.into())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ClientsCreated {
            created: names.len(),
            mode: req.mode,
            names,
        }),
    ))
}
