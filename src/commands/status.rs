//! `piswarm status` and `piswarm stop`: one request to a running dashboard's API, with `ureq`
//! (the dashboard speaks plain HTTP, normally on loopback).

use std::time::Duration;

/// How long one request may take in all.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the dashboard could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Http(#[from] ureq::Error),
    #[error("the request was cut short: {0}")]
    Join(String),
}

/// Sends `method path` to the dashboard at `addr` (HOST:PORT) and returns the status code and
/// the body (error statuses are answers too: their body says why).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), RequestError> {
    let url = format!("http://{addr}{path}");
    let method = method.to_string();
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut response = if method == "POST" {
            let mut req = agent.post(&url).header("Accept", "application/json");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.send_empty()?
        } else {
            let mut req = agent.get(&url).header("Accept", "application/json");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()?
        };
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok((status, body))
    })
    .await
    .map_err(|e| RequestError::Join(e.to_string()))?
}
