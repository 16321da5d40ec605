//! The dashboard's two languages: which one a request wants, the page's strings, and every
//! sentence the API and its guards answer with, in English and Portuguese ([`Message`]'s
//! constructors; nothing under `web/api/` writes a sentence of its own).
//!
//! Every string the page shows is here (the script gets them as JSON in the page), so a
//! translation is one line; numbers and dates are formatted by the browser's `Intl` for the
//! page's language.

use crate::coordinator::RunId;
use axum::extract::Query;
use axum::http::{header, HeaderMap, Uri};
use axum_extra::extract::cookie::CookieJar;
use std::collections::BTreeMap;

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    PtBr,
}

/// The cookie that keeps the language chosen with the toggle.
pub const LANG_COOKIE: &str = "lang";

#[derive(serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::PtBr => "pt-BR",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::PtBr,
            Lang::PtBr => Lang::En,
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
    /// `Accept-Language` (by quality) that the dashboard has, else English. The flag says
    /// whether `?lang=` chose it (the page then sets the cookie).
    pub fn choose(uri: &Uri, headers: &HeaderMap) -> (Lang, bool) {
        let asked = Query::<LangQuery>::try_from_uri(uri)
            .ok()
            .and_then(|Query(q)| q.lang)
            .and_then(|l| Lang::parse(&l));
        if let Some(l) = asked {
            return (l, true);
        }
        let jar = CookieJar::from_headers(headers);
        if let Some(l) = jar.get(LANG_COOKIE).and_then(|c| Lang::parse(c.value())) {
            return (l, false);
        }
        (Lang::from_accept_language(headers), false)
    }

    fn from_accept_language(headers: &HeaderMap) -> Lang {
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
        tags.iter()
            .find_map(|(_, t)| Lang::parse(t))
            .unwrap_or(Lang::En)
    }
}

/// The page's strings: key, English, Portuguese (Brazil). `{n}` and the like are filled in by
/// the script.
pub const STRINGS: &[(&str, &str, &str)] = &[
    ("title", "piswarm — dashboard", "piswarm — painel"),
    ("server", "Server", "Servidor"),
    ("running", "running", "em execução"),
    ("stopped", "stopped", "parado"),
    ("complete", "complete", "concluído"),
    ("listen", "TCP address", "Endereço TCP"),
    ("uptime", "Uptime", "Tempo ativo"),
    ("clients", "Connected clients", "Clientes conectados"),
    ("local_clients", "Local clients running", "Clientes locais ativos"),
    ("start", "Start", "Iniciar"),
    ("stop", "Stop", "Parar"),
    ("starting", "Starting…", "Iniciando…"),
    ("stopping", "Stopping…", "Parando…"),
    ("started", "Server started.", "Servidor iniciado."),
    ("stopped_msg", "Server stopped; results written.", "Servidor parado; resultados gravados."),
    ("create_clients", "Create clients", "Criar clientes"),
    ("count", "Count", "Quantidade"),
    ("mode", "Mode", "Modo"),
    ("mode_once", "one interval each", "um intervalo cada"),
    ("mode_until_done", "until the job is done", "até o fim do trabalho"),
    ("create", "Create", "Criar"),
    ("created", "{n} clients started ({mode}).", "{n} clientes iniciados ({mode})."),
    ("local_cap", "at most {n} at once", "no máximo {n} ao mesmo tempo"),
    ("job", "Job", "Trabalho"),
    ("terms", "Total terms", "Total de termos"),
    ("open_ended", "open-ended", "sem fim"),
    ("chunk", "Chunk", "Tamanho do bloco"),
    ("new_run", "New run", "Nova execução"),
    ("run_created", "Run {id} started.", "Execução {id} iniciada."),
    ("runs", "Runs", "Execuções"),
    ("run", "Run", "Execução"),
    ("current", "current", "atual"),
    ("run_terms", "{n} terms", "{n} termos"),
    ("run_chunk", "chunk {n}", "bloco {n}"),
    ("back_current", "Back to the current run", "Voltar à execução atual"),
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
    ("progress", "Progress", "Progresso"),
    ("rate", "Rate", "Taxa"),
    ("terms_per_s", "terms/s", "termos/s"),
    ("eta", "Time left", "Tempo restante"),
    ("eta_wait", "estimating…", "estimando…"),
    ("history", "History", "Histórico"),
    ("sort", "Sort", "Ordem"),
    ("sort_arrival_desc", "newest first", "mais recentes primeiro"),
    ("sort_arrival_asc", "oldest first", "mais antigos primeiro"),
    ("sort_interval_asc", "by interval", "por intervalo"),
    ("sort_interval_desc", "by interval, last first", "por intervalo, do último"),
    ("filter_worker", "Client", "Cliente"),
    ("all_workers", "all", "todos"),
    ("state", "State", "Estado"),
    ("state_done", "done", "feitos"),
    ("state_in_flight", "in flight", "em andamento"),
    ("page_size", "Rows", "Linhas"),
    ("jump", "Go to", "Ir para"),
    ("jump_interval", "interval", "intervalo"),
    ("jump_term", "term", "termo"),
    ("go", "Go", "Ir"),
    ("first_page", "First", "Primeira"),
    ("prev_page", "Previous", "Anterior"),
    ("next_page", "Next", "Próxima"),
    ("last_page", "Last", "Última"),
    ("rows_of", "{shown} of {total}", "{shown} de {total}"),
    ("new_results", "{n} new — show", "{n} novos — mostrar"),
    ("worker", "Client", "Cliente"),
    ("address", "Address", "Endereço"),
    ("interval", "Interval", "Intervalo"),
    ("partial", "π partial", "π parcial"),
    ("duration", "Duration", "Duração"),
    ("time", "Time", "Hora"),
    ("since", "Since", "Desde"),
    ("no_results", "No results yet.", "Nenhum resultado ainda."),
    ("no_match", "Nothing matches.", "Nada corresponde."),
    ("workers_table", "Clients connected now", "Clientes conectados agora"),
    ("kind", "Kind", "Tipo"),
    ("connected_since", "Connected", "Conectado"),
    ("accepted", "Accepted", "Aceitos"),
    ("rejected_col", "Rejected", "Rejeitados"),
    ("in_hand", "In hand", "Em mãos"),
    ("strikes", "Strikes", "Advertências"),
    ("backups_col", "Backups won", "Cópias vencidas"),
    ("backups_hint", "Backup copies: at the end of a job, a faster client also gets an interval a slower one holds; the first result counts.", "Cópias de reserva: no fim de um trabalho, um cliente mais rápido também recebe um intervalo que um mais lento tem; o primeiro resultado conta."),
    ("backups_line", "Backup copies: {issued} given to faster clients, {won} of them first ({terms} terms).", "Cópias de reserva: {issued} dadas a clientes mais rápidos, {won} delas primeiro ({terms} termos)."),
    ("allowance", "Most it may hold now", "O máximo que pode ter agora"),
    ("current_rate", "Rate", "Taxa"),
    ("last_seen", "Last seen", "Visto por último"),
    ("no_workers", "No client is connected.", "Nenhum cliente conectado."),
    ("kind_piswarm", "piswarm", "piswarm"),
    ("kind_legacy", "original", "original"),
    ("kind_browser", "browser", "navegador"),
    ("kind_other", "other", "outro"),
    ("join", "Join from a phone or a browser", "Participe por um celular ou navegador"),
    ("join_help", "Open this link (or scan the code) on any device of the network: it computes in the browser, nothing to install.", "Abra este link (ou leia o código) em qualquer aparelho da rede: ele calcula no navegador, sem instalar nada."),
    ("join_unreachable", "This dashboard listens on a loopback address: only this machine can open the link. Serve with --http 0.0.0.0:8080 (or give --public-url) for others.", "Este painel escuta num endereço de loopback: só esta máquina abre o link. Use --http 0.0.0.0:8080 (ou --public-url) para os outros."),
    ("join_token", "The link carries the worker token (after #): share it only with the room. It never gives control of this dashboard.", "O link leva o token dos workers (depois do #): compartilhe só com a turma. Ele nunca dá controle deste painel."),
    ("join_qr", "QR code of the join link", "Código QR do link de participação"),
    ("copy", "Copy", "Copiar"),
    ("copied", "Copied.", "Copiado."),
    ("plots", "Plots", "Gráficos"),
    ("error_plot", "Error against terms covered (log–log)", "Erro em função dos termos (log–log)"),
    ("raw", "raw", "bruta"),
    ("corrected", "corrected", "corrigida"),
    ("corrected_floor", "corrected: {n} points at or below 10⁻¹⁶ (the limit of double precision), drawn on this line", "corrigida: {n} pontos em 10⁻¹⁶ ou abaixo (o limite da precisão dupla), desenhados nesta linha"),
    ("throughput", "Throughput per client (terms/s), fastest first", "Vazão por cliente (termos/s), mais rápidos primeiro"),
    ("more_workers", "+{n} more", "+{n} outros"),
    ("coverage", "Coverage of the job's range", "Cobertura do intervalo do trabalho"),
    ("coverage_tip", "intervals {lo}–{hi}: {done} done, {in_flight} in flight, {given_back} given back, {rejected} rejected, {not_started} not started", "intervalos {lo}–{hi}: {done} feitos, {in_flight} em andamento, {given_back} devolvidos, {rejected} rejeitados, {not_started} não iniciados"),
    ("error_tip", "{terms} terms: error {error}", "{terms} termos: erro {error}"),
    ("done", "done", "feito"),
    ("in_flight", "in flight", "em andamento"),
    ("given_back", "given back", "devolvido"),
    ("rejected", "rejected", "rejeitado"),
    ("not_started", "not started", "não iniciado"),
    ("downloads", "Downloads", "Arquivos"),
    ("live", "live", "ao vivo"),
    ("offline", "reconnecting…", "reconectando…"),
    ("unreachable", "the dashboard cannot be reached (is piswarm serve running?)", "o painel não responde (o piswarm serve está em execução?)"),
    ("offline_why", "unavailable while the dashboard cannot be reached", "indisponível enquanto o painel não responde"),
    ("no_data", "No data yet.", "Sem dados ainda."),
    ("loading", "Loading…", "Carregando…"),
    ("language", "Português", "English"),
    ("error", "Error", "Erro"),
    ("dismiss", "Dismiss", "Fechar"),
    ("ago", "ago", "atrás"),
];

/// The page's strings in one language.
pub fn strings(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    STRINGS
        .iter()
        .map(|&(k, en, pt)| (k, if lang == Lang::En { en } else { pt }))
        .collect()
}

/// The `/join` page's strings: key, English, Portuguese (Brazil).
pub const JOIN_STRINGS: &[(&str, &str, &str)] = &[
    ("title", "piswarm — join the computation", "piswarm — participe do cálculo"),
    ("heading", "Join the computation", "Participe do cálculo"),
    ("other_language", "Português", "English"),
    ("intro", "This page computes pieces of π's Leibniz series for a piswarm run, in your browser. Nothing is installed; close the page to stop.", "Esta página calcula pedaços da série de Leibniz de π para uma execução do piswarm, no seu navegador. Nada é instalado; feche a página para parar."),
    ("name", "Your name", "Seu nome"),
    ("threads", "Threads", "Threads"),
    ("threads_of", "of {n} cores", "de {n} núcleos"),
    ("start", "Start", "Começar"),
    ("pause", "Pause", "Pausar"),
    ("resume", "Resume", "Continuar"),
    ("idle", "Ready. Press Start to compute.", "Pronto. Toque em Começar para calcular."),
    ("connecting", "Connecting…", "Conectando…"),
    ("computing", "Computing with {n} threads.", "Calculando com {n} threads."),
    ("waiting", "Connected; waiting for work.", "Conectado; aguardando trabalho."),
    ("paused", "Paused. Your intervals went back to the others.", "Pausado. Seus intervalos voltaram para os outros."),
    ("reconnecting", "Connection lost; trying again in {s} s. Nothing computed is lost.", "Conexão perdida; tentando de novo em {s} s. Nada do que foi calculado se perde."),
    ("complete", "The run is complete. Thank you!", "A execução terminou. Obrigado!"),
    ("stopping", "The server is stopping; trying again in {s} s.", "O servidor está parando; tentando de novo em {s} s."),
    ("refused_token", "Refused: this link has no token or a wrong one. Ask for the link again.", "Recusado: este link não tem o token ou tem um errado. Peça o link de novo."),
    ("refused", "Refused by the server: {message}", "Recusado pelo servidor: {message}"),
    ("no_workers", "This browser cannot run Web Workers or BigInt: it cannot compute.", "Este navegador não roda Web Workers ou BigInt: não consegue calcular."),
    ("intervals", "Intervals accepted", "Intervalos aceitos"),
    ("rate", "Speed", "Velocidade"),
    ("terms_per_s", "terms/s", "termos/s"),
    ("share", "Your share of the run", "Sua parte da execução"),
    ("run", "Run", "Execução"),
    ("in_hand", "Intervals in hand", "Intervalos em mãos"),
    ("rejected", "Rejected", "Rejeitados"),
    ("open_ended", "open-ended run", "execução sem fim"),
    ("hint", "Keep this page in front: phones slow down pages in the background. If it sleeps, its intervals go to others and it picks up again when it wakes.", "Mantenha esta página à frente: celulares desaceleram páginas em segundo plano. Se ela dormir, seus intervalos vão para outros e ela recomeça ao acordar."),
];

/// The `/join` page's strings in `lang`.
pub fn join_strings(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    JOIN_STRINGS
        .iter()
        .map(|&(k, en, pt)| (k, if lang == Lang::En { en } else { pt }))
        .collect()
}

/// An API error message in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub en: String,
    pub pt: String,
}

impl Message {
    pub fn new(en: impl Into<String>, pt: impl Into<String>) -> Message {
        Message {
            en: en.into(),
            pt: pt.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::PtBr => &self.pt,
        }
    }
}

/// A field of a job, named in an error about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobField {
    Terms,
    Chunk,
}

/// The API's own error sentences.
impl Message {
    pub fn no_such_path() -> Message {
        Message::new(
            "no such path (the API is described at /api/openapi.json)",
            "caminho inexistente (a API está descrita em /api/openapi.json)",
        )
    }

    pub fn method_not_allowed() -> Message {
        Message::new(
            "method not allowed (state-changing requests are POST; reads are GET)",
            "método não permitido (o que muda o estado é POST; leituras são GET)",
        )
    }

    /// A body without `Content-Type: application/json`; `detail` is axum's sentence.
    pub fn json_content_type(detail: String) -> Message {
        Message::new(detail, "o pedido deve ter Content-Type: application/json")
    }

    pub fn json_syntax(detail: String) -> Message {
        let pt = format!("JSON inválido: {detail}");
        Message::new(detail, pt)
    }

    pub fn bad_body(detail: String) -> Message {
        let pt = format!("corpo do pedido inválido: {detail}");
        Message::new(detail, pt)
    }

    pub fn bad_query(detail: String) -> Message {
        Message::new(detail.clone(), format!("parâmetros inválidos: {detail}"))
    }

    /// `{id}` is neither a run number nor `current`.
    pub fn no_such_run_id(id: &str) -> Message {
        Message::new(
            format!("no run '{id}' (a run number or 'current')"),
            format!("não há execução '{id}' (um número de execução ou 'current')"),
        )
    }

    pub fn no_such_run(id: RunId) -> Message {
        Message::new(
            format!("run {id} does not exist"),
            format!("a execução {id} não existe"),
        )
    }

    pub fn client_count_range(max: usize) -> Message {
        Message::new(
            format!("count must be between 1 and {max}"),
            format!("a quantidade deve estar entre 1 e {max}"),
        )
    }

    /// A count written as text that does not parse; `error` is the parser's sentence.
    pub fn bad_count(field: JobField, text: &str, error: &str) -> Message {
        let (en, pt) = match field {
            JobField::Terms => ("terms", "termos"),
            JobField::Chunk => ("chunk", "tamanho do bloco"),
        };
        Message::new(
            format!("{en}: {error}"),
            format!("{pt}: número inválido '{text}'"),
        )
    }

    /// The guards' refusals (`web::guard`).
    pub fn foreign_host(host: &str) -> Message {
        Message::new(
            format!("Host {host} is not this dashboard: open it as http://127.0.0.1 or http://localhost (or set --ui-token)"),
            format!("Host {host} não é este painel: abra-o como http://127.0.0.1 ou http://localhost (ou defina --ui-token)"),
        )
    }

    pub fn token_required() -> Message {
        Message::new(
            "this dashboard requires its token: open the URL printed by piswarm serve, or send Authorization: Bearer TOKEN",
            "este painel exige o seu token: abra o endereço mostrado pelo piswarm serve, ou envie Authorization: Bearer TOKEN",
        )
    }

    pub fn cross_site_fetch() -> Message {
        Message::new(
            "Sec-Fetch-Site is cross-site",
            "Sec-Fetch-Site é cross-site",
        )
    }

    pub fn unreadable_origin() -> Message {
        Message::new("unreadable Origin", "Origin ilegível")
    }

    pub fn foreign_origin(origin: &str) -> Message {
        Message::new(
            format!("Origin {origin} is not this dashboard"),
            format!("a origem {origin} não é este painel"),
        )
    }

    pub fn limit_zero() -> Message {
        Message::new("limit must be at least 1", "limit deve ser pelo menos 1")
    }

    pub fn one_position() -> Message {
        Message::new(
            "give at most one of cursor, before, from and last",
            "informe no máximo um de cursor, before, from e last",
        )
    }
}

impl From<&crate::node::ControlError> for Message {
    fn from(e: &crate::node::ControlError) -> Message {
        use crate::node::ControlError as C;
        let pt = match e {
            C::NotRunning => "o servidor TCP não está em execução: inicie-o primeiro".to_string(),
            C::Bind { addr, source } => format!("não é possível escutar em {addr}: {source}"),
            C::TlsOnly => {
                "não é possível criar clientes locais enquanto o servidor exige TLS".to_string()
            }
            C::TooManyClients { running, max } => format!(
                "{running} clientes locais estão ativos e o máximo é {max}: espere alguns terminarem, ou inicie o serve com um --max-local-clients maior"
            ),
            C::ShuttingDown => "o nó está sendo encerrado".to_string(),
            C::StoreFailed => "o armazenamento não consegue mais gravar resultados; a execução pode ser retomada após reiniciar".to_string(),
            C::Store(_) | C::Coordinator(_) | C::Io(_) => INTERNAL_PT.to_string(),
        };
        Message::new(e.to_string(), pt)
    }
}

impl From<&crate::job::JobError> for Message {
    fn from(e: &crate::job::JobError) -> Message {
        use crate::job::JobError as J;
        let pt = match e {
            J::ZeroTerms => "o número de termos deve ser pelo menos 1".to_string(),
            J::ZeroChunk => "o tamanho do bloco deve ser pelo menos 1".to_string(),
            J::TooManyTerms(n) => format!(
                "{n} termos está além do intervalo suportado (no máximo 2^52 = {})",
                crate::maths::MAX_TERMS
            ),
            J::ChunkTooLarge(n) => format!(
                "um bloco de {n} termos está além do intervalo suportado (no máximo 2^40 = {})",
                crate::maths::MAX_INTERVAL_TERMS
            ),
        };
        Message::new(e.to_string(), pt)
    }
}

/// The generic answer to an internal failure.
pub const INTERNAL_EN: &str = "internal error (see the server's log)";
pub const INTERNAL_PT: &str = "erro interno (veja o registro do servidor)";

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn every_string_in_both_languages() {
        for (k, en, pt) in STRINGS.iter().chain(JOIN_STRINGS) {
            assert!(!en.is_empty() && !pt.is_empty(), "{k}");
        }
        let keys: std::collections::HashSet<_> = STRINGS.iter().map(|s| s.0).collect();
        assert_eq!(keys.len(), STRINGS.len(), "keys are unique");
        let keys: std::collections::HashSet<_> = JOIN_STRINGS.iter().map(|s| s.0).collect();
        assert_eq!(keys.len(), JOIN_STRINGS.len(), "keys are unique");
    }

    #[test]
    fn accept_language_cookie_and_query() {
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
        let uri: Uri = "/?x=1&lang=pt%2DBR".parse().unwrap();
        assert_eq!(
            Lang::choose(&uri, &h),
            (Lang::PtBr, true),
            "percent-decoded"
        );
        let uri: Uri = "/".parse().unwrap();
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; lang=pt-BR"));
        assert_eq!(Lang::choose(&uri, &h), (Lang::PtBr, false));
    }
}
