//! Flow control on the gateway's side of a stream (§5): the response window the worker's DATA
//! spends, and the request window its WINDOW frames grant.

use std::sync::atomic::Ordering;

use vyx_core::error::CloseCode;

use super::reader::Violation;
use super::streams::GwStream;

/// Spends `len` bytes of the stream's receive window; DATA beyond it is a connection error.
pub(super) fn spend_recv_window(s: &GwStream, id: u32, len: usize) -> Result<(), Violation> {
    let len = len as i64;
    if s.recv_credit.fetch_sub(len, Ordering::AcqRel) - len < 0 {
        return Err((
            CloseCode::FlowControl,
            format!("DATA on stream {id} exceeds its window"),
        ));
    }
    Ok(())
}

/// Adds a WINDOW increment to the stream's send window; past 2^31−1 is a connection error.
pub(super) fn grant_send_window(s: &GwStream, id: u32, increment: u32) -> Result<(), Violation> {
    if !s.send.grant(increment) {
        return Err((
            CloseCode::FlowControl,
            format!("WINDOW takes stream {id} past 2^31-1"),
        ));
    }
    Ok(())
}
