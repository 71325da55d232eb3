// A plain keep-alive load generator: N SCIM creates (POST /Users) with C
// requests in flight, the reference idsync's export rate is compared with.
//
//   node loadgen.js --url http://127.0.0.1:PORT/scim/v2 --token T --n 10000
//                   [--concurrency 8] [--prefix lg]
// Prints one JSON line: {"n", "seconds", "rate", "errors"}.
"use strict";
const http = require("http");

const args = process.argv.slice(2);
const opt = (k, d) => (args.indexOf(k) >= 0 ? args[args.indexOf(k) + 1] : d);
const url = new URL(opt("--url", "http://127.0.0.1:8080/scim/v2") + "/Users");
const token = opt("--token", "");
const n = Number(opt("--n", "10000"));
const conc = Number(opt("--concurrency", "8"));
const prefix = opt("--prefix", "lg");
if (!["127.0.0.1", "localhost"].includes(url.hostname)) {
    process.stderr.write("loadgen: loopback only\n");
    process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });

function body(i) {
    // the same shape idsync sends for the benchmark's users
    return JSON.stringify({
        schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
        userName: `${prefix}${i}@example.com`, externalId: `${prefix}E${i}`,
        displayName: `Given${i} Family${i}`, name: { givenName: `Given${i}`, familyName: `Family${i}` },
        emails: [{ value: `${prefix}${i}@example.com`, type: "work", primary: true }],
    });
}

function post(i) {
    return new Promise((resolve) => {
        const b = body(i);
        const req = http.request({
            host: url.hostname, port: url.port, path: url.pathname, method: "POST", agent,
            headers: { "Content-Type": "application/scim+json", "Content-Length": Buffer.byteLength(b),
                       Authorization: `Bearer ${token}` },
        }, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode === 201));
        });
        req.on("error", () => resolve(false));
        req.end(b);
    });
}

(async () => {
    let next = 0;
    let errors = 0;
    const t0 = process.hrtime.bigint();
    async function worker() {
        while (next < n) {
            const i = next++;
            if (!(await post(i))) errors++;
        }
    }
    await Promise.all(Array.from({ length: conc }, worker));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(JSON.stringify({ n, seconds: s, rate: n / s, errors }) + "\n");
    agent.destroy();
})();
