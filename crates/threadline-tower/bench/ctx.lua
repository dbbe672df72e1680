-- Five context headers on every request (values valid, as a real upstream sends them).
wrk.method = "GET"
wrk.headers["x-correlation-id"] = "0190b6a8-5c0e-7cc1-9f6e-6b7c2ad1f0a3"
wrk.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
wrk.headers["tracestate"] = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
wrk.headers["baggage"] = "userId=alice,serverNode=DF%2028,isProduction=false"
wrk.headers["x-tenant-id"] = "acme"
