//! The dashboard's page: one minijinja template (autoescaped), its CSS and script, all embedded in
//! the binary, and the page's strings in English and Brazilian Portuguese.
//!
//! The page is rendered once; everything that changes afterwards is fetched by the script from
//! the API and inserted as text (never as HTML), so nothing from the network can become markup.

use super::{cookie, query_param, AppError, AppState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, Environment};
use std::collections::BTreeMap;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// A language of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    PtBr,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::PtBr => "pt-BR",
        }
    }

    fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        if s == "en" || s.starts_with("en-") {
            Some(Lang::En)
        } else if s == "pt" || s.starts_with("pt-") || s == "pt_br" {
            Some(Lang::PtBr)
        } else {
            None
        }
    }

    /// The language for a request: `?lang=`, else the `lang` cookie, else the first language of
    /// `Accept-Language` (by quality) that the page has, else English.
    pub fn choose(uri: &Uri, headers: &HeaderMap) -> (Lang, bool) {
        if let Some(l) = uri
            .query()
            .and_then(|q| query_param(q, "lang"))
            .and_then(|l| Lang::parse(&l))
        {
            return (l, true);
        }
        if let Some(l) = cookie(headers, "lang").and_then(Lang::parse) {
            return (l, false);
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut tags: Vec<(f32, &str)> = accept
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let tag = it.next()?.trim();
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        tags.sort_by(|a, b| b.0.total_cmp(&a.0));
        let lang = tags
            .iter()
            .find_map(|(_, t)| Lang::parse(t))
            .unwrap_or(Lang::En);
        (lang, false)
    }
}

/// The page's strings: key, English, Portuguese (Brazil).
const STRINGS: &[(&str, &str, &str)] = &[
    ("title", "piswarm — dashboard", "piswarm — painel"),
    ("server", "Server", "Servidor"),
    ("running", "running", "em execução"),
    ("stopped", "stopped", "parado"),
    ("listen", "TCP address", "Endereço TCP"),
    ("uptime", "Uptime", "Tempo ativo"),
    ("clients", "Connected clients", "Clientes conectados"),
    ("local_clients", "Local clients", "Clientes locais"),
    ("start", "Start", "Iniciar"),
    ("stop", "Stop", "Parar"),
    ("create_clients", "Create clients", "Criar clientes"),
    ("count", "Count", "Quantidade"),
    ("mode", "Mode", "Modo"),
    ("mode_once", "one interval each", "um intervalo cada"),
    (
        "mode_until_done",
        "until the job is done",
        "até o fim do trabalho",
    ),
    ("create", "Create", "Criar"),
    ("job", "Job", "Trabalho"),
    ("terms", "Total terms", "Total de termos"),
    ("open_ended", "open-ended", "sem fim"),
    ("chunk", "Chunk", "Tamanho do bloco"),
    ("new_run", "New run", "Nova execução"),
    ("runs", "Runs", "Execuções"),
    ("run", "Run", "Execução"),
    ("current", "current", "atual"),
    ("viewing", "Viewing run", "Exibindo execução"),
    (
        "back_current",
        "Back to the current run",
        "Voltar à execução atual",
    ),
    ("final_result", "Final result", "Resultado final"),
    ("workers", "Clients", "Clientes"),
    ("terms_covered", "Terms covered", "Termos calculados"),
    ("intervals", "Intervals", "Intervalos"),
    ("even_sum", "Sum of evens", "Soma dos pares"),
    ("odd_sum", "Sum of odds", "Soma dos ímpares"),
    ("pi", "π estimate", "Estimativa de π"),
    ("pi_error", "Error versus π", "Erro em relação a π"),
    ("digits", "Correct digits", "Dígitos corretos"),
    ("pi_corrected", "Corrected estimate", "Estimativa corrigida"),
    ("rate", "Rate", "Taxa"),
    ("eta", "ETA", "Tempo restante"),
    ("complete", "complete", "concluído"),
    ("history", "History", "Histórico"),
    ("older", "Older results", "Resultados anteriores"),
    ("worker", "Worker", "Cliente"),
    ("address", "Address", "Endereço"),
    ("interval", "Interval", "Intervalo"),
    ("partial", "π partial", "π parcial"),
    ("duration", "Duration", "Duração"),
    ("time", "Time", "Hora"),
    ("plots", "Plots", "Gráficos"),
    (
        "error_plot",
        "Error against terms covered (log–log)",
        "Erro em função dos termos (log–log)",
    ),
    ("raw", "raw", "bruta"),
    ("corrected", "corrected", "corrigida"),
    (
        "throughput",
        "Throughput per worker (terms/s)",
        "Vazão por cliente (termos/s)",
    ),
    (
        "coverage",
        "Coverage of the job's range",
        "Cobertura do intervalo do trabalho",
    ),
    ("done", "done", "feito"),
    ("in_flight", "in flight", "em andamento"),
    ("given_back", "given back", "devolvido"),
    ("rejected", "rejected", "rejeitado"),
    ("not_started", "not started", "não iniciado"),
    ("downloads", "Downloads", "Downloads"),
    ("live", "live", "ao vivo"),
    ("offline", "reconnecting…", "reconectando…"),
    ("no_results", "No results yet.", "Nenhum resultado ainda."),
    ("no_data", "No data yet.", "Sem dados ainda."),
    ("language", "Português", "English"),
    ("error", "Error", "Erro"),
];

fn strings(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    STRINGS
        .iter()
        .map(|&(k, en, pt)| (k, if lang == Lang::En { en } else { pt }))
        .collect()
}

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
        let other = match lang {
            Lang::En => Lang::PtBr,
            Lang::PtBr => Lang::En,
        };
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
        if let Ok(v) =
            HeaderValue::from_str(&format!("lang={}; Path=/; SameSite=Strict", lang.code()))
        {
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
    fn every_string_in_both_languages() {
        for (k, en, pt) in STRINGS {
            assert!(!en.is_empty() && !pt.is_empty(), "{k}");
        }
        let page = Pages::new().render_index(Lang::PtBr).unwrap();
        assert!(page.contains("lang=\"pt-BR\"") && page.contains("Iniciar"));
    }

    #[test]
    fn accept_language() {
        let uri: Uri = "/".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("pt-BR,pt;q=0.9,en;q=0.8"),
        );
        assert_eq!(Lang::choose(&uri, &h).0, Lang::PtBr);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr, en;q=0.5, pt;q=0.4"),
        );
        assert_eq!(Lang::choose(&uri, &h).0, Lang::En);
        let uri: Uri = "/?lang=pt-BR".parse().unwrap();
        assert_eq!(Lang::choose(&uri, &h), (Lang::PtBr, true));
    }
}
