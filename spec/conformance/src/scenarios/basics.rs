//! Registration, routing, parameters, query, headers, statuses.

use serde_json::{json, Value};

use super::{connections, Ctx, Scenario};
use crate::check::Outcome;
use crate::http::{self, empty, request};
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "registration and HELLO fields" => registration,
        "routing and 404" => routing,
        "path params: percent-encoding, non-ASCII, catch-all" => path_params,
        "query strings" => query,
        "header fidelity" => headers,
        "status and repeated response headers" => status_headers,
        "empty 204" => empty_204,
        "HEAD" => head,
    ]
}

/// The contract's route table, as `/_vyx/workers` lists it (sorted).
pub const ROUTES: &[&str] = &[
    "* /inspect/{*rest}",
    "GET /barrier/{n}",
    "GET /empty",
    "GET /files/{*rest}",
    "GET /greet/{name}",
    "GET /hints",
    "GET /slow/{ms}",
    "GET /stats",
    "GET /status/{code}",
    "GET /stream/{bytes}",
    "GET /throw",
    "GET /ws",
    "HEAD /head",
    "POST /echo",
    "POST /trailers",
    "POST /upload",
];

async fn registration(ctx: Ctx) -> Outcome<()> {
    let env = ctx
        .env_with(&[("VYX_CONFORMANCE_MAX_CONCURRENCY", "77".into())])
        .await?;
    let conns = connections(&env.client, &env.gw, &env.id).await?;
    ensure_eq!(conns.len(), 1, "connections of {}", env.id);
    let c = &conns[0];
    ensure_eq!(
        c["connection_id"].as_str(),
        Some(env.connection_id.as_str()),
        "connection id the worker reported"
    );
    let sdk = c["sdk"].as_str().unwrap_or_default();
    let prefix = format!("vyx-{}/", ctx.lang);
    ensure!(
        sdk.starts_with(&prefix) && sdk.len() > prefix.len(),
        "HELLO sdk {sdk:?} is not {prefix}VERSION"
    );
    ensure!(
        !c["instance"].as_str().unwrap_or_default().is_empty(),
        "HELLO instance is empty: {c}"
    );
    ensure_eq!(c["max_concurrency"], json!(77), "HELLO max_concurrency");
    ensure_eq!(c["routes"], json!(ROUTES), "HELLO routes");
    ensure_eq!(c["draining"], json!(false), "draining");
    Ok(())
}

async fn routing(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let reply = env.get("/greet/ada").await?;
    ensure_eq!(reply.status, 200, "GET /greet/ada");
    ensure_eq!(
        reply.header_values("content-type"),
        vec!["application/json"],
        "content-type"
    );
    ensure_eq!(
        reply.json()?,
        json!({"hello": "ada", "lang": ctx.lang}),
        "GET /greet/ada"
    );
    let reply = env.get("/files/x").await?;
    ensure_eq!(
        (reply.status, reply.json()?),
        (200, json!({"rest": "x"})),
        "GET /files/x"
    );
    for path in [
        "/nope",
        "/greet",
        "/greet/ada/extra",
        "/greetings/ada",
        "/GREET/ada",
    ] {
        let reply = env.get(path).await?;
        ensure_eq!(reply.status, 404, "GET {path}");
    }
    let reply = http::send(
        &env.client,
        request("POST", &env.url("/greet/ada"), &[], empty())?,
    )
    .await?;
    // A path served for other methods only: the gateway's 405, naming them (§2.5.3).
    ensure_eq!(reply.status, 405, "POST /greet/ada (only GET is declared)");
    ensure_eq!(
        reply.header_values("allow"),
        vec!["GET, HEAD"],
        "Allow of POST /greet/ada"
    );
    // `*` routes take every method.
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let reply = http::send(
            &env.client,
            request(method, &env.url("/inspect/any"), &[], empty())?,
        )
        .await?;
        ensure_eq!(reply.status, 200, "{method} /inspect/any");
        ensure_eq!(
            reply.json()?["method"],
            json!(method),
            "method seen by the worker"
        );
    }
    Ok(())
}

async fn path_params(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let cases = [
        ("/greet/w%C3%B6rld", "wörld"),
        ("/greet/%E6%97%A5%E6%9C%AC%F0%9F%A6%80", "日本🦀"),
        ("/greet/a%2Fb", "a/b"),
        ("/greet/a%20b", "a b"),
        ("/greet/a+b", "a+b"),
        ("/greet/100%25", "100%"),
        ("/greet/%zz%4", "%zz%4"),
        ("/greet/%c3%a9", "é"),
        ("/greet/~user.name_-", "~user.name_-"),
    ];
    for (path, name) in cases {
        let reply = env.get(path).await?;
        ensure_eq!(reply.status, 200, "GET {path}");
        ensure_eq!(reply.json()?["hello"], json!(name), "param of {path}");
    }
    let cases = [
        ("/files/a", "a"),
        ("/files/a/b/c.txt", "a/b/c.txt"),
        ("/files/a%2Fb/%C3%A9t%C3%A9/x%20y", "a/b/été/x y"),
        ("/files/dir/", "dir/"),
    ];
    for (path, rest) in cases {
        let reply = env.get(path).await?;
        ensure_eq!(reply.status, 200, "GET {path}");
        ensure_eq!(
            reply.json()?,
            json!({ "rest": rest }),
            "catch-all of {path}"
        );
    }
    // Raw path and decoded params side by side.
    let reply = env.get("/inspect/a%2Fb/%C3%BC").await?;
    let got = reply.json()?;
    ensure_eq!(got["path"], json!("/inspect/a%2Fb/%C3%BC"), "raw path");
    ensure_eq!(got["params"], json!({"rest": "a/b/ü"}), "params");
    Ok(())
}

async fn query(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let raw = "a=1&b=%20x&c=caf%C3%A9&a=2&empty=&flag&plus=a+b&enc%3Dkey=v%26w";
    let reply = env.get(&format!("/inspect/q?{raw}")).await?;
    ensure_eq!(reply.status, 200, "GET /inspect/q?...");
    let got = reply.json()?;
    ensure_eq!(got["path"], json!("/inspect/q"), "path without the query");
    ensure_eq!(got["query"], json!(raw), "raw query");
    ensure_eq!(
        got["query_pairs"],
        json!([
            ["a", "1"],
            ["b", " x"],
            ["c", "café"],
            ["a", "2"],
            ["empty", ""],
            ["flag", ""],
            ["plus", "a b"],
            ["enc=key", "v&w"]
        ]),
        "decoded query pairs"
    );
    ensure_eq!(got["params"], json!({"rest": "q"}), "params");
    let got = env.get("/inspect/q").await?.json()?;
    ensure_eq!(got["query"], Value::Null, "query of a target without '?'");
    ensure_eq!(
        got["query_pairs"],
        json!([]),
        "pairs of a target without '?'"
    );
    Ok(())
}

async fn headers(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    // A value near the 64 KiB head limit of the gateway's configuration.
    let big: String = (0..60 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let sent = [
        ("X-Mixed-Case", "MiXeD VaLuE"),
        ("X-Multi", "one"),
        ("X-Other", "between"),
        ("X-Multi", "two, still two"),
        ("X-Multi", "three"),
        ("X-Empty", ""),
        ("X-Spaces", "a  b\tc"),
        ("X-Big", big.as_str()),
        ("Content-Type", "text/x-conformance; charset=utf-8"),
    ];
    // Title-Case names on the wire: the gateway must lower-case them.
    let client = http::client_with(true);
    let reply = http::send(
        &client,
        request("POST", &env.url("/inspect/h"), &sent, http::full("body"))?,
    )
    .await?;
    ensure_eq!(reply.status, 200, "POST /inspect/h");
    let got = reply.json()?;
    let Some(list) = got["headers"].as_array() else {
        return Err(format!("headers is not a list: {got}"));
    };
    let pairs: Vec<(String, String)> = list
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or("?").to_owned(),
                p[1].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (name, _) in &pairs {
        ensure!(
            *name == name.to_ascii_lowercase(),
            "header name {name:?} not lower-case"
        );
    }
    ensure_eq!(values("x-mixed-case"), vec!["MiXeD VaLuE"], "x-mixed-case");
    ensure_eq!(
        values("x-multi"),
        vec!["one", "two, still two", "three"],
        "repeated x-multi, in order"
    );
    ensure_eq!(values("x-other"), vec!["between"], "x-other");
    ensure_eq!(values("x-empty"), vec![""], "x-empty");
    ensure_eq!(values("x-spaces"), vec!["a  b\tc"], "x-spaces");
    ensure!(
        values("x-big") == vec![big.as_str()],
        "x-big: the 60 KiB value did not arrive intact"
    );
    ensure_eq!(
        values("content-type"),
        vec!["text/x-conformance; charset=utf-8"],
        "content-type"
    );
    ensure_eq!(
        values("host"),
        vec![env.gw.addr.to_string().as_str()],
        "host"
    );
    ensure_eq!(
        values("x-forwarded-for"),
        vec!["127.0.0.1"],
        "x-forwarded-for added by the gateway"
    );
    ensure_eq!(values("x-request-id").len(), 1, "x-request-id added once");
    ensure_eq!(
        values("connection"),
        Vec::<&str>::new(),
        "hop-by-hop removed"
    );
    ensure_eq!(got["body_length"], json!(4), "body length");
    ensure_eq!(
        got["body_sha256"],
        json!(http::sha256(b"body")),
        "body hash"
    );
    Ok(())
}

async fn status_headers(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    for code in [200u16, 201, 202, 299, 400, 404, 418, 451, 500, 503, 599] {
        let reply = env.get(&format!("/status/{code}")).await?;
        ensure_eq!(reply.status, code, "GET /status/{code}");
        ensure_eq!(
            reply.header_values("set-cookie"),
            vec!["a=1", "b=2"],
            "set-cookie of /status/{code}, both, in order"
        );
        ensure_eq!(
            reply.header_values("x-conformance"),
            vec!["status"],
            "x-conformance of /status/{code}"
        );
        ensure_eq!(
            reply.header_values("content-type"),
            vec!["text/plain"],
            "content-type of /status/{code}"
        );
        ensure_eq!(
            reply.text(),
            format!("status {code}"),
            "body of /status/{code}"
        );
    }
    let reply = env.get("/status/600").await?;
    ensure_eq!(reply.status, 400, "GET /status/600");
    Ok(())
}

async fn empty_204(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let reply = env.get("/empty").await?;
    ensure_eq!(reply.status, 204, "GET /empty");
    ensure_eq!(reply.body.len(), 0, "body of a 204");
    ensure!(
        reply.headers.get("transfer-encoding").is_none(),
        "a 204 with transfer-encoding: {:?}",
        reply.headers
    );
    let reply = env.get("/status/204").await?;
    ensure_eq!(
        (reply.status, reply.body.len()),
        (204, 0),
        "GET /status/204"
    );
    ensure_eq!(
        reply.header_values("set-cookie"),
        vec!["a=1", "b=2"],
        "set-cookie of a 204"
    );
    env.still_serving().await
}

async fn head(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let reply = http::send(
        &env.client,
        request("HEAD", &env.url("/head"), &[], empty())?,
    )
    .await?;
    ensure_eq!(reply.status, 200, "HEAD /head");
    ensure_eq!(
        reply.header_values("x-conformance"),
        vec!["head"],
        "x-conformance"
    );
    ensure_eq!(reply.body.len(), 0, "body of HEAD /head");
    let reply = env.get("/head").await?;
    ensure_eq!(reply.status, 405, "GET /head (only HEAD is declared)");
    ensure_eq!(
        reply.header_values("allow"),
        vec!["HEAD"],
        "Allow of GET /head"
    );
    // HEAD on a GET route: the GET answer's head, no body.
    let reply = http::send(
        &env.client,
        request("HEAD", &env.url("/greet/ada"), &[], empty())?,
    )
    .await?;
    ensure_eq!(reply.status, 200, "HEAD /greet/ada");
    ensure_eq!(
        reply.header_values("content-type"),
        vec!["application/json"],
        "content-type of HEAD /greet/ada"
    );
    ensure_eq!(reply.body.len(), 0, "body of HEAD /greet/ada");
    env.still_serving().await
}
