//! Producer side: the current context as fields of new stream entries.

use std::future::Future;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisResult, ToRedisArgs};
use threadline::Context;
use threadline::codec::SpanId;

use crate::carrier::{CmdFields, FieldList};

/// Appends `ctx` to an `XADD` command being built (after the entry id and your own
/// fields), as `tl:<header name>` fields: the correlation id, a child `traceparent`
/// (same trace id, new parent id, which is returned), `tracestate`, `baggage`, the
/// policy's custom headers and the local fields (`tl:tl-field-user.id`).
pub fn inject(ctx: &Context, cmd: &mut Cmd) -> Option<SpanId> {
    ctx.inject(&mut CmdFields::new(cmd))
}

/// [`inject`] under another prefix (the consumer's `Restorer` must use the same).
pub fn inject_with_prefix(ctx: &Context, cmd: &mut Cmd, prefix: &str) -> Option<SpanId> {
    ctx.inject(&mut CmdFields::with_prefix(cmd, prefix))
}

/// Appends `ctx` to a list of `(field, value)` pairs (for `xadd`, `xadd_options`, a
/// pipeline...). Fields already in the list are kept.
pub fn inject_fields(ctx: &Context, fields: &mut Vec<(String, String)>) -> Option<SpanId> {
    ctx.inject(&mut FieldList::new(fields))
}

/// The current context as `(field, value)` pairs (empty outside any scope).
pub fn current_fields() -> Vec<(String, String)> {
    let mut fields = Vec::new();
    Context::with_current(|ctx| inject_fields(ctx, &mut fields));
    fields
}

/// `XADD key id field value [field value ...]` with the current context appended.
/// Outside any scope it is a plain `XADD`.
pub fn xadd_cmd<K, ID, F, V>(key: K, id: ID, items: &[(F, V)]) -> Cmd
where
    K: ToRedisArgs,
    ID: ToRedisArgs,
    F: ToRedisArgs,
    V: ToRedisArgs,
{
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg(id).arg(items);
    Context::with_current(|ctx| inject(ctx, &mut cmd));
    cmd
}

/// `XADD` with the current context, on any async connection.
pub trait StreamsExt: ConnectionLike + Send + Sized {
    /// Adds an entry with `items` as its payload fields and the current context as
    /// `tl:` fields beside them. The context is taken when this is called.
    fn xadd_in_context<K, ID, F, V, RV>(
        &mut self,
        key: K,
        id: ID,
        items: &[(F, V)],
    ) -> impl Future<Output = RedisResult<RV>> + Send
    where
        K: ToRedisArgs,
        ID: ToRedisArgs,
        F: ToRedisArgs,
        V: ToRedisArgs,
        RV: FromRedisValue,
    {
        let cmd = xadd_cmd(key, id, items);
        async move { cmd.query_async(self).await }
    }
}

impl<C: ConnectionLike + Send + Sized> StreamsExt for C {}
