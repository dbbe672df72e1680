"""The Python peers of tests/interop_python.rs: OpenTelemetry's propagators (and
ddtrace's when installed) make headers from given ids, and read ids from given headers.

stdin: {"make": [{"format", "trace_id", "span_id", "sampled"}],
        "read": [{"format", "headers"}]}
stdout: {"made": [{"format", "headers"}], "read": [{"format", "trace_id", "span_id",
         "sampled", "baggage"}], "skipped": [format names without a peer]}
"""

import json
import sys

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.cloud_trace_propagator import CloudTraceFormatPropagator
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.propagators.ot_trace import OTTracePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATORS = {
    "w3c": TraceContextTextMapPropagator(),
    "b3": B3SingleFormat(),
    "b3multi": B3MultiFormat(),
    "gcp": CloudTraceFormatPropagator(),
    "xray": AwsXRayPropagator(),
    "jaeger": JaegerPropagator(),
    "ot": OTTracePropagator(),
    "baggage": W3CBaggagePropagator(),
}

try:
    from ddtrace.propagation.http import HTTPPropagator
    from ddtrace.trace import Context as DdContext

    HAVE_DDTRACE = True
except ImportError:  # ddtrace is optional
    HAVE_DDTRACE = False

BAGGAGE = {"user": "alice smith"}


class HttpGetter(Getter):
    """Header names are case-insensitive in HTTP (the JSON carries them lower-cased,
    as `http` stores them); the default getter of a plain dict is not."""

    def get(self, carrier, key):
        found = [v for k, v in carrier.items() if k.lower() == key.lower()]
        return found or None

    def keys(self, carrier):
        return list(carrier.keys())


def make(item):
    fmt = item["format"]
    tid, sid, sampled = int(item["trace_id"], 16), int(item["span_id"], 16), item["sampled"]
    headers = {}
    if fmt == "datadog":
        ctx = DdContext(trace_id=tid, span_id=sid, sampling_priority=1 if sampled else 0)
        HTTPPropagator.inject(ctx, headers)
        return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-datadog-")}
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=tid,
            span_id=sid,
            is_remote=False,
            trace_flags=trace.TraceFlags(1 if sampled else 0),
        )
    )
    ctx = trace.set_span_in_context(span, Context())
    for key, value in BAGGAGE.items():
        ctx = baggage.set_baggage(key, value, ctx)
    PROPAGATORS[fmt].inject(headers, context=ctx)
    return {k.lower(): v for k, v in headers.items()}


def read(item):
    fmt, headers = item["format"], item["headers"]
    if fmt == "datadog":
        ctx = HTTPPropagator.extract(headers)
        if not ctx.trace_id:
            return None
        return {
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "sampled": (ctx.sampling_priority or 0) > 0,
            "baggage": {},
        }
    ctx = PROPAGATORS[fmt].extract(headers, getter=HttpGetter())
    sc = trace.get_current_span(ctx).get_span_context()
    bag = {k: str(v) for k, v in baggage.get_all(ctx).items()}
    if not sc.is_valid:
        return {"trace_id": None, "span_id": None, "sampled": False, "baggage": bag}
    return {
        "trace_id": f"{sc.trace_id:032x}",
        "span_id": f"{sc.span_id:016x}",
        "sampled": sc.trace_flags.sampled,
        "baggage": bag,
    }


def main():
    request = json.load(sys.stdin)
    out = {"made": [], "read": [], "skipped": []}
    if not HAVE_DDTRACE:
        out["skipped"].append("datadog")
    for item in request.get("make", []):
        if item["format"] == "datadog" and not HAVE_DDTRACE:
            continue
        out["made"].append({**item, "headers": make(item)})
    for item in request.get("read", []):
        if item["format"] == "datadog" and not HAVE_DDTRACE:
            continue
        out["read"].append({**item, "got": read(item)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
