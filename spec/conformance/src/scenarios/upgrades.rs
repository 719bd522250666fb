//! Upgraded connections through the gateway (PROTOCOL.md §4.5): a WebSocket client reaches
//! the worker's `/ws` and its messages come back.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{Ctx, Scenario};
use crate::check::{fail, Outcome};
use crate::procs::WAIT;
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "websocket echo" => websocket_echo,
    ]
}

/// A text message, a 300 KiB binary one (past the 256 KiB stream window, so WINDOW frames
/// carry it both ways) and a ping, echoed; then a clean close, and the worker still serves.
async fn websocket_echo(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let url = env.url("/ws").replacen("http://", "ws://", 1);
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .map_err(|_| format!("no WebSocket handshake at {url} in time"))?
        .map_err(|e| format!("WebSocket handshake at {url}: {e}"))?;
    ensure_eq!(resp.status().as_u16(), 101, "handshake status");
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = [
        Message::text("hello through vyx"),
        Message::binary(big),
        Message::text("ünïcödé ✓"),
    ];
    for msg in sent {
        ws.send(msg.clone())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let echoed = loop {
            let next = tokio::time::timeout(WAIT, ws.next())
                .await
                .map_err(|_| "no echo in time".to_string())?;
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => break m,
                Some(Err(e)) => return fail(format!("reading the echo: {e}")),
                None => return fail("the connection ended before the echo"),
            }
        };
        ensure!(
            echoed == msg,
            "echo of a {}-byte message differs ({} bytes back)",
            msg.len(),
            echoed.len()
        );
    }
    ws.close(None).await.map_err(|e| format!("close: {e}"))?;
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(m) = ws.next().await {
            if matches!(m, Ok(Message::Close(_)) | Err(_)) {
                return true;
            }
        }
        true
    })
    .await;
    ensure!(
        closed.is_ok(),
        "the worker did not answer the close in time"
    );
    env.still_serving().await
}
