//! Table tests for every wire-format rule (see ANCHORS: traceparent, tracestate,
//! baggage, B3, correlation id). Each row carries the reason it exists.

use threadline::codec::{
    B3, B3Sampling, Baggage, CorrelationId, ErrorKind, IdGenerator, TraceParent, TraceState,
};

const TID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PID: &str = "00f067aa0ba902b7";

#[test]
fn traceparent_table() {
    let long_v1 = format!("01-{TID}-{PID}-01-extra-data");
    let v00_extra = format!("00-{TID}-{PID}-01-extra");
    let v00_extra_char = format!("00-{TID}-{PID}-01x");
    let higher_no_dash = format!("cc-{TID}-{PID}-01x");
    let ok = format!("00-{TID}-{PID}-01");
    let unsampled = format!("00-{TID}-{PID}-00");
    let unknown_flags = format!("00-{TID}-{PID}-ff");
    let ows = format!("  00-{TID}-{PID}-01\t");
    let upper_tid = format!("00-{}-{PID}-01", TID.to_uppercase());
    let upper_pid = format!("00-{TID}-{}-01", "00F067AA0BA902B7");
    let upper_flags = format!("00-{TID}-{PID}-0A");
    let upper_ver = format!("0A-{TID}-{PID}-01");
    let zero_tid = format!("00-{}-{PID}-01", "0".repeat(32));
    let zero_pid = format!("00-{TID}-{}-01", "0".repeat(16));
    let ff = format!("ff-{TID}-{PID}-01");
    let short = format!("00-{TID}-{PID}-0");
    let bad_sep = format!("00_{TID}-{PID}-01");
    let bad_sep2 = format!("00-{TID}_{PID}-01");
    let bad_hex_tid = format!("00-{}g-{PID}-01", &TID[..31]);
    let bad_hex_pid = format!("00-{TID}-{}z-01", &PID[..15]);
    let bad_flags = format!("00-{TID}-{PID}-0g");
    let bad_ver = format!("0g-{TID}-{PID}-01");
    let tid_short_pid_long = format!("00-{}-{}0-01", &TID[..31], PID);

    let cases: Vec<(&str, Result<(), ErrorKind>, &str)> = vec![
        (&ok, Ok(()), "canonical version-00 value"),
        (&unsampled, Ok(()), "flags 00 is valid"),
        (
            &unknown_flags,
            Ok(()),
            "unknown flag bits are accepted (zeroed on output)",
        ),
        (
            &ows,
            Ok(()),
            "HTTP optional white space around the value is ignored",
        ),
        (
            &long_v1,
            Ok(()),
            "a higher version may be longer, parsed by its first four fields",
        ),
        (
            &upper_tid,
            Err(ErrorKind::UpperCaseHex),
            "upper-case trace id",
        ),
        (
            &upper_pid,
            Err(ErrorKind::UpperCaseHex),
            "upper-case parent id",
        ),
        (
            &upper_flags,
            Err(ErrorKind::UpperCaseHex),
            "upper-case flags",
        ),
        (
            &upper_ver,
            Err(ErrorKind::UpperCaseHex),
            "upper-case version",
        ),
        (&zero_tid, Err(ErrorKind::ZeroTraceId), "all-zero trace id"),
        (&zero_pid, Err(ErrorKind::ZeroSpanId), "all-zero parent id"),
        (
            &ff,
            Err(ErrorKind::ForbiddenVersion),
            "version ff is forbidden",
        ),
        (
            &v00_extra,
            Err(ErrorKind::TrailingData),
            "version 00 with extra fields",
        ),
        (
            &v00_extra_char,
            Err(ErrorKind::TrailingData),
            "version 00 with one extra char",
        ),
        (
            &higher_no_dash,
            Err(ErrorKind::Separator),
            "higher version: data after flags needs a dash",
        ),
        (&short, Err(ErrorKind::Length), "shorter than 55 characters"),
        ("", Err(ErrorKind::Empty), "empty"),
        ("   ", Err(ErrorKind::Empty), "only white space"),
        (&bad_sep, Err(ErrorKind::Separator), "wrong first separator"),
        (
            &bad_sep2,
            Err(ErrorKind::Separator),
            "wrong second separator",
        ),
        (&bad_hex_tid, Err(ErrorKind::TraceId), "non-hex in trace id"),
        (&bad_hex_pid, Err(ErrorKind::SpanId), "non-hex in parent id"),
        (&bad_flags, Err(ErrorKind::Flags), "non-hex flags"),
        (&bad_ver, Err(ErrorKind::Version), "non-hex version"),
        (
            &tid_short_pid_long,
            Err(ErrorKind::Separator),
            "fields shifted by one",
        ),
    ];
    for (input, expected, reason) in cases {
        let got = TraceParent::decode(input.as_bytes())
            .map(|_| ())
            .map_err(|e| e.kind());
        assert_eq!(got, expected, "{reason}: {input:?}");
    }
}

#[test]
fn traceparent_fields_and_encoding() {
    let tp = TraceParent::decode(format!("00-{TID}-{PID}-01").as_bytes()).unwrap();
    assert_eq!(tp.trace_id().to_string(), TID);
    assert_eq!(tp.parent_id().to_string(), PID);
    assert!(tp.flags().is_sampled());
    assert_eq!(tp.encode().as_str(), format!("00-{TID}-{PID}-01"));

    // unknown flags are zeroed when propagating
    let tp = TraceParent::decode(format!("00-{TID}-{PID}-ff").as_bytes()).unwrap();
    assert_eq!(tp.flags().bits(), 0xff, "flags kept as received");
    assert_eq!(
        tp.encode().as_str(),
        format!("00-{TID}-{PID}-03"),
        "only known bits go out"
    );

    // a higher version is sent on as version 00
    let tp = TraceParent::decode(format!("01-{TID}-{PID}-01-what-ever").as_bytes()).unwrap();
    assert_eq!(tp.version(), 1);
    assert_eq!(tp.encode().as_str(), format!("00-{TID}-{PID}-01"));
}

#[test]
fn traceparent_child_and_root() {
    let tp = TraceParent::decode(format!("00-{TID}-{PID}-01").as_bytes()).unwrap();
    let a = tp.child();
    let b = tp.child();
    assert_eq!(a.trace_id(), tp.trace_id(), "child keeps the trace id");
    assert_ne!(a.parent_id(), tp.parent_id(), "child has a new parent id");
    assert_ne!(
        a.parent_id(),
        b.parent_id(),
        "each call gets its own parent id"
    );
    assert_eq!(a.flags(), tp.flags());
    let root = TraceParent::new_root(true);
    assert!(root.flags().is_sampled());
    assert_ne!(root.trace_id(), TraceParent::new_root(true).trace_id());
    assert!(TraceParent::decode(root.encode().as_bytes()).is_ok());
}

#[test]
fn traceparent_duplicates_are_invalid() {
    let v = format!("00-{TID}-{PID}-01");
    let one = TraceParent::decode_all([v.as_bytes()]).unwrap();
    assert!(one.is_some());
    let none = TraceParent::decode_all(std::iter::empty::<&[u8]>()).unwrap();
    assert!(none.is_none());
    let two = TraceParent::decode_all([v.as_bytes(), v.as_bytes()]);
    assert_eq!(
        two.unwrap_err().kind(),
        ErrorKind::Duplicate,
        "two traceparent headers"
    );
}

#[test]
fn tracestate_table() {
    let max_members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let key_256 = format!("a{}=v", "b".repeat(255));
    let key_257 = format!("a{}=v", "b".repeat(256));
    let value_256 = format!("k={}", "v".repeat(256));
    let value_257 = format!("k={}", "v".repeat(257));
    let at_key_256 = format!("{}@sys=v", "t".repeat(252));
    let at_key_257 = format!("{}@sys=v", "t".repeat(253));
    let system_15 = format!("t@{}=v", "s".repeat(15));
    let max_joined = max_members.join(",");
    let too_many_joined = too_many.join(",");
    let cases: Vec<(&str, Result<(), ErrorKind>, &str)> = vec![
        (
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            Ok(()),
            "two simple members",
        ),
        ("rojo=1 , congo=2", Ok(()), "OWS around members"),
        ("rojo=1,,congo=2", Ok(()), "empty members are allowed"),
        ("tenant@vendor=x", Ok(()), "a key with @"),
        ("1tenant@vendor=x", Ok(()), "a key may start with a digit"),
        ("a_-*/9=x", Ok(()), "every allowed key character"),
        ("k=a b", Ok(()), "space inside a value"),
        (&max_joined, Ok(()), "32 members is the maximum"),
        (&key_256, Ok(()), "256-char key"),
        (&value_256, Ok(()), "256-char value"),
        (&at_key_256, Ok(()), "256-char key with an @"),
        (&system_15, Ok(()), "any number of characters after an @"),
        (
            &too_many_joined,
            Err(ErrorKind::TooManyMembers),
            "33 members",
        ),
        (&key_257, Err(ErrorKind::Key), "257-char key"),
        (&value_257, Err(ErrorKind::Value), "257-char value"),
        (&at_key_257, Err(ErrorKind::Key), "257-char key with an @"),
        ("Rojo=1", Err(ErrorKind::Key), "upper-case key"),
        ("1abc=1", Ok(()), "a key may start with a digit"),
        ("foo@@bar=1", Ok(()), "@ is an ordinary key character"),
        ("foo@=1", Ok(()), "@ may end a key"),
        ("t@vvvvvvvvvvvvvvv=1", Ok(()), "no length rule after @"),
        (
            "@foo=1",
            Err(ErrorKind::Key),
            "a key starts with lcalpha or a digit",
        ),
        (
            "_a=1",
            Err(ErrorKind::Key),
            "a key starts with lcalpha or a digit",
        ),
        (
            "a=1,a=2",
            Ok(()),
            "a duplicated key does not invalidate the list",
        ),
        ("a=b=c", Err(ErrorKind::Value), "= inside a value"),
        ("novalue", Err(ErrorKind::Separator), "member without ="),
        ("k=", Err(ErrorKind::Value), "empty value"),
        (
            "k=v ",
            Ok(()),
            "trailing OWS of the member is not part of the value",
        ),
        ("k=v\u{7f}", Err(ErrorKind::Value), "DEL in a value"),
        ("t@=v", Ok(()), "@ may end a key"),
    ];
    for (input, expected, reason) in cases {
        let got = TraceState::validate(input.as_bytes())
            .map(|_| ())
            .map_err(|e| e.kind());
        assert_eq!(got, expected, "{reason}: {input:?}");
    }
}

#[test]
fn tracestate_multiple_headers_are_one_list() {
    let ts = TraceState::decode_all([&b"a=1"[..], b"b=2"])
        .unwrap()
        .unwrap();
    assert_eq!(ts.as_str(), "a=1,b=2");
    assert_eq!(ts.len(), 2);
    let dup = TraceState::decode_all([&b"a=1"[..], b"b=2,a=2"])
        .unwrap()
        .unwrap();
    assert_eq!(
        dup.as_str(),
        "a=1,b=2",
        "a key repeated across headers: the list is kept without the later one"
    );
    assert_eq!(
        TraceState::decode_all([&b""[..], b" "]).unwrap(),
        None,
        "empty headers are no list"
    );
}

#[test]
fn tracestate_duplicates_keep_the_first_member() {
    let ts = TraceState::decode(b"a=1, b=2, a=3, c=4, b=5").unwrap();
    assert_eq!(ts.as_str(), "a=1,b=2,c=4");
    assert_eq!(ts.len(), 3);
    let h = http::HeaderValue::from_static("x=1,y=2");
    assert_eq!(TraceState::from_header(&h).unwrap().header_value(), &h);
}

#[test]
fn tracestate_trimming_drops_large_entries_first_then_from_the_right() {
    let big = format!("big={}", "x".repeat(200));
    let list = format!("a=1,{big},b=2,c=3");
    let ts = TraceState::decode(list.as_bytes()).unwrap();
    let t = ts.trimmed(64).unwrap();
    assert_eq!(t.as_str(), "a=1,b=2,c=3", "the >128 entry goes first");
    let t = ts.trimmed(7).unwrap();
    assert_eq!(t.as_str(), "a=1,b=2", "then whole entries from the right");
    assert!(ts.trimmed(2).is_none(), "nothing fits");
    let t = ts.trimmed(10_000).unwrap();
    assert_eq!(t, ts, "within the limit it is kept as is");
}

#[test]
fn baggage_table() {
    let cases: Vec<(&str, Result<usize, ErrorKind>, &str)> = vec![
        ("userId=alice", Ok(1), "one member"),
        (
            "userId=alice,serverNode=DF%2028,isProduction=false",
            Ok(3),
            "W3C example",
        ),
        (
            "k=v;prop1;prop2=x",
            Ok(1),
            "properties, bare and with value",
        ),
        (
            " k = v , j = w ",
            Ok(2),
            "OWS around keys, values and members",
        ),
        ("k=", Ok(1), "empty value is allowed"),
        ("k=v,,j=w", Err(ErrorKind::EmptyMember), "empty member"),
        ("k=v,", Err(ErrorKind::EmptyMember), "trailing comma"),
        (",k=v", Err(ErrorKind::EmptyMember), "leading comma"),
        ("k=v, ,j=w", Err(ErrorKind::EmptyMember), "blank member"),
        ("", Err(ErrorKind::Empty), "empty header"),
        ("k=%E2%9C%93", Ok(1), "percent-encoded UTF-8"),
        ("k v=1", Err(ErrorKind::Key), "space in key"),
        ("=1", Err(ErrorKind::Key), "empty key"),
        ("k=a b", Err(ErrorKind::Value), "space in value"),
        ("k=a\"b", Err(ErrorKind::Value), "quote in value"),
        ("k=a\\b", Err(ErrorKind::Value), "backslash in value"),
        ("k=%zz", Err(ErrorKind::PercentEncoding), "bad escape"),
        ("k=%4", Err(ErrorKind::PercentEncoding), "truncated escape"),
        ("k", Err(ErrorKind::Separator), "member without ="),
        ("k=v;p q", Err(ErrorKind::Key), "bad property key"),
        ("k=v;", Err(ErrorKind::Key), "a trailing ; needs a property"),
        ("k=v;;p", Err(ErrorKind::Key), "empty property"),
        ("k=v\u{1}", Err(ErrorKind::InvalidChar), "control character"),
    ];
    for (input, expected, reason) in cases {
        let got = Baggage::validate(input.as_bytes(), 64, 8192).map_err(|e| e.kind());
        assert_eq!(got, expected, "{reason}: {input:?}");
    }
    assert_eq!(
        Baggage::validate(&[b'k', b'=', 0xff], 64, 8192)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidChar,
        "non-UTF-8"
    );
}

#[test]
fn baggage_limits_keep_whole_members_only() {
    let members: Vec<String> = (0..500).map(|i| format!("k{i}=v{i}")).collect();
    let joined = members.join(",");
    assert_eq!(
        Baggage::validate(joined.as_bytes(), 64, 8192)
            .unwrap_err()
            .kind(),
        ErrorKind::TooManyMembers,
        "strict validation refuses 500 members"
    );
    let (kept, dropped) = Baggage::collect([joined.as_bytes()], 64, 8192);
    let kept = kept.unwrap();
    assert_eq!(kept.iter().count(), 64, "64 members kept");
    assert_eq!(dropped, 436);
    assert_eq!(
        kept.iter().last().unwrap().as_str(),
        "k63=v63",
        "in order, whole members"
    );

    let big = format!("a=1,b={},c=3", "x".repeat(9000));
    let (kept, dropped) = Baggage::collect([big.as_bytes()], 64, 8192);
    assert_eq!(
        kept.unwrap().as_str(),
        "a=1,c=3",
        "the oversized member is dropped whole"
    );
    assert_eq!(dropped, 1);

    let (kept, dropped) = Baggage::collect([&b"a=1,bad key=2"[..], b"c=3"], 64, 8192);
    assert_eq!(
        kept.unwrap().as_str(),
        "a=1,c=3",
        "invalid member dropped, headers joined"
    );
    assert_eq!(dropped, 1);

    // the W3C minimum is accepted exactly
    let exactly: Vec<String> = (0..64)
        .map(|i| format!("k{i}={}", "v".repeat(120)))
        .collect();
    let exactly = exactly.join(",");
    assert!(exactly.len() <= 8192);
    assert_eq!(Baggage::validate(exactly.as_bytes(), 64, 8192), Ok(64));
}

#[test]
fn baggage_values_and_properties() {
    let b = Baggage::decode(b"user=J%C3%BCrgen;ttl=60;private, plain=x").unwrap();
    let m: Vec<_> = b.iter().collect();
    assert_eq!(m[0].key(), "user");
    assert_eq!(m[0].value(), "Jürgen");
    assert_eq!(m[0].raw_value(), "J%C3%BCrgen");
    assert_eq!(
        m[0].properties().collect::<Vec<_>>(),
        vec![("ttl", Some("60")), ("private", None)]
    );
    assert_eq!(m[1].properties().count(), 0);
    assert_eq!(b.get("plain").as_deref(), Some("x"));
    assert_eq!(b.get("missing"), None);
    let enc = Baggage::encode([("name", "a b,c;d%"), ("ok", "plain")]).unwrap();
    assert_eq!(enc.as_str(), "name=a%20b%2Cc%3Bd%25,ok=plain");
    assert_eq!(enc.get("name").as_deref(), Some("a b,c;d%"));
    assert!(Baggage::encode([("bad key", "v")]).is_err());
}

#[test]
fn b3_table() {
    let t32 = "80f198ee56343ba864fe8b2a57d3eff7";
    let t16 = "64fe8b2a57d3eff7";
    let s = "e457b5a2e4d86bd1";
    let p = "05e3ac9a4f6e3b90";
    let cases: Vec<(String, Result<(), ErrorKind>, &str)> = vec![
        (format!("{t32}-{s}-1-{p}"), Ok(()), "all four fields"),
        (format!("{t32}-{s}"), Ok(()), "ids only"),
        (format!("{t16}-{s}-d"), Ok(()), "64-bit trace id, debug"),
        ("0".into(), Ok(()), "deny only"),
        ("1".into(), Ok(()), "accept only"),
        ("d".into(), Ok(()), "debug only"),
        (
            format!("{}-{s}-1", t32.to_uppercase()),
            Err(ErrorKind::UpperCaseHex),
            "upper-case trace id",
        ),
        (
            format!("{t32}-{s}-x"),
            Err(ErrorKind::Sampling),
            "bad sampling state",
        ),
        (
            format!("{t32}-{s}-1-{p}-extra"),
            Err(ErrorKind::TrailingData),
            "five fields",
        ),
        (
            format!("{}-{s}", "0".repeat(32)),
            Err(ErrorKind::ZeroTraceId),
            "zero trace id",
        ),
        (
            format!("{t32}-{}", "0".repeat(16)),
            Err(ErrorKind::ZeroSpanId),
            "zero span id",
        ),
        (t32.to_string(), Err(ErrorKind::Separator), "trace id alone"),
        (
            format!("{}-{s}", &t32[..20]),
            Err(ErrorKind::TraceId),
            "20-hex trace id",
        ),
        ("x".into(), Err(ErrorKind::Sampling), "single bad char"),
        ("".into(), Err(ErrorKind::Empty), "empty"),
    ];
    for (input, expected, reason) in cases {
        let got = B3::decode_single(input.as_bytes())
            .map(|_| ())
            .map_err(|e| e.kind());
        assert_eq!(got, expected, "{reason}: {input:?}");
    }
}

#[test]
fn b3_converts_both_ways() {
    let b3 = B3::decode_single(b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90").unwrap();
    assert_eq!(b3.sampling(), Some(B3Sampling::Debug));
    assert_eq!(b3.parent_span_id().unwrap().to_string(), "05e3ac9a4f6e3b90");
    let tp = b3.to_trace_parent().unwrap();
    assert_eq!(
        tp.trace_id().to_string(),
        "000000000000000064fe8b2a57d3eff7",
        "64-bit ids are left-padded"
    );
    assert_eq!(tp.parent_id().to_string(), "e457b5a2e4d86bd1");
    assert!(tp.flags().is_sampled(), "debug implies sampled");
    let back = B3::from_trace_parent(&tp);
    assert_eq!(
        back.encode_single().as_str(),
        "000000000000000064fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
    );
    let multi: Vec<(String, String)> = back
        .encode_multi()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_owned(), v.as_str().to_owned()))
        .collect();
    assert_eq!(
        multi,
        vec![
            (
                "x-b3-traceid".to_owned(),
                "000000000000000064fe8b2a57d3eff7".to_owned()
            ),
            ("x-b3-spanid".to_owned(), "e457b5a2e4d86bd1".to_owned()),
            ("x-b3-sampled".to_owned(), "1".to_owned()),
        ]
    );
    assert!(
        B3::decode_single(b"0").unwrap().to_trace_parent().is_none(),
        "deny-only has no ids"
    );
    assert_eq!(
        B3::decode_single(b"0").unwrap().encode_single().as_str(),
        "0"
    );
}

#[test]
fn b3_multi_table() {
    let t = Some(&b"80f198ee56343ba864fe8b2a57d3eff7"[..]);
    let s = Some(&b"e457b5a2e4d86bd1"[..]);
    let ok = B3::decode_multi(t, s, None, Some(b"1"), None)
        .unwrap()
        .unwrap();
    assert_eq!(ok.sampling(), Some(B3Sampling::Accept));
    let debug = B3::decode_multi(t, s, None, Some(b"0"), Some(b"1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        debug.sampling(),
        Some(B3Sampling::Debug),
        "flags 1 means debug and wins over sampled"
    );
    assert_eq!(
        B3::decode_multi(None, None, None, None, None).unwrap(),
        None,
        "nothing set"
    );
    assert_eq!(
        B3::decode_multi(t, None, None, None, None)
            .unwrap_err()
            .kind(),
        ErrorKind::SpanId,
        "trace id without span id"
    );
    for (sampled, expected) in [
        (&b"true"[..], B3Sampling::Accept),
        (b"false", B3Sampling::Deny),
        (b"1", B3Sampling::Accept),
        (b"0", B3Sampling::Deny),
    ] {
        let b3 = B3::decode_multi(t, s, None, Some(sampled), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            b3.sampling(),
            Some(expected),
            "older Zipkin clients send true/false: {sampled:?}"
        );
    }
    assert_eq!(
        B3::decode_multi(t, s, None, Some(b"yes"), None)
            .unwrap_err()
            .kind(),
        ErrorKind::Sampling,
        "other sampled values are malformed"
    );
    for flags in [&b"0"[..], b"2", b"debug", b""] {
        let b3 = B3::decode_multi(t, s, None, Some(b"1"), Some(flags))
            .unwrap()
            .unwrap();
        assert_eq!(
            (b3.ids(), b3.sampling()),
            (ok.ids(), Some(B3Sampling::Accept)),
            "X-B3-Flags other than 1 are ignored: {flags:?}"
        );
    }
    let deferred = B3::decode_single(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1").unwrap();
    assert_eq!(deferred.sampling(), None, "no sampling state: deferred");
    assert!(
        !deferred.to_trace_parent().unwrap().flags().is_sampled(),
        "deferred maps to an unsampled traceparent"
    );
    let deny = B3::decode_multi(None, None, None, Some(b"0"), None)
        .unwrap()
        .unwrap();
    assert_eq!(deny.ids(), None);
}

#[test]
fn correlation_id_table() {
    let long_ok = "a".repeat(128);
    let long_bad = "a".repeat(129);
    let cases: Vec<(&str, Result<(), ErrorKind>, &str)> = vec![
        ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", Ok(()), "UUID v1"),
        ("000003e8-7d5a-21ef-8a00-325096b39f47", Ok(()), "UUID v2"),
        ("6fa459ea-ee8a-3ca4-894e-db77e160355e", Ok(()), "UUID v3"),
        ("f47ac10b-58cc-4372-a567-0e02b2c3d479", Ok(()), "UUID v4"),
        ("886313e1-3b8a-5372-9b90-0c9aee199e5d", Ok(()), "UUID v5"),
        ("1ef21d2f-1207-6660-8c4f-419efbd44d48", Ok(()), "UUID v6"),
        ("0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3", Ok(()), "UUID v7"),
        (
            "F47AC10B-58CC-4372-A567-0E02B2C3D479",
            Ok(()),
            "upper-case UUID",
        ),
        ("01J2Z3Q4R5S6T7V8W9X0Y1Z2A3", Ok(()), "ULID"),
        (
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            Ok(()),
            "nginx $request_id",
        ),
        ("req_42", Ok(()), "short custom id"),
        ("dGhyZWFk+/=", Ok(()), "base64"),
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            Ok(()),
            "AWS X-Amzn-Trace-Id style",
        ),
        (&long_ok, Ok(()), "128 characters"),
        (&long_bad, Err(ErrorKind::Length), "129 characters"),
        ("", Err(ErrorKind::Empty), "empty"),
        ("has space", Err(ErrorKind::InvalidChar), "space"),
        ("a\"b", Err(ErrorKind::InvalidChar), "double quote"),
        ("a'b", Err(ErrorKind::InvalidChar), "single quote"),
        ("a,b", Err(ErrorKind::InvalidChar), "comma"),
        ("a\\b", Err(ErrorKind::InvalidChar), "backslash"),
        ("a\tb", Err(ErrorKind::InvalidChar), "tab"),
        (
            "abc\r\nlevel=ERROR",
            Err(ErrorKind::InvalidChar),
            "CRLF log forging",
        ),
        ("ünïcode", Err(ErrorKind::InvalidChar), "non-ASCII"),
    ];
    for (input, expected, reason) in cases {
        let got = CorrelationId::validate(input.as_bytes(), 128);
        assert_eq!(got.map_err(|e| e.kind()), expected, "{reason}: {input:?}");
    }
}

#[test]
fn generated_ids_are_valid_and_distinct() {
    for generator in [IdGenerator::UuidV4, IdGenerator::UuidV7, IdGenerator::Ulid] {
        let a = generator.generate();
        let b = generator.generate();
        assert_ne!(a, b, "{generator:?} repeats");
        assert!(
            CorrelationId::validate(a.as_str().as_bytes(), 128).is_ok(),
            "{generator:?}: {a}"
        );
    }
    assert_eq!(IdGenerator::UuidV4.generate().as_str().as_bytes()[14], b'4');
    assert_eq!(IdGenerator::UuidV7.generate().as_str().as_bytes()[14], b'7');
    assert_eq!(IdGenerator::Ulid.generate().as_str().len(), 26);
    let custom = IdGenerator::custom(|| "job-1".to_owned()).generate();
    assert_eq!(custom.as_str(), "job-1");
    let unsafe_custom = IdGenerator::custom(|| "bad\nid".to_owned()).generate();
    assert_eq!(
        unsafe_custom.as_str().len(),
        36,
        "an unsafe custom id is replaced by a UUID"
    );
}
