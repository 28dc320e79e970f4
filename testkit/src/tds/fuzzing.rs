//! The fuzz target's entry (`fuzz/fuzz_targets/tds_packet.rs`), shared with
//! its regression test: a client byte stream split into messages, each
//! payload through every request parser, and a batch's text through the
//! T-SQL parser. Must never panic or hang.

use futures_util::FutureExt;

use super::{request, sql, wire};

pub fn packet_stream(data: &[u8]) {
    let mut stream = data;
    // A &[u8] reader never waits: each read completes in its first poll.
    while let Some(Ok(Some(message))) = wire::read_message(&mut stream).now_or_never() {
        let payload = &message.payload;
        let _ = request::parse_prelogin(payload);
        let _ = request::parse_login7(payload);
        for headers in [true, false] {
            if let Ok(text) = request::parse_sql_batch(payload, headers) {
                let _ = sql::parse_uncached(&text);
            }
            let _ = request::parse_rpc(payload, headers);
        }
    }
}
