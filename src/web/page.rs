//! The dashboard's page: one minijinja template (autoescaped), its CSS and script, all embedded in
//! the binary, and the page's strings in English and Brazilian Portuguese.
//!
//! The page is rendered once; everything that changes afterwards is fetched by the script from
//! the API and inserted as text (never as HTML), so nothing from the network can become markup.

use super::i18n::{strings, Lang, LANG_COOKIE};
use super::{AppError, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, Environment};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// The template environment.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    pub fn new() -> Pages {
        let mut env = Environment::new();
        // Autoescaping follows the name: `.html` templates escape everything they insert.
        env.add_template("index.html", INDEX)
            .expect("the embedded template is valid (checked by the tests)");
        Pages { env }
    }

    pub fn render_index(&self, lang: Lang) -> Result<String, minijinja::Error> {
        let other = lang.other();
        self.env.get_template("index.html")?.render(context! {
            lang => lang.code(),
            other_lang => other.code(),
            t => strings(lang),
        })
    }
}

impl Default for Pages {
    fn default() -> Self {
        Pages::new()
    }
}

/// `GET /`: the dashboard.
pub async fn index(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (lang, chosen) = Lang::choose(&uri, &headers);
    let html = state.pages.render_index(lang).map_err(AppError::internal)?;
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.code()),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    if chosen {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Strict",
            lang.code()
        )) {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

pub async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

/// `GET /favicon.svg` (and `/favicon.ico`, which browsers ask for on their own).
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

pub async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_renders_in_both_languages() {
        let page = Pages::new().render_index(Lang::PtBr).unwrap();
        assert!(page.contains("lang=\"pt-BR\"") && page.contains("Iniciar"));
        let page = Pages::new().render_index(Lang::En).unwrap();
        assert!(page.contains("lang=\"en\"") && page.contains("Start"));
    }
}
