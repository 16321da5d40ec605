//! The dashboard's page: one minijinja template (autoescaped), its CSS and scripts, all embedded in
//! the binary, and the page's strings in English and Brazilian Portuguese.
//!
//! The page is rendered once; everything that changes afterwards is fetched by the script from
//! the API and inserted as text (never as HTML), so nothing from the network can become markup.

use super::i18n::{join_strings, strings, Lang, LANG_COOKIE};
use super::{AppError, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, Environment};

const INDEX: &str = include_str!("assets/index.html");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON: &str = include_str!("assets/favicon.svg");
const JOIN_HTML: &str = include_str!("assets/join.html");

/// The dashboard's scripts, by path: ES modules (the page loads app.js, which imports the others
/// by these paths).
pub const SCRIPTS: [(&str, &str); 3] = [
    ("/assets/app.js", include_str!("assets/app.js")),
    ("/assets/format.js", include_str!("assets/format.js")),
    ("/assets/plots.js", include_str!("assets/plots.js")),
];

/// The dashboard's Content-Security-Policy: its own script and style only.
const INDEX_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";
/// The join page's: Web Workers from this origin only (no `blob:` workers), and its socket back
/// to it.
const JOIN_CSP: &str = "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

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
        env.add_template("join.html", JOIN_HTML)
            .expect("the embedded template is valid (checked by the tests)");
        Pages { env }
    }

    pub fn render_index(&self, lang: Lang) -> Result<String, minijinja::Error> {
        self.render("index.html", lang, strings(lang))
    }

    /// The `/join` page (web::join).
    pub fn render_join(&self, lang: Lang) -> Result<String, minijinja::Error> {
        self.render("join.html", lang, join_strings(lang))
    }

    fn render(
        &self,
        name: &str,
        lang: Lang,
        t: std::collections::BTreeMap<&'static str, &'static str>,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context! {
            lang => lang.code(),
            other_lang => lang.other().code(),
            t => t,
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
    Ok(page_response(html, INDEX_CSP, lang, chosen))
}

/// `GET /join` (web::join): the page other devices open, in the visitor's language.
pub async fn join(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (lang, chosen) = Lang::choose(&uri, &headers);
    let html = state.pages.render_join(lang).map_err(AppError::internal)?;
    Ok(page_response(html, JOIN_CSP, lang, chosen))
}

/// A rendered page with its policy, its language, and the language cookie when `?lang=` chose it.
fn page_response(html: String, csp: &'static str, lang: Lang, chosen: bool) -> Response {
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
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
    response
}

/// An embedded file as a response of type `kind`.
pub(super) fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// One of [`SCRIPTS`].
pub fn script(body: &'static str) -> Response {
    asset("text/javascript; charset=utf-8", body)
}

/// `GET /favicon.svg` (and `/favicon.ico`, which browsers ask for on their own).
pub async fn favicon() -> Response {
    let mut response = asset("image/svg+xml", FAVICON);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400"),
    );
    response
}

pub async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_renders_in_both_languages() {
        let join = Pages::new().render_join(Lang::PtBr).unwrap();
        assert!(join.contains("lang=\"pt-BR\"") && join.contains("Participe"));
        let page = Pages::new().render_index(Lang::PtBr).unwrap();
        assert!(page.contains("lang=\"pt-BR\"") && page.contains("Iniciar"));
        let page = Pages::new().render_index(Lang::En).unwrap();
        assert!(page.contains("lang=\"en\"") && page.contains("Start"));
    }
}
