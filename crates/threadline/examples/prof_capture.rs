use std::hint::black_box;
use http::{HeaderMap, HeaderName, HeaderValue};
use threadline::{Policy, Trust};
const BAGGAGE: &str =
    "userId=alice,serverNode=DF%2028,isProduction=false,tenant=acme,region=eu-west-1";
fn shared(v: &str) -> HeaderValue {
    let b = bytes::Bytes::from(v.as_bytes().to_vec());
    let _ = b.clone();
    HeaderValue::from_maybe_shared(b).unwrap()
}
fn main() {
    let pairs = [
        ("host", "shop.internal:8080"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("content-type", "application/json"),
        ("content-length", "128"),
        ("cookie", "session=abcdef0123456789"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
        ("x-forwarded-for", "10.1.2.3"),
        ("x-correlation-id", "0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3"),
        ("x-tenant-id", "acme"),
        ("x-user-id", "user-42"),
        ("x-client", "web-checkout"),
        ("baggage", BAGGAGE),
    ];
    let mut req = HeaderMap::with_capacity(16);
    for (k, v) in pairs { req.insert(k, shared(v)); }
    let names: Vec<HeaderName> = ["x-correlation-id","baggage","x-tenant-id","x-user-id","x-client"].iter().map(|n| HeaderName::from_static(n)).collect();
    let mode = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let pass = Policy::builder().header("x-tenant-id").header("x-user-id").header("x-client").w3c(false).build().unwrap();
    let mut out = HeaderMap::with_capacity(16);
    for _ in 0..n {
        out.clear();
        if mode == "hand" {
            for nm in &names { if let Some(v) = black_box(&req).get(nm) { out.insert(nm.clone(), v.clone()); } }
        } else if mode == "ours" {
            let ctx = pass.capture(black_box(&req), Trust::Trusted).context;
            ctx.inject(&mut out);
        } else if mode == "capture" {
            black_box(pass.capture(black_box(&req), Trust::Trusted).context);
        }
        black_box(&out);
    }
}
