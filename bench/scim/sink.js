// An HTTP sink that answers every SCIM request at once (idsync's own
// ceiling: the engine and the connector, not the service, are measured).
//   node sink.js --port 0   -> prints "listening PORT"
"use strict";
const http = require("http");
const args = process.argv.slice(2);
const port = Number(args.indexOf("--port") >= 0 ? args[args.indexOf("--port") + 1] : "0");
let id = 0;
const spc = JSON.stringify({ schemas: ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    patch: { supported: true }, bulk: { supported: false }, filter: { supported: true, maxResults: 1000 } });
const empty = JSON.stringify({ schemas: ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
    totalResults: 0, startIndex: 1, itemsPerPage: 0, Resources: [] });
const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
        let status = 200;
        let out = empty;
        if (req.method === "POST") {
            status = 201;
            out = `{"id":"s${++id}"}`;
        } else if (req.url.endsWith("/ServiceProviderConfig")) {
            out = spc;
        } else if (req.method === "DELETE") {
            status = 204;
            out = "";
        } else if (req.method === "PATCH") {
            status = 204;
            out = "";
        }
        res.writeHead(status, { "Content-Type": "application/scim+json", "Content-Length": Buffer.byteLength(out) });
        res.end(out);
    });
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1", () => process.stdout.write(`listening ${server.address().port}\n`));
process.on("SIGTERM", () => process.exit(0));
