//! The web console at `/console`: server-rendered pages (minijinja) over the same APIs every
//! client uses. A user signs in with an access key; the console keeps the key pair in memory
//! for the session (never on disk, never in logs) and signs each API call it makes with it, so
//! every page and action passes the front's authentication and its single authorization point
//! exactly as the AWS CLI would: a read-only user sees, and is refused changes.
//!
//! Sessions: a random id in a cookie (`HttpOnly`, `SameSite=Strict`, `Path=/console`), twelve
//! hours; every form that changes something carries the session's CSRF token.

mod pages;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_agent::client::{ApiClient, Service};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::Value;

const COOKIE: &str = "gantry_console";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// One signed-in user.
#[derive(Clone)]
pub(crate) struct Session {
    pub api: ApiClient,
    /// The caller's ARN, as STS names it.
    pub who: String,
    pub csrf: String,
    expires: Instant,
}

/// The console's state: templates, the API endpoint and the sessions.
pub struct Console {
    env: minijinja::Environment<'static>,
    endpoint: String,
    region: String,
    sessions: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill(b.as_mut_slice());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `family:revision` of a task definition ARN (the `short` filter).
fn short(v: String) -> String {
    v.rsplit('/').next().unwrap_or(&v).to_owned()
}

/// Epoch seconds (or milliseconds) as UTC time (the `when` filter).
fn when(v: minijinja::Value) -> String {
    let Some(mut secs) = f64::try_from(v).ok() else {
        return String::new();
    };
    if secs > 1e11 {
        secs /= 1000.0;
    }
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

impl Console {
    pub fn new(endpoint: String, region: String) -> anyhow::Result<Self> {
        let mut env = minijinja::Environment::new();
        for (name, text) in templates::TEMPLATES
            .iter()
            .chain(std::iter::once(&templates::TASKS_PARTIAL))
        {
            env.add_template(name, text)?;
        }
        env.add_filter("short", short);
        env.add_filter("when", when);
        Ok(Self {
            env,
            endpoint,
            region,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Renders `name` with `ctx`; `session` adds the signed-in user and the CSRF token.
    pub(crate) fn render(
        &self,
        status: StatusCode,
        name: &str,
        session: Option<&Session>,
        mut ctx: Value,
    ) -> Response {
        if let (Some(s), Some(obj)) = (session, ctx.as_object_mut()) {
            obj.insert("who".into(), s.who.clone().into());
            obj.insert("csrf".into(), s.csrf.clone().into());
        }
        let html = self
            .env
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from_serialize(&ctx)));
        match html {
            Ok(html) => (
                status,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "console page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render",
                )
                    .into_response()
            }
        }
    }

    /// The session of a request's cookie, if live.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_owned())?;
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.get(&id).cloned().map(|s| (id, s))
    }
}

/// The console's routes, under `/console`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(|| async { redirect("/console/") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/", get(pages::clusters))
        .route("/console/clusters/{cluster}", get(pages::cluster))
        .route(
            "/console/clusters/{cluster}/services/{service}",
            get(pages::service),
        )
        .route(
            "/console/clusters/{cluster}/services/{service}/scale",
            post(pages::scale),
        )
        .route(
            "/console/clusters/{cluster}/services/{service}/deploy",
            post(pages::force_deployment),
        )
        .route("/console/clusters/{cluster}/tasks/{task}", get(pages::task))
        .route(
            "/console/clusters/{cluster}/tasks/{task}/logs",
            get(pages::task_logs),
        )
        .route(
            "/console/clusters/{cluster}/tasks/{task}/stop",
            post(pages::stop_task),
        )
        .route(
            "/console/clusters/{cluster}/instances/{instance}/drain",
            post(pages::drain),
        )
        .route("/console/repositories", get(pages::repositories))
        .route("/console/load-balancers", get(pages::load_balancers))
        .route("/console/log-groups", get(pages::log_groups))
        .with_state(console)
}

pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// The form fields of a urlencoded body.
pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The request's session, or the answer sending the browser to sign in.
pub(crate) fn require(console: &Console, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    console
        .session(headers)
        .map(|(_, s)| s)
        .ok_or_else(|| Box::new(redirect("/console/login")))
}

/// The request's session with a valid CSRF token in `fields`.
pub(crate) fn require_csrf(
    console: &Console,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
) -> Result<Session, Box<Response>> {
    let s = require(console, headers)?;
    let sent = fields.get("csrf").map(String::as_bytes).unwrap_or_default();
    if bool::from(subtle::ConstantTimeEq::ct_eq(sent, s.csrf.as_bytes())) {
        Ok(s)
    } else {
        Err(Box::new(
            (StatusCode::FORBIDDEN, "invalid or missing CSRF token").into_response(),
        ))
    }
}

async fn login_page(State(console): State<Arc<Console>>) -> Response {
    console.render(StatusCode::OK, "login.html", None, serde_json::json!({}))
}

/// The text of the first `<name>` element of `xml`.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_owned())
}

async fn login(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let fields = form(&body);
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (ak, sk) = (get("access_key_id"), get("secret_access_key"));
    let refuse = |msg: &str| {
        console.render(
            StatusCode::UNAUTHORIZED,
            "login.html",
            None,
            serde_json::json!({"error": msg}),
        )
    };
    if ak.is_empty() || sk.is_empty() {
        return refuse("Enter an access key ID and its secret.");
    }
    let api = match ApiClient::new(&console.endpoint, &console.region, &ak, &sk) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "console cannot build its API client");
            return refuse("The console cannot reach the API.");
        }
    };
    // The key pair is checked by the front, like any client's: STS names its principal.
    let who = match api
        .call_query(Service::Sts, "GetCallerIdentity", "2011-06-15", &[])
        .await
    {
        Ok(xml) => element(&xml, "Arn").unwrap_or_default(),
        Err(e) => {
            tracing::debug!(error = %e, "console sign-in refused");
            return refuse("The access key ID or the secret access key is not valid.");
        }
    };
    let id = random_hex(32);
    let session = Session {
        api,
        who,
        csrf: random_hex(32),
        expires: Instant::now() + SESSION_LIFETIME,
    };
    console.sessions.lock().insert(id.clone(), session);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/".to_owned()),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
                    SESSION_LIFETIME.as_secs()
                ),
            ),
        ],
    )
        .into_response()
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    if require_csrf(&console, &headers, &fields).is_ok()
        && let Some((id, _)) = console.session(&headers)
    {
        console.sessions.lock().remove(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/login".to_owned()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

/// Query strings of the pages.
pub(crate) type Params = Query<HashMap<String, String>>;
pub(crate) type Segments2 = Path<(String, String)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes() {
        let c = Console::new("http://127.0.0.1:1".into(), "us-east-1".into()).expect("console");
        let r = c.render(
            StatusCode::OK,
            "clusters.html",
            None,
            serde_json::json!({"clusters": [{"clusterName": "<b>x</b>", "status": "ACTIVE"}]}),
        );
        assert_eq!(r.status(), StatusCode::OK);
        for name in [
            "login.html",
            "cluster.html",
            "service.html",
            "task.html",
            "repositories.html",
            "load_balancers.html",
            "log_groups.html",
        ] {
            assert!(c.env.get_template(name).is_ok(), "{name}");
        }
        let html = c
            .env
            .get_template("clusters.html")
            .and_then(|t| {
                t.render(minijinja::context! {clusters => vec![serde_json::json!({"clusterName": "<b>x</b>"})]})
            })
            .expect("render");
        assert!(
            html.contains("&lt;b&gt;x&lt;") && !html.contains("<b>x"),
            "{html}"
        );
        assert_eq!(
            short("arn:aws:ecs:us-east-1:0:task-definition/web:3".into()),
            "web:3"
        );
    }
}
