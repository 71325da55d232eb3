// A real SCIM 2.0 service for idsync's integration tests and benchmarks:
// SCIMMY (schemas, filters, PatchOp, Bulk) + scimmy-routers on express 4,
// around a small in-memory store.
//
//   node server.js --port 0 [--token T] [--basic USER:PASS]
//                  [--oauth CLIENT:SECRET] [--no-patch] [--no-bulk]
//                  [--max-results N]
//
// Prints "listening PORT" on stdout once it accepts connections.
// Authentication: bearer token (--token), HTTP basic (--basic) or OAuth 2.0
// client credentials (--oauth: POST /oauth/token issues short-lived tokens;
// --token-ttl seconds). Without any, every request is accepted.
//
// Test hooks (not SCIM): GET /_stats (request counters), POST /_reset,
// GET /_dump (every resource, unpaged, for assertions).
//
// The three traps noted in idsync's issue 4 are handled here:
//  - express 4 (express 5 loses scimmy-routers' numeric cast of
//    startIndex/count, and pagination is silently ignored);
//  - egress hands SCIMMY only the requested page plus totalResults (SCIMMY
//    builds a schema object for every resource it is given);
//  - `userName eq` is matched case-insensitively (RFC 7643 caseExact: false).
"use strict";

const crypto = require("crypto");
const express = require("express");
const SCIMMY = require("scimmy");
const SCIMMYRouters = require("scimmy-routers").default;

const args = process.argv.slice(2);
function opt(name, def) {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const flag = (name) => args.includes(name);

const PORT = Number(opt("--port", "0"));
const TOKEN = opt("--token", null);
const BASIC = opt("--basic", null);
const OAUTH = opt("--oauth", null);
const TOKEN_TTL = Number(opt("--token-ttl", "3600"));
const MAX_RESULTS = Number(opt("--max-results", "1000"));

const stats = { requests: 0, byMethod: {}, tokens: 0 };
const oauthTokens = new Map(); // token -> expiry (ms)

// ---- store ----------------------------------------------------------------

class Store {
    constructor(kind) {
        this.kind = kind;
        this.items = new Map(); // id -> plain resource
        this.order = [];        // ids in creation order (stable pagination)
        this.dirty = false;     // order holds deleted ids
        this.byName = new Map(); // lower-cased userName / displayName -> id
        this.byExternal = new Map(); // externalId -> Set(id)
    }
    nameOf(r) {
        const n = this.kind === "User" ? r.userName : r.displayName;
        return typeof n === "string" ? n.toLowerCase() : null;
    }
    ids() {
        if (this.dirty) {
            this.order = Array.from(this.items.keys());
            this.dirty = false;
        }
        return this.order;
    }
    index(r, add) {
        if (r.externalId !== undefined) {
            let s = this.byExternal.get(r.externalId);
            if (add) {
                if (!s) {
                    s = new Set();
                    this.byExternal.set(r.externalId, s);
                }
                s.add(r.id);
            } else if (s) {
                s.delete(r.id);
                if (s.size === 0) this.byExternal.delete(r.externalId);
            }
        }
        if (this.kind === "User") {
            const n = this.nameOf(r);
            if (n !== null) {
                if (add) this.byName.set(n, r.id);
                else if (this.byName.get(n) === r.id) this.byName.delete(n);
            }
        }
    }
    put(r) {
        const old = this.items.get(r.id);
        if (old) this.index(old, false);
        else this.order.push(r.id);
        this.items.set(r.id, r);
        this.index(r, true);
    }
    remove(id) {
        const old = this.items.get(id);
        if (!old) return false;
        this.index(old, false);
        this.items.delete(id);
        this.dirty = true;
        return true;
    }
    clear() {
        this.items.clear();
        this.order = [];
        this.dirty = false;
        this.byName.clear();
        this.byExternal.clear();
    }
}

const users = new Store("User");
const groups = new Store("Group");
const storeOf = { User: users, Group: groups };

function scimError(status, scimType, message) {
    return new SCIMMY.Types.Error(status, scimType, message);
}

// The candidates of a simple `attr eq "value"` filter through an index,
// or null when the filter is anything else (then SCIMMY matches).
function indexed(store, filter) {
    if (!filter || filter.length !== 1) return null;
    const keys = Object.keys(filter[0]);
    if (keys.length !== 1) return null;
    const expr = filter[0][keys[0]];
    if (!Array.isArray(expr) || expr.length !== 2 || Array.isArray(expr[0])) return null;
    if (String(expr[0]).toLowerCase() !== "eq" || typeof expr[1] !== "string") return null;
    const attr = keys[0].toLowerCase();
    const value = expr[1];
    if (attr === "id") return store.items.has(value) ? [value] : [];
    if (attr === "externalid") return Array.from(store.byExternal.get(value) || []);
    if (attr === "username" && store.kind === "User") {
        const id = store.byName.get(value.toLowerCase());
        return id ? [id] : [];
    }
    if (attr === "displayname" && store.kind === "Group") {
        const out = [];
        for (const id of store.ids()) {
            const r = store.items.get(id);
            if (r && typeof r.displayName === "string" && r.displayName === value) out.push(id);
        }
        return out;
    }
    return null;
}

function egress(kind) {
    return async (resource, req) => {
        const store = storeOf[kind];
        if (resource.id) {
            const r = store.items.get(resource.id);
            if (!r) throw scimError(404, null, `Resource ${resource.id} not found`);
            return r;
        }
        const filter = req.simpleFilter
            ? [{ [req.simpleFilter.attr]: ["eq", req.simpleFilter.value] }]
            : resource.filter;
        let ids = indexed(store, filter);
        let list;
        if (ids !== null) {
            list = ids.map((id) => store.items.get(id)).filter((r) => r);
        } else if (req.simpleFilter) {
            list = new SCIMMY.Types.Filter(filter).match(store.ids().map((id) => store.items.get(id)));
        } else if (resource.filter) {
            list = resource.filter.match(store.ids().map((id) => store.items.get(id)));
        } else {
            list = null; // everything, paged below without copying
        }
        const c = resource.constraints || {};
        const start = Math.max(Number(c.startIndex) || 1, 1);
        const count = Math.min(c.count !== undefined ? Number(c.count) : MAX_RESULTS, MAX_RESULTS);
        const total = list ? list.length : store.items.size;
        let page;
        if (list) {
            page = list.slice(start - 1, start - 1 + count);
        } else {
            const all = store.ids();
            page = [];
            for (let i = start - 1; i < all.length && page.length < count; i++) {
                const r = store.items.get(all[i]);
                if (r) page.push(r);
            }
        }
        // SCIMMY's ListResponse would slice again from startIndex: give it
        // startIndex 1 with the page only and put the real one back in send.
        resource.constraints = { ...c, startIndex: 1, count, totalResults: total };
        req.scimStartIndex = start;
        return page;
    };
}

function checkMembers(members) {
    if (members === undefined) return;
    for (const m of members) {
        const v = m && m.value;
        if (typeof v !== "string" || !(users.items.has(v) || groups.items.has(v))) {
            throw scimError(400, "invalidValue", `members: no User or Group with id "${v}"`);
        }
    }
}

function ingress(kind) {
    return async (resource, instance, req) => {
        const store = storeOf[kind];
        const data = JSON.parse(JSON.stringify(instance));
        delete data.meta;
        const now = new Date().toISOString();
        let old = null;
        if (resource.id) {
            old = store.items.get(resource.id);
            if (!old) throw scimError(404, null, `Resource ${resource.id} not found`);
        }
        const name = store.nameOf(data);
        if (kind === "User") {
            if (name === null) throw scimError(400, "invalidValue", "userName is required");
            const holder = store.byName.get(name);
            if (holder && (!old || holder !== old.id)) {
                throw scimError(409, "uniqueness",
                    `userName "${data.userName}" is already used by another User`);
            }
        } else {
            if (name === null) throw scimError(400, "invalidValue", "displayName is required");
            if (data.members) {
                checkMembers(data.members);
                // one entry per value
                const seen = new Set();
                data.members = data.members.filter((m) => !seen.has(m.value) && seen.add(m.value));
            }
        }
        const id = old ? old.id : crypto.randomUUID();
        const r = {
            ...data,
            id,
            meta: {
                resourceType: kind,
                created: old ? old.meta.created : now,
                lastModified: now,
                version: `W/"${crypto.randomBytes(6).toString("hex")}"`,
            },
        };
        store.put(r);
        return r;
    };
}

function degress(kind) {
    return async (resource) => {
        const store = storeOf[kind];
        if (!store.remove(resource.id)) throw scimError(404, null, `Resource ${resource.id} not found`);
        // a deleted user or group leaves every group it was a member of
        for (const g of groups.items.values()) {
            if (Array.isArray(g.members) && g.members.some((m) => m.value === resource.id)) {
                g.members = g.members.filter((m) => m.value !== resource.id);
            }
        }
    };
}

SCIMMY.Resources.declare(SCIMMY.Resources.User.extend(SCIMMY.Schemas.EnterpriseUser, false))
    .ingress(ingress("User")).egress(egress("User")).degress(degress("User"));
SCIMMY.Resources.declare(SCIMMY.Resources.Group)
    .ingress(ingress("Group")).egress(egress("Group")).degress(degress("Group"));

// ---- authentication --------------------------------------------------------

function authenticate(req) {
    const h = req.header("Authorization") || "";
    if (TOKEN && h === `Bearer ${TOKEN}`) return "admin";
    if (BASIC && h === `Basic ${Buffer.from(BASIC).toString("base64")}`) return "admin";
    if (OAUTH && h.startsWith("Bearer ")) {
        const exp = oauthTokens.get(h.slice(7));
        if (exp && exp > Date.now()) return "admin";
        throw new Error("the access token is unknown or expired");
    }
    if (!TOKEN && !BASIC && !OAUTH) return "admin";
    throw new Error("Authorization failed");
}

// ---- app ------------------------------------------------------------------

const app = express();
app.disable("x-powered-by");
app.set("etag", false);

app.use((req, res, next) => {
    stats.requests++;
    stats.byMethod[req.method] = (stats.byMethod[req.method] || 0) + 1;
    next();
});

app.post("/oauth/token", express.urlencoded({ extended: false }), (req, res) => {
    let id = req.body.client_id;
    let secret = req.body.client_secret;
    const h = req.header("Authorization") || "";
    if (h.startsWith("Basic ")) {
        const dec = Buffer.from(h.slice(6), "base64").toString();
        const i = dec.indexOf(":");
        id = decodeURIComponent(dec.slice(0, i));
        secret = decodeURIComponent(dec.slice(i + 1));
    }
    if (!OAUTH || req.body.grant_type !== "client_credentials" || `${id}:${secret}` !== OAUTH) {
        res.status(401).json({ error: "invalid_client" });
        return;
    }
    const token = crypto.randomBytes(24).toString("hex");
    oauthTokens.set(token, Date.now() + TOKEN_TTL * 1000);
    stats.tokens++;
    res.json({ access_token: token, token_type: "Bearer", expires_in: TOKEN_TTL });
});

app.get("/_stats", (req, res) => res.json({ ...stats, users: users.items.size, groups: groups.items.size }));
app.post("/_reset", (req, res) => {
    users.clear();
    groups.clear();
    stats.requests = 0;
    stats.byMethod = {};
    res.status(204).end();
});
app.get("/_dump", (req, res) => {
    res.json({
        Users: users.ids().map((id) => users.items.get(id)).filter((r) => r),
        Groups: groups.ids().map((id) => groups.items.get(id)).filter((r) => r),
    });
});

// SCIMMY's filter parser refuses escaped quotes (`\"`) inside values, which
// RFC 7644 allows (values are JSON strings): the service parses the one form
// idsync's lookups send, `attr eq "json string"`, itself.
const SIMPLE_EQ = /^\s*([A-Za-z][\w.:-]*)\s+eq\s+("(?:[^"\\]|\\.)*")\s*$/i;
app.use("/scim/v2", (req, res, next) => {
    if (req.method === "GET" && typeof req.query.filter === "string") {
        const m = SIMPLE_EQ.exec(req.query.filter);
        if (m) {
            try {
                req.simpleFilter = { attr: m[1], value: JSON.parse(m[2]) };
                delete req.query.filter;
            } catch (e) {
                // not a JSON string: SCIMMY reports it
            }
        }
    }
    next();
});

// the real startIndex back into list responses (see egress)
app.use("/scim/v2", (req, res, next) => {
    const send = res.send.bind(res);
    res.send = (body) => {
        if (req.scimStartIndex !== undefined && body && Array.isArray(body.Resources)) {
            body.startIndex = req.scimStartIndex;
        }
        return send(body);
    };
    next();
});

if (flag("--no-patch")) {
    // the service really refuses PATCH, as a service without it would
    app.patch("/scim/v2/*", (req, res) => {
        res.status(501).type("application/scim+json").send(JSON.stringify({
            schemas: ["urn:ietf:params:scim:api:messages:2.0:Error"],
            status: "501", detail: "PATCH is not supported by this service",
        }));
    });
}

const routers = new SCIMMYRouters({
    type: OAUTH ? "oauth" : BASIC ? "basic" : "bearer",
    handler: authenticate,
    context: (req) => req,
});
app.use("/scim/v2", routers);

SCIMMY.Config.set({
    patch: !flag("--no-patch"),
    bulk: flag("--no-bulk") ? false : { supported: true, maxOperations: 1000, maxPayloadSize: 1048576 },
    filter: { supported: true, maxResults: MAX_RESULTS },
    sort: true,
    etag: false,
    changePassword: false,
});
// the SCIMMY middleware caps JSON bodies at bulk.maxPayloadSize: big groups
// need more (a PUT of a 100k-member group)

const server = app.listen(PORT, "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;

for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 500).unref());
}
