//! Producer side: the current context as fields of new stream entries.

use std::future::Future;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisResult, ToRedisArgs};
use threadline::Context;
use threadline::codec::SpanId;

use threadline::inject::Outgoing;

use crate::Redis;
use crate::carrier::{CmdFields, FieldList};

/// A redis `Cmd` (an `XADD` being built, after the entry id and your own fields) as an
/// outgoing message: `ctx.inject_into(&mut cmd)` and `threadline::inject_current(&mut
/// cmd)` append the context as `tl:<header name>` fields: the correlation id, a child
/// `traceparent` (same trace id, new parent id, which is returned), `tracestate`,
/// `baggage`, the policy's custom headers and the local fields (`tl:tl-field-user.id`).
impl Outgoing<Redis> for Cmd {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(&mut CmdFields::new(self))
    }
}

/// A list of `(field, value)` pairs (for `xadd`, `xadd_options`, a pipeline...) as an
/// outgoing message: the context is appended under `tl:`; fields already in the list
/// are kept.
impl Outgoing<Redis> for Vec<(String, String)> {
    fn inject_context(&mut self, ctx: &Context) -> Option<SpanId> {
        ctx.inject(&mut FieldList::new(self))
    }
}

/// Appends `ctx` to an `XADD` command under another prefix than `tl:` (the consumer
/// reads it with [`Entry::with_prefix`](crate::Entry::with_prefix)).
pub fn inject_with_prefix(ctx: &Context, cmd: &mut Cmd, prefix: &str) -> Option<SpanId> {
    ctx.inject(&mut CmdFields::with_prefix(cmd, prefix))
}

/// The current context as `(field, value)` pairs (empty outside any scope).
pub fn current_fields() -> Vec<(String, String)> {
    let mut fields = Vec::new();
    threadline::inject_current(&mut fields);
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
    threadline::inject_current(&mut cmd);
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
