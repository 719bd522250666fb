//! The live dashboard: `/_vyx/ui` (one HTML page with its script and style inline, from the
//! binary), `/_vyx/ui/events` (server-sent events, see [`events`]) and `/_vyx/ui/login`.
//!
//! Behind the admin token like the other admin endpoints. A browser cannot send a bearer
//! header when it navigates, so the page, without the token, is a sign-in form: the token
//! posted to `/_vyx/ui/login` is checked by the same rule (`admin::check_admin_token`) and
//! answered with a cookie that is not the token but a random per-process session key,
//! `HttpOnly`, `SameSite=Strict`, `Path=/_vyx/ui` (`Secure` over TLS). A bearer header opens
//! the page and the events as well. With no admin token configured, everything is open, as
//! `/_vyx/workers` is.

mod events;
mod snapshot;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

pub use events::{EventBody, UiLimits};

use crate::admin::{self, Refusal};
use crate::auth::Secret;
use crate::body::GatewayBody;
use crate::Shared;

const PAGE: &str = include_str!("page.html");
const LOGIN: &str = include_str!("login.html");
/// The session cookie's name.
pub const COOKIE_NAME: &str = "vyx_ui";
/// The most a sign-in form may send.
const LOGIN_BODY_MAX: usize = 4096;
/// How long a sign-in form may take to arrive.
const LOGIN_BODY_TIME: Duration = Duration::from_secs(10);

/// The dashboard's state in the gateway.
pub struct Dashboard {
    /// The session cookie's value: random per process, so a restart signs browsers out and
    /// the admin token itself never sits in a cookie jar.
    session: Secret,
    clients: events::Clients,
}

impl Dashboard {
    pub fn new() -> Dashboard {
        Dashboard {
            session: Secret::random(),
            clients: events::Clients::default(),
        }
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard::new()
    }
}

/// Answers a request under `/_vyx/ui`.
pub async fn serve(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<GatewayBody> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/_vyx/ui" if get => match signed_in(&req, shared) {
            Ok(()) => html(StatusCode::OK, PAGE, page_csp()),
            Err(r) => login_page(r),
        },
        "/_vyx/ui/events" if get => events(&req, shared),
        "/_vyx/ui/login" if req.method() == Method::POST => login(req, shared).await,
        "/_vyx/ui" | "/_vyx/ui/events" => not_allowed("GET, HEAD"),
        "/_vyx/ui/login" => not_allowed("POST"),
        _ => plain(StatusCode::NOT_FOUND, "no such dashboard page\n".into()),
    }
}

fn not_allowed(allow: &'static str) -> Response<GatewayBody> {
    let mut resp = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this dashboard path answers {allow} only\n"),
    );
    resp.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The session cookie, a bearer header, or no admin token configured.
fn signed_in<B>(req: &Request<B>, shared: &Shared) -> Result<(), Refusal> {
    let session = &shared.ui.session;
    let cookie = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
        .any(|v| session.matches(v));
    if cookie {
        return Ok(());
    }
    admin::check_admin_token(shared, admin::bearer(req))
}

fn events<B>(req: &Request<B>, shared: &Arc<Shared>) -> Response<GatewayBody> {
    if let Err(why) = signed_in(req, shared) {
        return admin::refused(why);
    }
    let cap = shared.config.ui.clients;
    let Some(slot) = shared.ui.clients.take(cap) else {
        let mut resp = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the dashboard's event streams are all taken (ui.clients: {cap}); close one and retry\n"),
        );
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    };
    let mut resp = Response::new(GatewayBody::Events(Box::new(EventBody::start(
        shared.clone(),
        slot,
    ))));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn login(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<GatewayBody> {
    let over_tls = req.extensions().get::<crate::tls::OverTls>().is_some();
    let form = tokio::time::timeout(
        LOGIN_BODY_TIME,
        Limited::new(req.into_body(), LOGIN_BODY_MAX).collect(),
    )
    .await;
    let Ok(Ok(form)) = form else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("a sign-in form is at most {LOGIN_BODY_MAX} bytes, sent within {LOGIN_BODY_TIME:?}\n"),
        );
    };
    let token = form_field(&form.to_bytes(), "token");
    if let Err(r) = admin::check_admin_token(shared, token.as_deref()) {
        return login_page(r);
    }
    let mut resp = plain(StatusCode::SEE_OTHER, String::new());
    let h = resp.headers_mut();
    h.insert(LOCATION, HeaderValue::from_static("/_vyx/ui"));
    if shared.config.admin_token.is_some() {
        let secure = if over_tls { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/_vyx/ui; HttpOnly; SameSite=Strict{secure}",
            shared.ui.session.expose()
        );
        h.insert(
            SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("hex and ASCII"),
        );
    }
    resp
}

/// A field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        (k == name.as_bytes()).then(|| {
            let v: Vec<u8> = v[1..]
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            percent_encoding::percent_decode(&v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn login_page(why: Refusal) -> Response<GatewayBody> {
    let message = match why {
        Refusal::Missing => "Sign in with the gateway's admin token.",
        Refusal::WorkerToken => "A worker token does not open the dashboard: use the admin token.",
        Refusal::Invalid => "Invalid admin token.",
    };
    html(
        why.status(),
        &LOGIN.replace("{message}", message),
        login_csp(),
    )
}

fn plain(status: StatusCode, body: String) -> Response<GatewayBody> {
    admin::text(status, "text/plain; charset=utf-8", body)
}

fn html(status: StatusCode, page: &str, csp: &str) -> Response<GatewayBody> {
    let mut resp = admin::text(status, "text/html; charset=utf-8", page.to_string());
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_str(csp).expect("ASCII"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

fn page_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| csp(PAGE))
}

fn login_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| csp(LOGIN))
}

/// Nothing but the page's own inline script and style (by their hashes), its own event
/// stream and its own sign-in form.
fn csp(page: &str) -> String {
    let hashes = |tag: &str| {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let list: Vec<String> = page
            .split(open.as_str())
            .skip(1)
            .filter_map(|s| s.split_once(close.as_str()))
            .map(|(inline, _)| {
                let digest = Sha256::digest(inline.as_bytes());
                let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
                format!("'sha256-{b64}'")
            })
            .collect();
        if list.is_empty() {
            "'none'".to_string()
        } else {
            list.join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hashes("script"),
        hashes("style")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&token=a%2Bb+c%3D&x", "token").as_deref(),
            Some("a+b c=")
        );
        assert_eq!(form_field(b"tokenx=1", "token"), None);
    }

    #[test]
    fn the_csp_names_each_inline_block_by_its_hash() {
        let policy = csp("<style>a{}</style><script>1</script><script>2</script>");
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert_eq!(policy.matches("'sha256-").count(), 3, "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(csp("<p>").contains("script-src 'none'"));
    }
}
