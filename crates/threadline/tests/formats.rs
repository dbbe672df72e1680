//! Table tests for the trace formats (Google Cloud, X-Ray, Jaeger, Datadog, OT) and the
//! composite: every row is `(input, expected, reason)`, the reason in the assert
//! message. Edge cases come from each format's own documentation and from the
//! OpenTelemetry contrib propagators' behaviour.

use http::HeaderMap;
use threadline::codec::{Codec, ErrorKind};
use threadline::format::{
    B3Format, BaggageFormat, CloudTraceFormat, Composite, DatadogFormat, Extras, Format,
    JaegerFormat, OtFormat, Parts, Sampling, TraceContextFormat, TraceParts, XRayFormat,
};

/// What a row expects: trace id (32 hex), span id (16 hex or none), sampling.
type Want = Result<(&'static str, Option<&'static str>, Sampling), ErrorKind>;

fn got(
    r: Result<TraceParts<'_>, threadline::codec::Error>,
) -> Result<(String, Option<String>, Sampling), ErrorKind> {
    r.map(|t| {
        (
            t.trace_id.to_string(),
            t.span_id.map(|s| s.to_string()),
            t.sampling,
        )
    })
    .map_err(|e| e.kind())
}

fn check_table(
    format: &str,
    cases: &[(&str, Want, &str)],
    decode: impl Fn(&str) -> Result<(String, Option<String>, Sampling), ErrorKind>,
) {
    for (input, want, reason) in cases {
        let want = want.map(|(t, s, sm)| (t.to_owned(), s.map(str::to_owned), sm));
        assert_eq!(decode(input), want, "{format} {input:?}: {reason}");
    }
}

const TID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SID: &str = "00f067aa0ba902b7";
use Sampling::{Debug, Deferred, NotSampled, Sampled};

#[test]
fn cloud_trace_table() {
    let cases: &[(&str, Want, &str)] = &[
        (
            "105445aa7843bc8bf206b12000100000/1;o=1",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                Sampled,
            )),
            "documented example",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;o=0",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                NotSampled,
            )),
            "o=0: not sampled",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                Deferred,
            )),
            "no options: no decision",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;o=3",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                Sampled,
            )),
            "options is a bit field: bit 0 sampled",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;o=2",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                NotSampled,
            )),
            "bit 0 clear",
        ),
        (
            "105445AA7843BC8BF206B12000100000/1;o=1",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                Sampled,
            )),
            "upper-case hex trace id accepted",
        ),
        (
            " 105445aa7843bc8bf206b12000100000/1;o=1\t",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("0000000000000001"),
                Sampled,
            )),
            "OWS ignored",
        ),
        (
            "105445aa7843bc8bf206b12000100000/18446744073709551615;o=1",
            Ok((
                "105445aa7843bc8bf206b12000100000",
                Some("ffffffffffffffff"),
                Sampled,
            )),
            "largest 64-bit span id",
        ),
        (
            "105445aa7843bc8bf206b12000100000/18446744073709551616;o=1",
            Err(ErrorKind::DecimalId),
            "span id over 64 bits",
        ),
        (
            "105445aa7843bc8bf206b12000100000/0;o=1",
            Err(ErrorKind::ZeroSpanId),
            "zero span id",
        ),
        (
            "105445aa7843bc8bf206b12000100000/abc;o=1",
            Err(ErrorKind::DecimalId),
            "span id is decimal, not hex",
        ),
        (
            "105445aa7843bc8bf206b12000100000/;o=1",
            Err(ErrorKind::DecimalId),
            "empty span id",
        ),
        (
            "105445aa7843bc8bf206b120001000/1;o=1",
            Err(ErrorKind::HexId),
            "trace id of 30 digits",
        ),
        (
            "105445aa7843bc8bf206b12000100000x/1",
            Err(ErrorKind::HexId),
            "trace id of 33 characters",
        ),
        (
            "105445aa7843bc8bf206b1200010000g/1",
            Err(ErrorKind::HexId),
            "non-hex trace id",
        ),
        (
            "00000000000000000000000000000000/1;o=1",
            Err(ErrorKind::ZeroTraceId),
            "zero trace id",
        ),
        (
            "105445aa7843bc8bf206b12000100000",
            Err(ErrorKind::Separator),
            "no slash",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;x=1",
            Err(ErrorKind::Separator),
            "options without o=",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;o=x",
            Err(ErrorKind::SamplingValue),
            "non-numeric options",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;o=256",
            Err(ErrorKind::SamplingValue),
            "options over one byte",
        ),
        (
            "105445aa7843bc8bf206b12000100000/1;o=1;o=1",
            Err(ErrorKind::SamplingValue),
            "trailing data",
        ),
        ("", Err(ErrorKind::Empty), "empty"),
    ];
    check_table("cloud", cases, |v| {
        got(CloudTraceFormat::decode_value(v.as_bytes()))
    });
}

#[test]
fn xray_table() {
    let cases: &[(&str, Want, &str)] = &[
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            Ok((
                "5759e988bd862e3fe1be46a994272793",
                Some("53995c3f42cd8ad8"),
                Sampled,
            )),
            "documented example",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
            Ok(("5759e988bd862e3fe1be46a994272793", None, NotSampled)),
            "first hop: no Parent",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            Ok(("5759e988bd862e3fe1be46a994272793", None, Deferred)),
            "root only (ALB)",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?",
            Ok((
                "5759e988bd862e3fe1be46a994272793",
                Some("53995c3f42cd8ad8"),
                Deferred,
            )),
            "? asks for a decision",
        ),
        (
            "Sampled=1;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793",
            Ok((
                "5759e988bd862e3fe1be46a994272793",
                Some("53995c3f42cd8ad8"),
                Sampled,
            )),
            "fields in any order",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Self=1-5759e988-bd862e3fe1be46a994272794;Lineage=a87bd80c:1|68fd508a:5",
            Ok(("5759e988bd862e3fe1be46a994272793", None, Deferred)),
            "other keys kept",
        ),
        (
            " Root = 1-5759e988-bd862e3fe1be46a994272793 ; Parent=53995c3f42cd8ad8;",
            Ok((
                "5759e988bd862e3fe1be46a994272793",
                Some("53995c3f42cd8ad8"),
                Deferred,
            )),
            "OWS and a trailing ;",
        ),
        (
            "Parent=53995c3f42cd8ad8;Sampled=1",
            Err(ErrorKind::Missing),
            "no Root",
        ),
        (
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            Err(ErrorKind::UnsupportedVersion),
            "version 2 is not defined",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            Err(ErrorKind::HexId),
            "random part of 23 digits",
        ),
        (
            "Root=1-5759e98-8bd862e3fe1be46a994272793",
            Err(ErrorKind::HexId),
            "epoch of 7 digits",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a99427279z",
            Err(ErrorKind::HexId),
            "non-hex",
        ),
        (
            "Root=1-00000000-000000000000000000000000",
            Err(ErrorKind::ZeroTraceId),
            "zero trace id",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad",
            Err(ErrorKind::HexId),
            "parent of 15 digits",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000",
            Err(ErrorKind::ZeroSpanId),
            "zero parent",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=yes",
            Err(ErrorKind::SamplingValue),
            "sampled must be 0, 1 or ?",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Root=1-5759e988-bd862e3fe1be46a994272793",
            Err(ErrorKind::Duplicate),
            "repeated Root",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;garbage",
            Err(ErrorKind::Separator),
            "field without =",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;=x",
            Err(ErrorKind::Key),
            "empty key",
        ),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=\u{e9}",
            Err(ErrorKind::InvalidChar),
            "non-ASCII",
        ),
        ("", Err(ErrorKind::Empty), "empty"),
    ];
    check_table("x-ray", cases, |v| {
        got(XRayFormat::decode_value(v.as_bytes()))
    });
}

#[test]
fn xray_extras_are_forwarded_in_order() {
    let v = "Root=1-5759e988-bd862e3fe1be46a994272793;Self=1-5759e988-bd862e3fe1be46a994272794;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5";
    let t = XRayFormat::decode_value(v.as_bytes()).unwrap();
    let Extras::XRay(x) = &t.extras else {
        panic!("extras expected: {t:?}")
    };
    assert_eq!(
        x.iter().collect::<Vec<_>>(),
        [
            ("Self", "1-5759e988-bd862e3fe1be46a994272794"),
            ("Lineage", "a87bd80c:1|68fd508a:5")
        ]
    );
    assert_eq!(
        XRayFormat::encode_value(&t).unwrap().as_str(),
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Self=1-5759e988-bd862e3fe1be46a994272794;Lineage=a87bd80c:1|68fd508a:5",
        "known keys first, then the others as received"
    );
}

#[test]
fn jaeger_table() {
    let cases: &[(&str, Want, &str)] = &[
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            Ok((TID, Some(SID), Sampled)),
            "128-bit, sampled",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:0",
            Ok((TID, Some(SID), NotSampled)),
            "not sampled",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:3",
            Ok((TID, Some(SID), Debug)),
            "debug + sampled",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:2",
            Ok((TID, Some(SID), NotSampled)),
            "debug without sampled is no decision to record",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:01",
            Ok((TID, Some(SID), Sampled)),
            "two-digit flags",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:9",
            Ok((TID, Some(SID), Sampled)),
            "firehose bit (0x08) ignored",
        ),
        (
            "a3ce929d0e0e4736:f067aa0ba902b7:0:1",
            Ok(("0000000000000000a3ce929d0e0e4736", Some(SID), Sampled)),
            "64-bit, leading zeros omitted",
        ),
        (
            "abc:def:123:1",
            Ok((
                "00000000000000000000000000000abc",
                Some("0000000000000def"),
                Sampled,
            )),
            "short ids are left-padded",
        ),
        (
            "4BF92F3577B34DA6A3CE929D0E0E4736:00F067AA0BA902B7:0:1",
            Ok((TID, Some(SID), Sampled)),
            "upper-case hex accepted",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736%3A00f067aa0ba902b7%3A0%3A1",
            Ok((TID, Some(SID), Sampled)),
            "URL-encoded value",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736%3a00f067aa0ba902b7%3a0%3a1",
            Ok((TID, Some(SID), Sampled)),
            "URL-encoded, lower-case escape",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0",
            Err(ErrorKind::Separator),
            "three fields",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1:1",
            Err(ErrorKind::Separator),
            "five fields",
        ),
        (
            "0:00f067aa0ba902b7:0:1",
            Err(ErrorKind::ZeroTraceId),
            "zero trace id",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:0:0:1",
            Err(ErrorKind::ZeroSpanId),
            "zero span id",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e47361:00f067aa0ba902b7:0:1",
            Err(ErrorKind::HexId),
            "trace id of 33 digits",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:100f067aa0ba902b7:0:1",
            Err(ErrorKind::HexId),
            "span id of 17 digits",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736::0:1",
            Err(ErrorKind::HexId),
            "empty span id",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:x:1",
            Err(ErrorKind::HexId),
            "parent not hex",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:100",
            Err(ErrorKind::Flags),
            "flags over one byte",
        ),
        (
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:",
            Err(ErrorKind::Flags),
            "empty flags",
        ),
        ("", Err(ErrorKind::Empty), "empty"),
    ];
    check_table("jaeger", cases, |v| {
        got(JaegerFormat::decode_value(v.as_bytes()))
    });
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

fn decode_trace(
    f: &dyn Format,
    h: &HeaderMap,
) -> Result<Option<(String, Option<String>, Sampling)>, ErrorKind> {
    f.decode(h)
        .map(|p| {
            p.trace.map(|t| {
                (
                    t.trace_id.to_string(),
                    t.span_id.map(|s| s.to_string()),
                    t.sampling,
                )
            })
        })
        .map_err(|r| r.error().kind())
}

type Rows<'a> = &'a [(
    &'a [(&'a str, &'a str)],
    Result<Option<(&'a str, Option<&'a str>, Sampling)>, ErrorKind>,
    &'a str,
)];

fn check_headers(f: &dyn Format, cases: Rows<'_>) {
    for (pairs, want, reason) in cases {
        let want = want.map(|o| o.map(|(t, s, sm)| (t.to_owned(), s.map(str::to_owned), sm)));
        assert_eq!(
            decode_trace(f, &headers(pairs)),
            want,
            "{:?} {pairs:?}: {reason}",
            f.codec()
        );
    }
}

#[test]
fn datadog_table() {
    const DD: &str = "x-datadog-trace-id";
    const P: &str = "x-datadog-parent-id";
    const S: &str = "x-datadog-sampling-priority";
    const T: &str = "x-datadog-tags";
    let lower = "000000000000000000000000000004d2"; // 1234
    let cases: Rows<'_> = &[
        (
            &[(DD, "1234"), (P, "5678"), (S, "1")],
            Ok(Some((lower, Some("000000000000162e"), Sampled))),
            "64-bit ids, auto keep",
        ),
        (
            &[(DD, "1234"), (P, "5678"), (S, "2")],
            Ok(Some((lower, Some("000000000000162e"), Sampled))),
            "user keep",
        ),
        (
            &[(DD, "1234"), (P, "5678"), (S, "0")],
            Ok(Some((lower, Some("000000000000162e"), NotSampled))),
            "auto reject",
        ),
        (
            &[(DD, "1234"), (P, "5678"), (S, "-1")],
            Ok(Some((lower, Some("000000000000162e"), NotSampled))),
            "user reject",
        ),
        (
            &[(DD, "1234"), (P, "5678")],
            Ok(Some((lower, Some("000000000000162e"), Deferred))),
            "no priority: no decision",
        ),
        (
            &[(DD, "1234")],
            Ok(Some((lower, None, Deferred))),
            "no parent id",
        ),
        (
            &[(DD, "1234"), (P, "0")],
            Ok(Some((lower, None, Deferred))),
            "parent id 0 means none",
        ),
        (
            &[
                (DD, "1234"),
                (P, "5678"),
                (T, "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4"),
            ],
            Ok(Some((
                "640cfd8d0000000000000000000004d2",
                Some("000000000000162e"),
                Deferred,
            ))),
            "upper 64 bits from _dd.p.tid",
        ),
        (
            &[(DD, "1234"), (T, "_dd.p.tid=640CFD8D00000000")],
            Ok(Some((lower, None, Deferred))),
            "malformed tid (upper case) ignored, as Datadog does",
        ),
        (
            &[(DD, "1234"), (T, "_dd.p.tid=640cfd8d0000000")],
            Ok(Some((lower, None, Deferred))),
            "tid of 15 digits ignored",
        ),
        (
            &[(DD, "1234"), (T, "garbage,_dd.p.tid=640cfd8d00000000")],
            Ok(Some((lower, None, Deferred))),
            "malformed tags dropped whole",
        ),
        (
            &[(DD, "18446744073709551615")],
            Ok(Some(("0000000000000000ffffffffffffffff", None, Deferred))),
            "largest lower half",
        ),
        (&[(P, "5678"), (S, "1")], Ok(None), "no trace id: nothing"),
        (&[(DD, "0")], Err(ErrorKind::ZeroTraceId), "zero trace id"),
        (&[(DD, "12a")], Err(ErrorKind::DecimalId), "hex trace id"),
        (
            &[(DD, "18446744073709551616")],
            Err(ErrorKind::DecimalId),
            "over 64 bits",
        ),
        (&[(DD, "-5")], Err(ErrorKind::DecimalId), "negative id"),
        (
            &[(DD, "1234"), (P, "x")],
            Err(ErrorKind::DecimalId),
            "bad parent id",
        ),
        (
            &[(DD, "1234"), (S, "high")],
            Err(ErrorKind::SamplingValue),
            "bad priority",
        ),
        (
            &[(DD, "1234"), (DD, "1234")],
            Err(ErrorKind::Duplicate),
            "repeated trace id",
        ),
    ];
    check_headers(&DatadogFormat, cases);
}

#[test]
fn datadog_extras_round_trip() {
    let h = headers(&[
        ("x-datadog-trace-id", "1234"),
        ("x-datadog-parent-id", "5678"),
        ("x-datadog-sampling-priority", "2"),
        ("x-datadog-origin", "synthetics"),
        ("x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=640cfd8d00000000"),
    ]);
    let parts = DatadogFormat.decode(&h).unwrap();
    let mut out = HeaderMap::new();
    DatadogFormat.encode(&parts, &mut out);
    assert_eq!(out["x-datadog-trace-id"], "1234");
    assert_eq!(out["x-datadog-parent-id"], "5678");
    assert_eq!(
        out["x-datadog-sampling-priority"], "2",
        "exact priority kept"
    );
    assert_eq!(out["x-datadog-origin"], "synthetics");
    assert_eq!(
        out["x-datadog-tags"], "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4",
        "tid first, rewritten from the id"
    );
}

#[test]
fn ot_table() {
    const T: &str = "ot-tracer-traceid";
    const S: &str = "ot-tracer-spanid";
    const M: &str = "ot-tracer-sampled";
    let cases: Rows<'_> = &[
        (
            &[(T, TID), (S, SID), (M, "true")],
            Ok(Some((TID, Some(SID), Sampled))),
            "128-bit, sampled",
        ),
        (
            &[(T, "a3ce929d0e0e4736"), (S, SID), (M, "false")],
            Ok(Some((
                "0000000000000000a3ce929d0e0e4736",
                Some(SID),
                NotSampled,
            ))),
            "64-bit",
        ),
        (
            &[(T, "3ce929d0e0e4736"), (S, "f067aa0ba902b7")],
            Ok(Some((
                "000000000000000003ce929d0e0e4736",
                Some(SID),
                Deferred,
            ))),
            "leading zeros omitted (as Python writes), no sampled header",
        ),
        (
            &[(T, TID), (S, SID), (M, "1")],
            Ok(Some((TID, Some(SID), Sampled))),
            "1 is true (Go's ParseBool)",
        ),
        (
            &[(T, TID), (S, SID), (M, "F")],
            Ok(Some((TID, Some(SID), NotSampled))),
            "F is false",
        ),
        (&[(S, SID)], Ok(None), "no trace id: nothing"),
        (
            &[(T, TID)],
            Err(ErrorKind::Missing),
            "trace id without span id",
        ),
        (
            &[(T, TID), (S, SID), (M, "yes")],
            Err(ErrorKind::SamplingValue),
            "yes is not a boolean",
        ),
        (
            &[(T, "0"), (S, SID)],
            Err(ErrorKind::ZeroTraceId),
            "zero trace id",
        ),
        (
            &[(T, TID), (S, "0000000000000000")],
            Err(ErrorKind::ZeroSpanId),
            "zero span id",
        ),
        (
            &[(T, "4bf92f3577b34da6a3ce929d0e0e47361"), (S, SID)],
            Err(ErrorKind::HexId),
            "33 digits",
        ),
        (
            &[(T, TID), (S, "x")],
            Err(ErrorKind::HexId),
            "span id not hex",
        ),
        (
            &[(T, TID), (T, TID), (S, SID)],
            Err(ErrorKind::Duplicate),
            "repeated trace id",
        ),
    ];
    check_headers(&OtFormat, cases);
}

#[test]
fn adapters_read_like_their_codecs() {
    let tp = format!("00-{TID}-{SID}-01");
    let cases: Rows<'_> = &[
        (
            &[("traceparent", tp.as_str())],
            Ok(Some((TID, Some(SID), Sampled))),
            "W3C traceparent",
        ),
        (
            &[("traceparent", tp.as_str()), ("traceparent", tp.as_str())],
            Err(ErrorKind::Duplicate),
            "two traceparents are invalid",
        ),
        (
            &[(
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            )],
            Err(ErrorKind::UpperCaseHex),
            "W3C is lower case only",
        ),
    ];
    check_headers(&TraceContextFormat, cases);
    let b3 = format!("{TID}-{SID}-d");
    let cases: Rows<'_> = &[
        (
            &[("b3", b3.as_str())],
            Ok(Some((TID, Some(SID), Debug))),
            "single header, debug",
        ),
        (
            &[("b3", "0")],
            Ok(None),
            "sampling-only b3 carries no trace",
        ),
        (
            &[
                ("x-b3-traceid", TID),
                ("x-b3-spanid", SID),
                ("x-b3-sampled", "0"),
            ],
            Ok(Some((TID, Some(SID), NotSampled))),
            "multi header",
        ),
        (
            &[("x-b3-traceid", TID), ("x-b3-spanid", SID)],
            Ok(Some((TID, Some(SID), Deferred))),
            "multi header without sampling",
        ),
        (
            &[
                ("b3", b3.as_str()),
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", SID),
            ],
            Ok(Some((TID, Some(SID), Debug))),
            "single wins over multi",
        ),
        (
            &[("b3", "1-2")],
            Err(ErrorKind::TraceId),
            "malformed single",
        ),
    ];
    check_headers(&B3Format::single(), cases);
}

#[test]
fn tracestate_rides_with_traceparent_and_bad_tracestate_is_dropped() {
    let tp = format!("00-{TID}-{SID}-01");
    let h = headers(&[
        ("traceparent", &tp),
        ("tracestate", "rojo=1"),
        ("tracestate", "congo=2"),
    ]);
    let parts = TraceContextFormat.decode(&h).unwrap();
    assert_eq!(
        parts.trace.unwrap().extras,
        Extras::TraceState("rojo=1,congo=2".into()),
        "several tracestate headers are one list"
    );
    let h = headers(&[("traceparent", &tp), ("tracestate", "Bad=1")]);
    let parts = TraceContextFormat.decode(&h).unwrap();
    assert_eq!(
        parts.trace.unwrap().extras,
        Extras::None,
        "an invalid tracestate is dropped, the trace kept"
    );
}

fn members(parts: &Parts<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(b) = &parts.baggage {
        b.for_each(&mut |k, v| out.push((k.to_owned(), v.to_owned())));
    }
    out
}

#[test]
fn baggage_in_every_form() {
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let h = headers(&[
        ("uberctx-user", "alice%20smith"),
        ("uberctx-bad", "\u{e9}"),
        ("uber-trace-id", "abc:def:0:1"),
    ]);
    let parts = JaegerFormat.decode(&h);
    // A non-ASCII value is skipped; the valid member is read, URL-decoded.
    assert_eq!(
        members(&parts.unwrap()),
        [pair("user", "alice smith")],
        "uberctx values are URL-encoded"
    );
    let h = headers(&[
        ("ot-baggage-user", "alice smith"),
        ("ot-baggage-tenant", "acme"),
    ]);
    let parts = OtFormat.decode(&h).unwrap();
    assert!(
        parts.trace.is_none(),
        "baggage without a trace is still read"
    );
    assert_eq!(
        members(&parts),
        [pair("user", "alice smith"), pair("tenant", "acme")],
        "ot-baggage values are raw"
    );
    let h = headers(&[("baggage", "a=1,bad key=2"), ("baggage", "b=%C3%A9")]);
    assert_eq!(
        members(&BaggageFormat.decode(&h).unwrap()),
        [pair("a", "1"), pair("b", "é")],
        "invalid members skipped, headers joined"
    );
    let h = headers(&[("baggage", "bad key=2")]);
    assert_eq!(
        BaggageFormat.decode(&h).unwrap_err().error().kind(),
        ErrorKind::Key,
        "nothing valid: refused with the reason"
    );

    // Any baggage form into any other.
    let h = headers(&[("ot-baggage-user", "alice smith")]);
    let parts = OtFormat.decode(&h).unwrap();
    let mut out = HeaderMap::new();
    JaegerFormat.encode(&parts, &mut out);
    BaggageFormat.encode(&parts, &mut out);
    OtFormat.encode(&parts, &mut out);
    assert_eq!(out["uberctx-user"], "alice%20smith");
    assert_eq!(out["baggage"], "user=alice%20smith");
    assert_eq!(out["ot-baggage-user"], "alice smith");

    // Members given by the caller: one with a key that is no token is left out, the
    // others still go.
    let pairs = [("ok", "1"), ("bad key", "2")];
    let parts = Parts::new(None, Some(threadline::format::BaggageParts::pairs(&pairs)));
    let mut out = HeaderMap::new();
    BaggageFormat.encode(&parts, &mut out);
    JaegerFormat.encode(&parts, &mut out);
    assert_eq!(out["baggage"], "ok=1");
    assert_eq!(out["uberctx-ok"], "1");
    assert!(!out.keys().any(|k| k.as_str().contains("bad")), "{out:?}");
}

#[test]
fn composite_precedence_and_report() {
    let tp = format!("00-{TID}-{SID}-01");
    let formats = Composite::new()
        .read(TraceContextFormat)
        .read(XRayFormat)
        .read(DatadogFormat)
        .read(JaegerFormat);
    // A broken first format does not hide a valid later one; the broken one is reported.
    let h = headers(&[
        ("traceparent", "garbage"),
        (
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        ),
    ]);
    let d = formats.decode(&h);
    assert_eq!(d.trace_from, Some(Codec::XRay), "first valid reader wins");
    assert_eq!(d.report.len(), 1, "{:?}", d.report);
    assert_eq!(d.report[0].header(), "traceparent");
    assert_eq!(d.report[0].error().kind(), ErrorKind::Length);
    // Two formats naming different traces: the first is kept, the other reported.
    let h = headers(&[
        ("traceparent", &tp),
        (
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        ),
        ("uber-trace-id", &format!("{TID}:{SID}:0:1")),
    ]);
    let d = formats.decode(&h);
    assert_eq!(d.trace_from, Some(Codec::TraceParent));
    assert_eq!(d.parts.trace.unwrap().trace_id.to_string(), TID);
    assert_eq!(
        d.report.len(),
        1,
        "the Jaeger header names the same trace: no report; {:?}",
        d.report
    );
    assert_eq!(d.report[0].header(), "x-amzn-trace-id");
    assert_eq!(d.report[0].error().codec(), Codec::XRay);
    assert_eq!(d.report[0].error().kind(), ErrorKind::Conflict);
    assert!(
        !d.report[0].to_string().contains("5759e988"),
        "reports never hold values"
    );
    // The same report when the caller read W3C on a fast path of its own.
    let tid = threadline::codec::TraceId::from_hex(TID).unwrap();
    let conflicts = formats.conflicts(&h, Codec::TraceParent, tid);
    assert_eq!(conflicts, d.report);
    // Nothing at all: nothing decoded, nothing reported, no allocation needed.
    let empty = HeaderMap::new();
    let d = formats.decode(&empty);
    assert!(d.parts.is_empty() && d.report.is_empty() && d.trace_from.is_none());
    // Baggage comes from the first reader that has any, independently of the trace.
    let formats = Composite::default().read(JaegerFormat);
    let h = headers(&[
        ("uber-trace-id", &format!("{TID}:{SID}:0:1")),
        ("uberctx-k", "v"),
    ]);
    let d = formats.decode(&h);
    assert_eq!(
        (d.trace_from, d.baggage_from),
        (Some(Codec::Jaeger), Some(Codec::Jaeger))
    );
}

#[test]
fn composite_writes_every_writer_without_overwriting() {
    let formats = Composite::new()
        .write(TraceContextFormat)
        .write(CloudTraceFormat)
        .write(B3Format::multi())
        .write(DatadogFormat);
    let t = TraceParts::new(
        threadline::codec::TraceId::from_hex(TID).unwrap(),
        threadline::codec::SpanId::from_hex(SID),
        Sampling::Sampled,
    );
    let mut out = HeaderMap::new();
    out.insert("x-cloud-trace-context", "kept".parse().unwrap());
    formats.encode(&Parts::trace(t), &mut out);
    assert_eq!(out["traceparent"], format!("00-{TID}-{SID}-01").as_str());
    assert_eq!(out["x-cloud-trace-context"], "kept", "never overwritten");
    assert_eq!(out["x-b3-sampled"], "1");
    assert_eq!(
        out["x-datadog-trace-id"], "11803532876627986230",
        "lower 64 bits in decimal"
    );
    assert_eq!(out["x-datadog-tags"], "_dd.p.tid=4bf92f3577b34da6");
}

#[test]
fn string_map_carriers_work_too() {
    let mut m = std::collections::HashMap::new();
    m.insert(
        "X-Amzn-Trace-Id".to_owned(),
        "Root=1-5759e988-bd862e3fe1be46a994272793".to_owned(),
    );
    m.insert("OT-Baggage-User".to_owned(), "alice".to_owned());
    let t = XRayFormat.decode(&m).unwrap().trace.unwrap();
    assert_eq!(
        t.trace_id.to_string(),
        "5759e988bd862e3fe1be46a994272793",
        "names match in any case"
    );
    let parts = OtFormat.decode(&m).unwrap();
    assert_eq!(
        members(&parts),
        [("User".to_owned(), "alice".to_owned())],
        "prefix matched in any case"
    );
}
