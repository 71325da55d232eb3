// A fault-injecting HTTP proxy between idsync and the SCIM test service:
// the faults a real service won't produce on demand.
//
//   node proxy.js --port 0 --upstream http://127.0.0.1:PORT [--tls-cert C --tls-key K]
//
// With --tls-cert/--tls-key the proxy speaks HTTPS to its clients (the TLS
// tests: certificate verification, ca_file).
// Prints "listening PORT". Faults are set at run time (JSON body):
//   POST /_proxy/fault  {"mode": M, "every": N, "count": C, "methods": [..],
//                        "path": "substring", "status": S, "retryAfter": "2",
//                        "delayMs": D}
//   modes:
//     status       answer S (429, 500, 503 ...) without forwarding; with
//                  retryAfter, a Retry-After header ("2" or an HTTP date)
//     after-status forward, let the service process it, then answer S
//                  (the service did the work; the client sees an error)
//     slow         forward, then hold the answer delayMs (beyond the timeout)
//     drop         forward, then close the connection without a byte
//     drop-partial forward, then send half of the status line and close
//     reverse-bulk forward, then answer a /Bulk response's Operations in
//                  reverse order (matched by bulkId, not by position)
//     none         pass everything through
//   every N: one request in N matching ones is faulted (default 1);
//   count C: at most C faults, then pass through (default unlimited).
//   GET  /_proxy/stats  {"requests": n, "faults": n, "byMode": {...}}
//   POST /_proxy/reset  no faults, counters to zero
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");

const args = process.argv.slice(2);
function opt(name, def) {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const PORT = Number(opt("--port", "0"));
const UPSTREAM = new URL(opt("--upstream", "http://127.0.0.1:8080"));
if (!["127.0.0.1", "localhost", "[::1]"].includes(UPSTREAM.hostname)) {
    process.stderr.write("proxy: the upstream must be on the loopback\n");
    process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
let fault = { mode: "none" };
let matched = 0;
let injected = 0;
const stats = { requests: 0, faults: 0, byMode: {} };

function readBody(req) {
    return new Promise((resolve) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks)));
    });
}

function wantsFault(req) {
    if (!fault || fault.mode === "none") return false;
    if (fault.methods && !fault.methods.includes(req.method)) return false;
    if (fault.path && !req.url.includes(fault.path)) return false;
    if (fault.count !== undefined && injected >= fault.count) return false;
    matched++;
    if (matched % (fault.every || 1) !== 0) return false;
    injected++;
    stats.faults++;
    stats.byMode[fault.mode] = (stats.byMode[fault.mode] || 0) + 1;
    return true;
}

function forward(req, body) {
    return new Promise((resolve, reject) => {
        const headers = { ...req.headers, host: UPSTREAM.host };
        const up = http.request({
            host: UPSTREAM.hostname, port: UPSTREAM.port, method: req.method,
            path: req.url, headers, agent,
        }, (res) => {
            const chunks = [];
            res.on("data", (c) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        });
        up.on("error", reject);
        up.end(body);
    });
}

function reply(res, r) {
    const h = { ...r.headers };
    delete h["transfer-encoding"];
    delete h["connection"];
    delete h["keep-alive"];
    h["content-length"] = r.body.length;
    res.writeHead(r.status, h);
    res.end(r.body);
}

function scimError(status, detail) {
    return Buffer.from(JSON.stringify({
        schemas: ["urn:ietf:params:scim:api:messages:2.0:Error"], status: String(status), detail,
    }));
}

const TLS_CERT = opt("--tls-cert", null);
const TLS_KEY = opt("--tls-key", null);

async function handle(req, res) {
    const body = await readBody(req);
    if (req.url.startsWith("/_proxy/")) {
        if (req.url === "/_proxy/fault" && req.method === "POST") {
            fault = JSON.parse(body.toString() || "{}");
            matched = 0;
            injected = 0;
            res.writeHead(204).end();
        } else if (req.url === "/_proxy/reset") {
            fault = { mode: "none" };
            matched = injected = 0;
            stats.requests = stats.faults = 0;
            stats.byMode = {};
            res.writeHead(204).end();
        } else if (req.url === "/_proxy/stats") {
            res.writeHead(200, { "content-type": "application/json" });
            res.end(JSON.stringify(stats));
        } else {
            res.writeHead(404).end();
        }
        return;
    }
    stats.requests++;
    const f = wantsFault(req) ? fault : null;
    try {
        if (f && f.mode === "status") {
            const h = { "content-type": "application/scim+json" };
            if (f.retryAfter !== undefined) h["retry-after"] = String(f.retryAfter);
            const b = scimError(f.status || 503, `injected ${f.status || 503}`);
            h["content-length"] = b.length;
            res.writeHead(f.status || 503, h);
            res.end(b);
            return;
        }
        const r = await forward(req, body);
        if (!f) {
            reply(res, r);
        } else if (f.mode === "after-status") {
            reply(res, { status: f.status || 500, headers: { "content-type": "application/scim+json" }, body: scimError(f.status || 500, "injected after processing") });
        } else if (f.mode === "slow") {
            setTimeout(() => { if (!res.destroyed) reply(res, r); }, f.delayMs || 5000);
        } else if (f.mode === "drop") {
            req.socket.destroy();
        } else if (f.mode === "drop-partial") {
            req.socket.end("HTTP/1.1 20");
            setTimeout(() => req.socket.destroy(), 10);
        } else if (f.mode === "reverse-bulk") {
            const msg = JSON.parse(r.body.toString());
            if (Array.isArray(msg.Operations)) msg.Operations.reverse();
            reply(res, { ...r, body: Buffer.from(JSON.stringify(msg)) });
        } else {
            reply(res, r);
        }
    } catch (e) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`proxy: ${e.message}`);
    }
}

const server = TLS_CERT
    ? https.createServer({ cert: fs.readFileSync(TLS_CERT), key: fs.readFileSync(TLS_KEY) }, handle)
    : http.createServer(handle);
server.keepAliveTimeout = 60000;
server.listen(PORT, "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => process.exit(0));
}
