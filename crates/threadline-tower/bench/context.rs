//! The five context headers of every HTTP bench request: the values `ctx.lua` sends,
//! for the Rust side of the benches (headers set by hand, in-process requests).

/// `(name, value)`, valid values as a real upstream sends them.
pub const CONTEXT: [(&str, &str); 5] = [
    ("x-correlation-id", "0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    (
        "baggage",
        "userId=alice,serverNode=DF%2028,isProduction=false",
    ),
    ("x-tenant-id", "acme"),
];
