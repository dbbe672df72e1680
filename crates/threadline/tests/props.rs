//! Property tests: no decoder panics on arbitrary bytes; valid values round-trip;
//! invalid ones are rejected with a typed reason.

use proptest::prelude::*;
use threadline::codec::{
    B3, Baggage, CorrelationId, SpanId, TraceFlags, TraceId, TraceParent, TraceState,
};
use threadline::{Policy, Trust};

fn trace_id() -> impl Strategy<Value = TraceId> {
    any::<[u8; 16]>().prop_filter_map("non-zero", TraceId::from_bytes)
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<[u8; 8]>().prop_filter_map("non-zero", SpanId::from_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = TraceParent::decode(&bytes);
        let _ = TraceState::validate(&bytes);
        let _ = TraceState::decode(&bytes);
        let _ = Baggage::validate(&bytes, 64, 8192);
        let _ = Baggage::collect([&bytes[..]], 64, 8192);
        let _ = B3::decode_single(&bytes);
        let _ = B3::decode_multi(Some(&bytes), Some(&bytes), Some(&bytes), Some(&bytes), None);
        let _ = CorrelationId::validate(&bytes, 128);
    }

    #[test]
    fn decoders_never_panic_on_near_valid_text(s in "[0-9a-fA-F\\-=,;% @_*/]{0,120}") {
        let b = s.as_bytes();
        let _ = TraceParent::decode(b);
        let _ = TraceState::validate(b);
        let _ = Baggage::validate(b, 64, 8192);
        let _ = B3::decode_single(b);
    }

    #[test]
    fn baggage_validator_agrees_with_the_member_parser(s in "[a-c =;,%0-9\t\"]{0,40}") {
        baggage_validator_agrees(&s)?;
    }

    #[test]
    fn baggage_validator_agrees_with_the_member_parser_on_list_shapes(
        s in "(([a-c%(]{0,3}=[a-c%0-9A-Fg=;(]{0,5}|,),){0,5}[a-c]{0,2}(=[a-c%0-9]{0,4})?,?"
    ) {
        // Mostly `key=value,...` lists, the shape with a fast path of its own, mixed with
        // the near misses that must fall back to the full state machine.
        let strict = Baggage::validate(s.as_bytes(), 3, 100_000);
        let parsed: Vec<_> = Baggage::members(&s).collect();
        let all_ok = parsed.iter().all(Result::is_ok) && !has_empty_member(&s);
        if parsed.len() > 3 && all_ok {
            prop_assert!(strict.is_err(), "{:?}: over 3 members must be refused", s);
        } else {
            prop_assert_eq!(strict.is_ok(), all_ok, "{:?}: {:?} vs {:?}", s, strict, parsed);
            if let Ok(n) = strict {
                prop_assert_eq!(n, parsed.len());
            }
        }
    }

    #[test]
    fn tracestate_validator_agrees_with_the_abnf(
        s in "(([a-c0-9@*]{0,3}=[a-c0-9 =]{0,3}|[ ,]),){0,5}[a-c]{0,2}(=[a-c0-9]{0,3})?,?"
    ) {
        prop_assert_eq!(
            TraceState::validate(s.as_bytes()).ok(),
            tracestate_reference(&s),
            "{:?}", s
        );
    }

    #[test]
    fn list_validators_agree_with_their_references_on_long_members(
        s in "(([a-z0-9@*_/-]{0,14}=[a-zA-Z0-9 =%;!~]{0,22}|[ ,]),){0,4}[a-z]{0,12}(=[a-z0-9%]{0,20})?,?"
    ) {
        // Keys and values longer than a word (eight bytes), so that the fast paths' scans
        // meet their `,` and `=` at every offset, near the start and far from it.
        prop_assert_eq!(
            TraceState::validate(s.as_bytes()).ok(),
            tracestate_reference(&s),
            "{:?}", s
        );
        baggage_validator_agrees(&s)?;
    }

    #[test]
    fn correlation_ids_round_trip(id in "[!#-&(-+\\--:<-\\[\\]-_a-~]{1,128}") {
        let parsed = CorrelationId::decode(id.as_bytes()).unwrap();
        prop_assert_eq!(parsed.as_str(), id.as_str());
    }

    #[test]
    fn correlation_ids_with_forbidden_bytes_are_rejected(prefix in "[a-z0-9]{1,10}", bad in prop::sample::select(vec!['"', '\'', ',', ';', '\\', '`', ' ', '\t', '\r', '\n', '\u{7f}', 'é'])) {
        let id = format!("{prefix}{bad}x");
        prop_assert!(CorrelationId::decode(id.as_bytes()).is_err(), "{:?}", id);
    }

    #[test]
    fn traceparent_round_trips(t in trace_id(), p in span_id(), flags in 0u8..4) {
        let tp = TraceParent::new(t, p, TraceFlags::new(flags));
        let enc = tp.encode();
        let back = TraceParent::decode(enc.as_bytes()).unwrap();
        prop_assert_eq!(back, tp);
        prop_assert_eq!(enc.as_str().len(), 55);
    }

    #[test]
    fn traceparent_mutations_are_rejected_with_a_reason(t in trace_id(), p in span_id(), pos in 0usize..55, byte in any::<u8>()) {
        let enc = TraceParent::new(t, p, TraceFlags::SAMPLED).encode();
        let mut bytes = enc.as_bytes().to_vec();
        let original = bytes[pos];
        bytes[pos] = byte;
        match TraceParent::decode(&bytes) {
            Ok(tp) => {
                // Only a change to another lower-case hex digit can stay valid.
                prop_assert!(matches!(byte, b'0'..=b'9' | b'a'..=b'f') || byte == original);
                let _ = tp;
            }
            Err(e) => prop_assert!(!e.kind().reason().is_empty()),
        }
    }

    #[test]
    fn b3_round_trips(t in trace_id(), s in span_id(), sampled in any::<bool>()) {
        let tp = TraceParent::new(t, s, TraceFlags::default().with_sampled(sampled));
        let b3 = B3::from_trace_parent(&tp);
        let back = B3::decode_single(b3.encode_single().as_bytes()).unwrap();
        prop_assert_eq!(back.to_trace_parent().unwrap(), tp);
        let multi = b3.encode_multi();
        let get = |name: &str| multi.iter().flatten().find(|(k, _)| *k == name).map(|(_, v)| v.as_bytes().to_vec());
        let (tr, sp, sa) = (get(B3::TRACE_ID), get(B3::SPAN_ID), get(B3::SAMPLED));
        let back = B3::decode_multi(tr.as_deref(), sp.as_deref(), None, sa.as_deref(), None).unwrap().unwrap();
        prop_assert_eq!(back.to_trace_parent().unwrap(), tp);
    }

    #[test]
    fn baggage_round_trips(entries in proptest::collection::vec(("[a-zA-Z0-9!#$&'*+.^_`|~-]{1,12}", "\\PC{0,20}"), 1..20)) {
        let mut seen = std::collections::HashSet::new();
        let entries: Vec<(String, String)> = entries.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect();
        let b = Baggage::encode(entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        let back = Baggage::decode(b.as_str().as_bytes()).unwrap();
        let decoded: Vec<(String, String)> = back.iter().map(|m| (m.key().to_owned(), m.value().into_owned())).collect();
        prop_assert_eq!(decoded, entries);
    }

    #[test]
    fn baggage_collect_keeps_whole_members_within_limits(
        entries in proptest::collection::vec("[a-z]{1,6}=[a-z0-9%]{0,30}", 0..120),
        max_members in 1usize..80,
        max_bytes in 1usize..600,
    ) {
        let joined = entries.join(",");
        let (kept, dropped) = Baggage::collect([joined.as_bytes()], max_members, max_bytes);
        let kept_count = kept.as_ref().map_or(0, |b| b.iter().count());
        if let Some(b) = &kept {
            prop_assert!(b.as_str().len() <= max_bytes);
            prop_assert!(kept_count <= max_members);
            prop_assert!(Baggage::validate(b.as_str().as_bytes(), max_members, max_bytes).is_ok());
            for m in b.iter() {
                prop_assert!(entries.iter().any(|e| e == m.as_str()), "partial member {}", m.as_str());
            }
        }
        let nonempty = entries.len();
        prop_assert_eq!(kept_count + dropped, nonempty);
    }

    #[test]
    fn tracestate_trim_never_exceeds_the_limit(n in 1usize..32, size in 1usize..200, max in 1usize..2000) {
        let list: Vec<String> = (0..n).map(|i| format!("k{i}={}", "v".repeat(size))).collect();
        let ts = TraceState::decode(list.join(",").as_bytes()).unwrap();
        if let Some(t) = ts.trimmed(max) {
            prop_assert!(t.as_str().len() <= max);
            prop_assert!(TraceState::validate(t.as_str().as_bytes()).is_ok());
            for (k, v) in t.iter() {
                prop_assert_eq!(ts.get(k), Some(v), "entries are kept whole");
            }
        }
    }

    #[test]
    fn capture_never_panics_and_never_keeps_control_chars(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 7)) {
        let names = ["traceparent", "tracestate", "baggage", "x-correlation-id", "x-tenant-id", "b3", "tl-field-user.id"];
        let mut map = std::collections::HashMap::new();
        for (n, v) in names.iter().zip(&values) {
            map.insert((*n).to_owned(), String::from_utf8_lossy(v).into_owned());
        }
        let policy = Policy::builder().header("x-tenant-id").accept_b3(true).build().unwrap();
        let ctx = policy.capture(&map, Trust::Untrusted).context;
        let clean = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
        prop_assert!(clean(ctx.correlation_id().unwrap().as_str()));
        for (_, v) in ctx.headers() { prop_assert!(clean(v)); }
        for (_, v) in ctx.fields() { prop_assert!(!v.chars().any(char::is_control)); }
        if let Some(b) = ctx.baggage() { prop_assert!(clean(b.as_str())); }
        let mut out = http::HeaderMap::new();
        ctx.inject(&mut out);
    }
}

/// A `HeaderMap` seen only through name lookups: capture then reads it the way it reads
/// carriers that cannot list their entries.
struct ByLookup<'m>(&'m http::HeaderMap);

impl<'m> threadline::Extractor for ByLookup<'m> {
    fn kind(&self) -> threadline::CarrierKind {
        threadline::CarrierKind::Http
    }
    fn get_all<'a>(
        &'a self,
        name: &http::HeaderName,
    ) -> impl Iterator<Item = threadline::CarrierValue<'a>> + use<'a, 'm> {
        self.0
            .get_all(name)
            .into_iter()
            .map(threadline::CarrierValue::Header)
    }
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(http::HeaderName::as_str)
    }
}

/// Everything a capture kept, minus what is minted at random.
fn kept(c: &threadline::Captured) -> String {
    let ctx = &c.context;
    format!(
        "{:?} | {:?} | {:?} | {:?} | {:?} | {:?}",
        c.report,
        ctx.correlation_id().map(|id| id.as_str().to_owned()),
        ctx.trace()
            .map(|t| (t.parent_id(), t.tracestate().map(|s| s.as_str().to_owned()))),
        ctx.baggage().map(|b| b.as_str().to_owned()),
        ctx.headers()
            .map(|(k, v)| (k.clone(), v.to_owned()))
            .collect::<Vec<_>>(),
        ctx.fields()
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #[test]
    fn one_pass_capture_agrees_with_lookups(
        entries in proptest::collection::vec((0usize..8, 0usize..6), 0..14)
    ) {
        // Names and values that are valid, invalid, repeated or absent, in any order.
        let names = ["traceparent", "tracestate", "baggage", "x-correlation-id",
            "x-request-id", "x-tenant-id", "x-other", "tl-field-user.id"];
        let values = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
            "userId=alice,serverNode=DF%2028",
            "req-42",
            "bad value\twith tab",
        ];
        let mut map = http::HeaderMap::new();
        for (n, v) in &entries {
            map.append(names[*n], http::HeaderValue::from_static(values[*v]));
        }
        // A generator that is not random, so that minted ids compare equal too.
        let policy = Policy::builder()
            .header("x-tenant-id")
            .header_rule(threadline::HeaderRule::new("x-other").default_value("none"))
            .also_accept("x-request-id")
            .fields_over_http(true)
            .id_generator(threadline::codec::IdGenerator::custom(|| "minted".to_owned()))
            .build()
            .unwrap();
        for trust in [Trust::Trusted, Trust::Untrusted] {
            let one_pass = policy.capture(&map, trust);
            let looked_up = policy.capture(&ByLookup(&map), trust);
            prop_assert_eq!(kept(&one_pass), kept(&looked_up), "{:?}", map);
        }
    }
}

fn has_empty_member(list: &str) -> bool {
    list.split(',')
        .any(|m| m.trim_matches([' ', '\t']).is_empty())
}

/// The strict baggage validator accepts exactly the lists whose members all parse, and
/// counts them alike.
fn baggage_validator_agrees(s: &str) -> Result<(), TestCaseError> {
    let strict = Baggage::validate(s.as_bytes(), 1000, 100_000);
    let parsed: Vec<_> = Baggage::members(s).collect();
    // The grammar has no empty members (a stray, leading or trailing comma, or a blank
    // header), which the member iterator skips.
    let all_ok = parsed.iter().all(Result::is_ok) && !has_empty_member(s);
    prop_assert_eq!(
        strict.is_ok(),
        all_ok,
        "{:?}: {:?} vs {:?}",
        s,
        strict,
        parsed
    );
    if let Ok(n) = strict {
        prop_assert_eq!(n, parsed.len());
    }
    Ok(())
}

/// The tracestate ABNF, written out plainly (split, trim, check each part) as the
/// reference the one-pass validator is held to.
fn tracestate_reference(list: &str) -> Option<usize> {
    // The current W3C text: key = (lcalpha / DIGIT) 0*255(keychar), keychar = lcalpha /
    // DIGIT / "_" / "-" / "*" / "/" / "@"; a repeated key is not a member again.
    let key_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-*/@".contains(c);
    let mut keys: Vec<&str> = Vec::new();
    for m in list.split(',') {
        let m = m.trim_matches([' ', '\t']);
        if m.is_empty() {
            continue;
        }
        let (k, v) = m.split_once('=')?;
        let key_ok = k.len() <= 256
            && k.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && k.chars().all(key_char);
        let value_ok = !v.is_empty()
            && v.len() <= 256
            && v.chars()
                .all(|c| (' '..='~').contains(&c) && c != ',' && c != '=')
            && !v.ends_with(' ');
        if !key_ok || !value_ok {
            return None;
        }
        if keys.contains(&k) {
            continue;
        }
        if keys.len() == 32 {
            return None;
        }
        keys.push(k);
    }
    Some(keys.len())
}
