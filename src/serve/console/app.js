/* idsync console: a small single-page app over the daemon's JSON API.
 *
 * Plain JavaScript, no framework and nothing fetched from elsewhere. Every
 * list is paged by the server (after/before cursors, offset for errors), so
 * pages stay fast however large the store. Text from the store is always
 * inserted with textContent, never as HTML.
 */
"use strict";

(function () {
  const main = document.getElementById("main");
  const stateEl = document.getElementById("daemon-state");
  const PAGE = 50;
  let refreshTimer = null;
  let routeSeq = 0;

  /* ---- helpers --------------------------------------------------------- */

  function h(tag, attrs, ...kids) {
    const el = tag === "svg" || tag.startsWith("svg:")
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.replace("svg:", ""))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  function svg(tag, attrs, ...kids) { return h("svg:" + tag, attrs, ...kids); }

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function fmtDur(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    const m = Math.floor(ms / 60000);
    return m + " min " + Math.round((ms % 60000) / 1000) + " s";
  }
  function fmtRel(ms) {
    if (ms === null || ms === undefined) return "—";
    const s = Math.round((ms - Date.now()) / 1000);
    const a = Math.abs(s);
    const txt = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min" :
      (a / 3600).toFixed(1) + " h";
    return s >= 0 ? "in " + txt : txt + " ago";
  }
  function pill(text, cls) { return h("span", { class: "pill " + (cls || text) }, text); }
  function nonZero(counters) {
    return Object.entries(counters || {}).filter(([, v]) => v !== 0);
  }
  function counterText(counters) {
    const nz = nonZero(counters);
    return nz.length ? nz.map(([k, v]) => k + " " + v).join(", ") : "no changes";
  }
  function valueText(v) {
    if (v !== null && typeof v === "object") {
      return v.base64 !== undefined ? "base64:" + v.base64 : JSON.stringify(v);
    }
    return String(v);
  }
  function qs(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined && v !== "") p.set(k, v);
    }
    const s = p.toString();
    return s ? "?" + s : "";
  }
  function routeParams() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    return { path, params: new URLSearchParams(query || "") };
  }
  function go(path, params) { location.hash = "#" + path + qs(params || {}); }

  /* ---- API ------------------------------------------------------------- */

  function token() { return sessionStorage.getItem("idsync-token"); }

  async function api(path, opts) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const init = { headers, cache: "no-store" };
    if (opts && opts.method === "POST") {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body || {});
    }
    const r = await fetch(path, init);
    let doc = null;
    try { doc = await r.json(); } catch (e) { doc = null; }
    if (r.status === 401) throw Object.assign(new Error("unauthorized"), { auth: true });
    if (!r.ok) {
      throw new Error((doc && doc.message) || ("HTTP " + r.status + " for " + path));
    }
    return doc;
  }

  function showError(where, err) {
    if (err && err.auth) {
      showLogin();
      return;
    }
    where.replaceChildren(h("div", { class: "notice bad", "data-testid": "error" },
      String(err && err.message ? err.message : err)));
  }

  function showLogin() {
    stopRefresh();
    const input = h("input", { type: "password", placeholder: "bearer token",
      autocomplete: "off", "data-testid": "token" });
    main.replaceChildren(h("div", { class: "card" },
      h("h1", { text: "This daemon needs a token" }),
      h("p", { class: "muted", text: "Paste the token of serve.token_file. It is kept in " +
        "this tab only (sessionStorage)." }),
      h("form", { class: "toolbar", onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem("idsync-token", input.value.trim());
        route();
      } }, input, h("button", { class: "primary", type: "submit" }, "Sign in"))));
  }

  /* ---- daemon state in the header --------------------------------------- */

  async function updateHeader() {
    try {
      const st = await api("/api/status");
      stateEl.textContent = st.state;
      stateEl.className = "pill " + st.state;
      document.getElementById("foot-text").textContent =
        "idsync " + st.version + " · pid " + st.pid + " · " + st.listen;
      return st;
    } catch (e) {
      stateEl.textContent = e.auth ? "locked" : "unreachable";
      stateEl.className = "pill failed";
      throw e;
    }
  }

  function stopRefresh() {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
  }
  function every(ms, fn) {
    stopRefresh();
    refreshTimer = setInterval(fn, ms);
  }

  async function syncNow(full, dryRun, statusEl, onDone) {
    statusEl.replaceChildren(h("span", { class: "spin", text: "asking the daemon…" }));
    try {
      const req = await api("/api/cycle", { method: "POST", body: { full, dry_run: dryRun } });
      statusEl.replaceChildren(h("span", { "data-testid": "request-state" },
        "request " + req.id + ": ", pill(req.state)));
      const poll = async () => {
        const r = await api("/api/requests/" + req.id);
        const kids = [h("span", { "data-testid": "request-state" }, "request " + r.id + ": ",
          pill(r.state === "done" ? r.status : r.state))];
        if (r.state === "done" && r.run) {
          kids.push(" ", h("a", { href: "#/runs/" + r.run, "data-testid": "request-run" },
            "run " + r.run));
          if (r.dry_run) {
            kids.push(" ", h("a", { href: "#/pending?request=" + r.id }, "dry-run report"));
          }
        }
        if (r.state === "done" && r.message) kids.push(" ", h("span", { class: "muted" },
          r.message));
        statusEl.replaceChildren(...kids);
        if (r.state !== "done") setTimeout(poll, 500);
        else if (onDone) onDone(r);
      };
      setTimeout(poll, 300);
    } catch (e) {
      showError(statusEl, e);
    }
  }

  /* ---- dashboard --------------------------------------------------------- */

  async function dashboard(seq) {
    const status = h("div", { "data-testid": "sync-status" });
    const done = () => { if (seq === routeSeq) render(); };
    const actions = h("div", { class: "toolbar" },
      h("button", { class: "primary", "data-testid": "sync-now",
        onclick: () => syncNow(false, false, status, done) }, "Sync now"),
      h("button", { "data-testid": "sync-full",
        onclick: () => syncNow(true, false, status, done) }, "Full sync"),
      h("button", { "data-testid": "sync-dry",
        onclick: () => syncNow(false, true, status, done) }, "Dry run"),
      status);
    const body = h("div", {});
    main.replaceChildren(h("h1", { text: "Dashboard" }), actions, body);

    async function render() {
      try {
        const [st, conns, runs] = await Promise.all([
          updateHeader(), api("/api/connectors"), api("/api/runs?top=1&limit=10")]);
        if (seq !== routeSeq) return;
        body.replaceChildren(dashboardCards(st, conns, runs));
      } catch (e) {
        if (seq === routeSeq) showError(body, e);
      }
    }
    await render();
    every(2000, render);
  }

  function dashboardCards(st, conns, runs) {
    const cur = st.current;
    const step = st.running_step;
    const last = st.last_cycle;
    const lastCounters = last ? (last.total_counters || last.counters) : null;
    const stateCard = h("div", { class: "card", "data-testid": "card-state" },
      h("h2", { text: "State" }),
      h("div", { class: "big" }, pill(st.state)),
      h("dl", { class: "kv" },
        h("dt", { text: "Current" }),
        h("dd", {}, cur ? "request " + cur.id + " (" + cur.origin +
          (cur.full ? ", full" : "") + (cur.dry_run ? ", dry run" : "") + ") since " +
          fmtTime(cur.started) : "—"),
        h("dt", { text: "Running step" }),
        h("dd", { "data-testid": "running-step" }, step ? step.step +
          (step.connector ? " " + step.connector : "") + " · " + fmtDur(step.duration_ms) +
          (step.pending_exports_left !== undefined ? " · " + step.pending_exports_left +
            " exports left" : "") + " · " + counterText(step.counters) : "—"),
        h("dt", { text: "Next run" }),
        h("dd", { "data-testid": "next-run" }, st.next_run ? fmtTime(st.next_run) + " (" +
          fmtRel(st.next_run) + ")" : "—"),
        h("dt", { text: "Last success" }),
        h("dd", {}, st.last_success ? fmtTime(st.last_success) + " (" +
          fmtRel(st.last_success) + ")" : "never"),
        h("dt", { text: "Schedule" }),
        h("dd", {}, Math.round(st.config.schedule_seconds / 60) + " min"),
        h("dt", { text: "Queue" }),
        h("dd", {}, st.queue.length ? st.queue.map((q) => "request " + q.id).join(", ") :
          "empty")));
    const lastCard = h("div", { class: "card", "data-testid": "card-last-cycle" },
      h("h2", { text: "Last cycle" }),
      last ? [
        h("div", { class: "big" }, h("a", { href: "#/runs/" + last.id }, "run " + last.id),
          " ", pill(last.status)),
        h("dl", { class: "kv" },
          h("dt", { text: "Started" }), h("dd", {}, fmtTime(last.start)),
          h("dt", { text: "Duration" }), h("dd", {}, fmtDur(last.duration_ms)),
          h("dt", { text: "Counters" }), h("dd", {}, counterText(lastCounters)),
          last.message ? [h("dt", { text: "Message" }), h("dd", {}, last.message)] : null)
      ] : h("div", { class: "empty", text: "no cycle has run yet" }));
    const nerr = last ? (last.total_errors || 0) : 0;
    const le = st.latest_errors;
    const errCard = h("div", { class: "card", "data-testid": "card-errors" },
      h("h2", { text: "Errors at a glance" }),
      h("div", { class: "big" }, String(nerr)),
      h("div", { class: "muted" }, "per-object errors in the last cycle"),
      le ? h("div", {}, "newest: ", h("a", { href: "#/errors?run=" + le.run },
        le.count + " in run " + le.run + " (" + le.step + (le.connector ? " " + le.connector :
          "") + ", " + fmtRel(le.start) + ")")) : h("div", { class: "muted" },
        "no run has recorded an error"),
      st.config.reload_error ? h("div", { class: "notice bad", "data-testid": "reload-error" },
        "Configuration reload rejected (the previous one keeps running): " +
        st.config.reload_error) : null);

    const connRows = conns.connectors.map((c) => {
      const imp = c.last_runs["delta-import"] || c.last_runs["full-import"];
      const exp = c.last_runs["export"];
      return h("tr", {},
        h("td", {}, h("a", { href: "#/search?connector=" + encodeURIComponent(c.name) }, c.name)),
        h("td", {}, c.type),
        h("td", {}, [c.source ? "source" : null, c.target ? "target" : null]
          .filter(Boolean).join(" + ")),
        h("td", { class: "num" }, c.cs_objects),
        h("td", { class: "num" }, c.disconnectors),
        h("td", { class: "num" }, c.pending_exports ? h("a", { href: "#/pending?connector=" +
          encodeURIComponent(c.name) }, String(c.pending_exports)) : "0"),
        h("td", {}, imp ? [pill(imp.status), " ", fmtRel(imp.end)] : "—"),
        h("td", {}, exp ? [pill(exp.status), " ", fmtRel(exp.end)] : "—"));
    });
    const connCard = h("div", { class: "card wide", "data-testid": "card-connectors" },
      h("h2", {}, "Connectors · metaverse: " + conns.mv_objects + " objects"),
      h("table", {}, h("thead", {}, h("tr", {},
        ["Connector", "Type", "Role"].map((t) => h("th", { text: t })),
        ["Objects", "Disconnectors", "Pending exports"].map((t) => h("th", { class: "num",
          text: t })),
        h("th", { text: "Last import" }), h("th", { text: "Last export" }))),
      h("tbody", {}, connRows)));
    const runsCard = h("div", { class: "card wide", "data-testid": "card-runs" },
      h("h2", {}, "Last runs · ", h("a", { href: "#/runs" }, "all")),
      runsTable(runs.runs));
    return h("div", { class: "grid" }, stateCard, lastCard, errCard, connCard, runsCard);
  }

  function runsTable(runs) {
    if (!runs.length) return h("div", { class: "empty", text: "no runs yet" });
    return h("table", { "data-testid": "runs-table" },
      h("thead", {}, h("tr", {}, ["Run", "Step", "Connector", "Start", "Duration", "Status",
        "Counters"].map((t) => h("th", { text: t })))),
      h("tbody", {}, runs.map((r) => h("tr", {},
        h("td", {}, h("a", { href: "#/runs/" + r.id }, String(r.id))),
        h("td", {}, r.step + (r.dry_run ? " (dry run)" : "")),
        h("td", {}, r.connector || "—"),
        h("td", {}, fmtTime(r.start)),
        h("td", { class: "num" }, fmtDur(r.duration_ms)),
        h("td", {}, pill(r.status)),
        h("td", { class: "muted" }, counterText(r.counters))))));
  }

  /* ---- run history with its chart --------------------------------------- */

  const SERIES = [
    ["read", "#7a869a"], ["staged-add", "#2e9e5b"], ["staged-update", "#6cbf3c"],
    ["staged-delete", "#d6822b"], ["projected", "#8a5cd1"], ["flowed", "#2f8fc9"],
    ["export-add", "#2457c5"], ["export-update", "#18a3a3"], ["export-delete", "#c0262d"],
    ["export-failed", "#9c1c6b"], ["errors", "#e0453a"]];
  const chartOn = new Set(["staged-add", "staged-update", "staged-delete", "export-add",
    "export-update", "export-delete", "errors"]);

  function chart(points, width) {
    const W = Math.max(480, Math.round(width || 1000)), H = 260, L = 56, R = 16, T = 12, B = 34;
    const active = SERIES.filter(([k]) => chartOn.has(k));
    let max = 1;
    for (const p of points) for (const [k] of active) max = Math.max(max, p.counters[k] || 0);
    const nice = Math.pow(10, Math.floor(Math.log10(max)));
    max = Math.ceil(max / nice) * nice;
    const x = (i) => L + (points.length <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (points.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H,
      role: "img", "aria-label": "counters per run over time", "data-testid": "chart" });
    for (let i = 0; i <= 4; i++) {
      const v = max * i / 4;
      s.appendChild(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      s.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" },
        Math.round(v).toLocaleString()));
    }
    s.appendChild(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    const labels = Math.min(points.length, 8);
    for (let j = 0; j < labels; j++) {
      const i = labels === 1 ? 0 : Math.round(j * (points.length - 1) / (labels - 1));
      const d = new Date(points[i].start);
      const anchor = labels > 1 && j === 0 ? "start" : labels > 1 && j === labels - 1 ? "end" :
        "middle";
      s.appendChild(svg("text", { x: x(i), y: H - B + 16, "text-anchor": anchor },
        (d.getMonth() + 1) + "/" + d.getDate() + " " + String(d.getHours()).padStart(2, "0") +
        ":" + String(d.getMinutes()).padStart(2, "0")));
    }
    for (const [k, color] of active) {
      const pts = points.map((p, i) => x(i).toFixed(1) + "," + y(p.counters[k] || 0).toFixed(1));
      s.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color,
        "stroke-width": 2, "data-series": k }));
      points.forEach((p, i) => {
        const c = svg("circle", { cx: x(i), cy: y(p.counters[k] || 0), r: 3, fill: color });
        c.appendChild(svg("title", {}, "run " + p.id + " " + p.step + " · " + k + ": " +
          (p.counters[k] || 0)));
        s.appendChild(c);
      });
    }
    return s;
  }

  async function runsPage(seq, params) {
    const before = params.get("before") || "";
    const step = params.get("step") || "";
    const connector = params.get("connector") || "";
    const top = params.get("top") === "0" ? "0" : "1";
    const chartBox = h("div", { class: "card chart" }, h("h2", { text: "Counters per run" }),
      h("div", { class: "spin", text: "loading…" }));
    const listBox = h("div", { class: "card" }, h("div", { class: "spin", text: "loading…" }));
    const stepSel = h("select", { "data-testid": "filter-step", onchange: () => go("/runs",
      { step: stepSel.value, connector, top }) },
    ["", "cycle", "full-import", "delta-import", "full-sync", "delta-sync", "export",
      "reconnect"].map((s) => h("option", { value: s, selected: s === step }, s || "any step")));
    const topBox = h("input", { type: "checkbox", checked: top === "1", onchange: () =>
      go("/runs", { step, connector, top: topBox.checked ? "1" : "0" }) });
    main.replaceChildren(h("h1", { text: "Run history" }),
      chartBox,
      h("div", { class: "toolbar" }, stepSel,
        h("label", {}, topBox, " cycles and steps run alone only"),
        connector ? h("span", {}, "connector " + connector + " ",
          h("a", { href: "#/runs" }, "(clear)")) : null),
      listBox);
    try {
      const [series, runs] = await Promise.all([
        api("/api/runs/series?limit=60"),
        api("/api/runs" + qs({ before, step, connector, top: top === "1" ? "1" : "",
          limit: PAGE }))]);
      if (seq !== routeSeq) return;
      const drawChart = () => {
        const legend = h("div", { class: "legend" }, SERIES.map(([k, color]) => {
          const sw = h("span", { class: "swatch" });
          sw.style.background = color;
          const cb = h("input", { type: "checkbox", checked: chartOn.has(k), onchange: () => {
            if (cb.checked) chartOn.add(k); else chartOn.delete(k);
            drawChart();
          } });
          return h("label", {}, cb, sw, k);
        }));
        chartBox.replaceChildren(h("h2", { text: "Counters per run (the last " +
          series.series.length + " cycles and steps run alone)" }),
        series.series.length ? chart(series.series, chartBox.clientWidth - 34) :
          h("div", { class: "empty",
          text: "no runs yet" }), legend);
      };
      drawChart();
      listBox.replaceChildren(runsTable(runs.runs),
        h("div", { class: "pager" },
          before ? h("a", { href: "#/runs" + qs({ step, connector, top }) }, "« newest") : null,
          runs.next_before ? h("a", { href: "#/runs" + qs({ before: runs.next_before, step,
            connector, top }), "data-testid": "older" }, "older »") : null));
    } catch (e) {
      if (seq === routeSeq) showError(listBox, e);
    }
  }

  async function runPage(seq, id) {
    main.replaceChildren(h("div", { class: "spin", text: "loading…" }));
    try {
      const run = await api("/api/runs/" + id);
      if (seq !== routeSeq) return;
      const counters = run.total_counters || run.counters;
      const errBox = h("div", {});
      main.replaceChildren(
        h("h1", {}, "Run " + run.id + " · " + run.step + (run.connector ? " " + run.connector :
          "") + " ", pill(run.status)),
        h("div", { class: "grid" },
          h("div", { class: "card" }, h("dl", { class: "kv" },
            h("dt", { text: "Started" }), h("dd", {}, fmtTime(run.start)),
            h("dt", { text: "Ended" }), h("dd", {}, fmtTime(run.end)),
            h("dt", { text: "Duration" }), h("dd", {}, fmtDur(run.duration_ms)),
            h("dt", { text: "Dry run" }), h("dd", {}, run.dry_run ? "yes" : "no"),
            run.parent ? [h("dt", { text: "Cycle" }), h("dd", {}, h("a", { href: "#/runs/" +
              run.parent }, "run " + run.parent))] : null,
            h("dt", { text: "Errors" }), h("dd", {}, String(run.total_errors !== undefined ?
              run.total_errors : run.errors)),
            run.message ? [h("dt", { text: "Message" }), h("dd", { "data-testid":
              "run-message" }, run.message)] : null)),
          h("div", { class: "card" }, h("h2", { text: "Counters" }),
            h("table", {}, h("tbody", {}, nonZero(counters).map(([k, v]) => h("tr", {},
              h("td", {}, k), h("td", { class: "num" }, String(v))))))),
          run.children.length ? h("div", { class: "card wide" }, h("h2", { text: "Steps" }),
            runsTable(run.children)) : null),
        h("div", { class: "card" }, h("h2", {}, "Errors of this run"), errBox));
      errorList(errBox, { run: run.id }, seq);
    } catch (e) {
      if (seq === routeSeq) showError(main, e);
    }
  }

  /* ---- errors -------------------------------------------------------------- */

  /* code: the code filter the table answers (data-code, for tests and
   * scripts that must not read the table of the page before) */
  function errorsTable(errors, code) {
    if (!errors.length) return h("div", { class: "empty", "data-testid": "no-errors",
      "data-code": code || "", text: "no errors" });
    return h("table", { "data-testid": "errors-table", "data-code": code || "" },
      h("thead", {}, h("tr", {}, ["Run", "Connector", "Object", "Attribute", "Code",
        "Message"].map((t) => h("th", { text: t })))),
      h("tbody", {}, errors.map((e) => h("tr", {},
        h("td", {}, h("a", { href: "#/runs/" + e.run }, String(e.run))),
        h("td", {}, e.connector || "—"),
        h("td", {},
          e.cs_id ? h("a", { href: "#/cs/" + e.cs_id }, e.dn || e.anchor || "cs " + e.cs_id) :
            (e.dn || e.anchor || ""),
          e.mv_id ? [" ", h("a", { href: "#/mv/" + e.mv_id }, "(mv " + e.mv_id + ")")] : null),
        h("td", {}, e.attr || ""),
        h("td", {}, pill(e.code || "error", "error")),
        h("td", {}, e.message || "")))));
  }

  async function errorList(box, f, seq) {
    const offset = Number(f.offset || 0);
    box.replaceChildren(h("div", { class: "spin", text: "loading…" }));
    try {
      const path = f.run ? "/api/runs/" + f.run + "/errors" : "/api/errors";
      const page = await api(path + qs({ connector: f.connector, code: f.code, q: f.q,
        offset, limit: PAGE }));
      if (seq !== routeSeq) return;
      const pager = h("div", { class: "pager" });
      const more = offset + page.errors.length < page.total;
      const nav = (o) => { f.offset = o; errorList(box, f, seq); };
      if (offset > 0) pager.appendChild(h("button", { onclick: () => nav(Math.max(0,
        offset - PAGE)) }, "« previous"));
      pager.appendChild(h("span", { class: "muted" }, page.errors.length ?
        (offset + 1) + "–" + (offset + page.errors.length) + " of " + page.total +
        (page.complete === false ? "+" : "") + (page.run ? " (run " + page.run + ")" : "") :
        ""));
      if (more) pager.appendChild(h("button", { onclick: () => nav(offset + PAGE),
        "data-testid": "errors-next" }, "next »"));
      box.replaceChildren(errorsTable(page.errors, f.code), pager);
    } catch (e) {
      if (seq === routeSeq) showError(box, e);
    }
  }

  async function errorsPage(seq, params) {
    const f = { run: params.get("run") || "", connector: params.get("connector") || "",
      code: params.get("code") || "", q: params.get("q") || "" };
    const box = h("div", { class: "card" });
    const runSel = h("select", { name: "run", "data-testid": "filter-run" },
      h("option", { value: "" }, "newest run with errors"));
    const connSel = h("select", { name: "connector", "data-testid": "filter-connector" },
      h("option", { value: "" }, "any connector"));
    const code = h("select", { name: "code", "data-testid": "filter-code" },
      ["", "ambiguous-join", "anchor-mismatch", "export-failed",
        "exported-change-not-reimported", "reference-unresolved", "expression-error",
        "bad-input"].map((c) => h("option", { value: c, selected: c === f.code },
        c || "any code")));
    const q = h("input", { type: "search", name: "q", value: f.q, placeholder:
      "anchor, DN, attribute or message contains…", "data-testid": "filter-q" });
    const form = h("form", { class: "toolbar", onsubmit: (ev) => {
      ev.preventDefault();
      go("/errors", { run: runSel.value, connector: connSel.value, code: code.value,
        q: q.value });
    } }, runSel, connSel, code, q, h("button", { class: "primary", type: "submit" }, "Filter"));
    main.replaceChildren(h("h1", { text: "Errors" }), form, box);
    try {
      const [runs, conns] = await Promise.all([api("/api/runs?limit=200"),
        api("/api/connectors")]);
      if (seq !== routeSeq) return;
      for (const r of runs.runs.filter((r) => r.counters.errors > 0 && r.step !== "cycle")) {
        runSel.appendChild(h("option", { value: r.id, selected: String(r.id) === f.run },
          "run " + r.id + " · " + r.step + (r.connector ? " " + r.connector : "") + " · " +
          r.counters.errors + " errors · " + fmtTime(r.start)));
      }
      for (const c of conns.connectors) {
        connSel.appendChild(h("option", { value: c.name, selected: c.name === f.connector },
          c.name));
      }
    } catch (e) {
      if (seq === routeSeq) showError(box, e);
      return;
    }
    errorList(box, f, seq);
  }

  /* ---- objects: search and detail ------------------------------------------- */

  async function searchPage(seq, params) {
    const space = params.get("connector") || "";
    const q = params.get("q") || "";
    const after = params.get("after") || "";
    const sel = params.get("sel") || "";
    const spaceSel = h("select", { "data-testid": "search-space" },
      h("option", { value: "" }, "metaverse"));
    const input = h("input", { type: "search", value: q, "data-testid": "search-q",
      placeholder: space ? "anchor, DN, or attr=value (join attributes)" :
        "id, a join attribute value, or attr=value" });
    const selSel = h("select", { "data-testid": "search-sel" },
      ["", "pending-import", "pending-export", "disconnectors", "joined"].map((s) =>
        h("option", { value: s, selected: s === sel }, s || "all objects")));
    const form = h("form", { class: "toolbar", onsubmit: (ev) => {
      ev.preventDefault();
      go("/search", { connector: spaceSel.value, q: input.value.trim(),
        sel: spaceSel.value ? selSel.value : "" });
    } }, spaceSel, input, space ? selSel : null,
    h("button", { class: "primary", type: "submit", "data-testid": "search-go" }, "Search"));
    const box = h("div", { class: "card" });
    main.replaceChildren(h("h1", { text: "Objects" }), form, box);
    spaceSel.addEventListener("change", () => go("/search", { connector: spaceSel.value }));
    try {
      const conns = await api("/api/connectors");
      if (seq !== routeSeq) return;
      for (const c of conns.connectors) {
        spaceSel.appendChild(h("option", { value: c.name, selected: c.name === space },
          "connector space: " + c.name));
      }
      const res = space
        ? await api("/api/cs" + qs({ connector: space, q, after, sel, limit: PAGE }))
        : await api("/api/mv" + qs({ q, after, limit: PAGE }));
      if (seq !== routeSeq) return;
      const rows = res.objects.map((o) => space
        ? h("tr", {},
          h("td", {}, h("a", { href: "#/cs/" + o.id }, String(o.id))),
          h("td", {}, o.type), h("td", { class: "mono" }, o.anchor || "—"),
          h("td", {}, o.dn || ""), h("td", {}, o.display || ""),
          h("td", {}, o.mv_id ? h("a", { href: "#/mv/" + o.mv_id }, "mv " + o.mv_id) :
            pill("disconnector", "pending")),
          h("td", {}, o.export_state !== "none" ? pill(o.export_state) : ""))
        : h("tr", {},
          h("td", {}, h("a", { href: "#/mv/" + o.id, "data-testid": "mv-link" },
            String(o.id))),
          h("td", {}, o.type), h("td", {}, o.display || "")));
      const head = space ? ["Id", "Type", "Anchor", "DN", "Name", "Link", "Export"] :
        ["Id", "Type", "Name"];
      box.replaceChildren(
        h("div", { class: "muted" }, (res.total !== null ? res.total + " found" : "") +
          (res.mode === "attr" && !space ? " · attr=value searches that are not join " +
            "attributes scan the metaverse" : "")),
        rows.length ? h("table", { "data-testid": "search-results", "data-q": q || "" },
          h("thead", {}, h("tr", {}, head.map((t) => h("th", { text: t })))),
          h("tbody", {}, rows)) : h("div", { class: "empty", "data-testid": "no-results",
          "data-q": q || "", text: "nothing found" }),
        h("div", { class: "pager" },
          after ? h("a", { href: "#/search" + qs({ connector: space, q, sel }) }, "« first") :
            null,
          res.next_after ? h("a", { href: "#/search" + qs({ connector: space, q, sel,
            after: res.next_after }), "data-testid": "next-page" }, "next »") : null));
    } catch (e) {
      if (seq === routeSeq) showError(box, e);
    }
  }

  function changeView(ch) {
    if (!ch) return h("span", { class: "muted", text: "none" });
    const lines = [ch.op + " " + (ch.dn || ch.anchor || "") + (ch.new_dn ? " → " + ch.new_dn :
      "")];
    for (const m of ch.mods || []) {
      lines.push("  " + m.op + " " + m.attr + ": " + (m.values || []).map(valueText)
        .join(" | "));
    }
    return h("pre", { class: "change" }, lines.join("\n"));
  }

  function valuesList(a, refLink) {
    return h("ul", { class: "values" }, a.values.map((v) => h("li", {},
      a.ref && refLink && typeof v === "string" && /^\d+$/.test(v)
        ? h("a", { href: "#/mv/" + v }, "mv " + v) : valueText(v))));
  }

  async function mvPage(seq, id) {
    main.replaceChildren(h("div", { class: "spin", text: "loading…" }));
    try {
      const o = await api("/api/mv/" + id);
      if (seq !== routeSeq) return;
      const attrRows = o.attributes.map((a) => h("tr", { "data-attr": a.name },
        h("td", { class: "mono" }, a.name),
        h("td", {}, valuesList(a, true)),
        h("td", { class: "lineage" }, a.source ? [
          h("a", { href: a.source.cs_id ? "#/cs/" + a.source.cs_id : "#/search?connector=" +
            encodeURIComponent(a.source.connector), "data-testid": "lineage-link" },
          a.source.connector + " / " + a.source.object +
            (a.source.cs_anchor ? " " + a.source.cs_anchor : "")),
          h("div", {}, "rule ", h("span", { class: "rule" }, a.source.rule || a.name),
            a.source.plain ? " (copy)" : " (expression)",
            h("span", { class: "muted" }, " · from[" + a.source.index + "], line " +
              a.source.config_line))
        ] : h("span", { class: "muted" }, "no inbound rule (set by idsync)"))));
      const linkRows = o.links.map((l) => h("tr", {},
        h("td", {}, h("a", { href: "#/cs/" + l.id, "data-testid": "cs-link" }, l.connector)),
        h("td", {}, l.role), h("td", {}, l.type),
        h("td", { class: "mono" }, l.anchor || "—"), h("td", {}, l.dn || ""),
        h("td", {}, l.flags.join(", ")),
        h("td", {}, l.export_state !== "none" ? [pill(l.export_state), changeView(
          l.pending_export)] : "—", l.export_error ? h("div", { class: "notice bad" },
          l.export_error) : null)));
      const outRows = o.outbound.map((ob) => h("div", { class: "card" },
        h("h2", {}, "→ " + ob.connector + " / " + ob.object + " ",
          ob.cs_id ? h("a", { href: "#/cs/" + ob.cs_id }, "cs " + ob.cs_id) :
            h("span", { class: "muted" }, ob.provision ? "not provisioned yet" :
              "not joined (no provisioning)")),
        h("table", {}, h("tbody", {}, ob.flows.map((f) => h("tr", {},
          h("td", { class: "mono" }, f.attr), h("td", { class: "lineage" }, "← ",
            h("span", { class: "rule" }, f.rule))))))));
      main.replaceChildren(
        h("h1", { "data-testid": "mv-title" }, "Metaverse " + o.type + " " + o.id +
          (o.display ? " · " + o.display : "")),
        h("div", { class: "muted" }, "created by run ", o.created_run ? h("a", { href:
          "#/runs/" + o.created_run }, String(o.created_run)) : "—", ", last changed by run ",
        o.updated_run ? h("a", { href: "#/runs/" + o.updated_run }, String(o.updated_run)) :
          "—"),
        h("div", { class: "card" }, h("h2", { text: "Attributes and where they come from" }),
          h("table", { "data-testid": "mv-attributes" },
            h("thead", {}, h("tr", {}, ["Attribute", "Values", "Lineage"].map((t) =>
              h("th", { text: t })))), h("tbody", {}, attrRows))),
        h("div", { class: "card" }, h("h2", { text: "Connector-space objects" }),
          h("table", { "data-testid": "mv-links" },
            h("thead", {}, h("tr", {}, ["Connector", "Role", "Type", "Anchor", "DN", "Flags",
              "Pending export"].map((t) => h("th", { text: t })))), h("tbody", {}, linkRows))),
        outRows.length ? h("h2", { text: "Outbound rules" }) : "", ...outRows);
    } catch (e) {
      if (seq === routeSeq) showError(main, e);
    }
  }

  async function csPage(seq, id) {
    main.replaceChildren(h("div", { class: "spin", text: "loading…" }));
    try {
      const o = await api("/api/cs/" + id);
      if (seq !== routeSeq) return;
      main.replaceChildren(
        h("h1", { "data-testid": "cs-title" }, "Connector space " + o.connector + " · " +
          (o.display || o.dn || o.anchor || o.id)),
        h("div", { class: "grid" },
          h("div", { class: "card" }, h("dl", { class: "kv" },
            h("dt", { text: "Id" }), h("dd", {}, String(o.id)),
            h("dt", { text: "Type" }), h("dd", {}, o.type),
            h("dt", { text: "Anchor" }), h("dd", { class: "mono" }, o.anchor || "— (not " +
              "created yet)"),
            h("dt", { text: "DN" }), h("dd", {}, o.dn || "—"),
            h("dt", { text: "Metaverse" }), h("dd", {}, o.mv ? h("a", { href: "#/mv/" + o.mv.id,
              "data-testid": "mv-link" }, o.mv.type + " " + o.mv.id +
              (o.mv.display ? " · " + o.mv.display : "")) : pill("disconnector", "pending")),
            h("dt", { text: "Flags" }), h("dd", {}, o.flags.join(", ") || "—"),
            h("dt", { text: "Import" }), h("dd", {}, pill(o.import_state, "ok")),
            h("dt", { text: "Export" }), h("dd", {}, pill(o.export_state, o.export_state ===
              "none" ? "ok" : o.export_state)),
            h("dt", { text: "Hash" }), h("dd", { class: "mono" }, o.hash))),
          h("div", { class: "card" }, h("h2", { text: "Pending export" }),
            changeView(o.pending_export),
            o.export_error ? h("div", { class: "notice bad" }, "attempt " + o.export_attempts +
              ": " + o.export_error) : null,
            h("h2", { text: "Exported, not yet confirmed by an import" }),
            changeView(o.unconfirmed))),
        h("div", { class: "card" }, h("h2", { text: "Attributes" }),
          h("table", { "data-testid": "cs-attributes" }, h("tbody", {}, o.attributes.map((a) =>
            h("tr", {}, h("td", { class: "mono" }, a.name), h("td", {},
              valuesList(a, false))))))));
    } catch (e) {
      if (seq === routeSeq) showError(main, e);
    }
  }

  /* ---- pending exports and the dry-run report -------------------------------- */

  async function pendingPage(seq, params) {
    const connector = params.get("connector") || "";
    const after = params.get("after") || "";
    const request = params.get("request") || "";
    const sel = h("select", { "data-testid": "pending-connector", onchange: () =>
      go("/pending", { connector: sel.value }) }, h("option", { value: "" }, "every connector"));
    const status = h("span", {});
    const box = h("div", { class: "card" });
    const reportBox = h("div", {});
    main.replaceChildren(h("h1", { text: "Pending exports" }),
      h("div", { class: "toolbar" }, sel, h("span", { class: "grow" }),
        h("button", { "data-testid": "dry-run", onclick: () => syncNow(false, true, status) },
          "Dry-run a cycle"), status),
      reportBox, box);
    try {
      const conns = await api("/api/connectors");
      if (seq !== routeSeq) return;
      for (const c of conns.connectors.filter((c) => c.target)) {
        sel.appendChild(h("option", { value: c.name, selected: c.name === connector },
          c.name + " (" + c.pending_exports + ")"));
      }
      if (request) {
        const rep = await api("/api/requests/" + request + "/report?limit=500");
        if (seq !== routeSeq) return;
        reportBox.replaceChildren(h("div", { class: "card", "data-testid": "dry-run-report" },
          h("h2", {}, "Dry-run report of request " + request + ": " + rep.total +
            " changes a cycle would export"),
          reportTable(rep.report)));
      }
      const page = await api("/api/pending" + qs({ connector, after, limit: PAGE }));
      if (seq !== routeSeq) return;
      box.replaceChildren(
        h("div", { class: "muted" }, page.total + " objects with a pending, in-flight or " +
          "failed export"),
        page.objects.length ? h("table", { "data-testid": "pending-table" },
          h("thead", {}, h("tr", {}, ["Object", "Connector", "State", "Change", "Last error"]
            .map((t) => h("th", { text: t })))),
          h("tbody", {}, page.objects.map((o) => h("tr", {},
            h("td", {}, h("a", { href: "#/cs/" + o.id }, o.dn || o.anchor || "cs " + o.id),
              o.mv_id ? [" ", h("a", { href: "#/mv/" + o.mv_id }, "(mv " + o.mv_id + ")")] :
                null),
            h("td", {}, o.connector), h("td", {}, pill(o.export_state)),
            h("td", {}, changeView(o.change)),
            h("td", {}, o.error ? o.error + " (attempt " + o.attempts + ")" : "")))))
          : h("div", { class: "empty", "data-testid": "no-pending", text: "nothing pending" }),
        h("div", { class: "pager" },
          after ? h("a", { href: "#/pending" + qs({ connector }) }, "« first") : null,
          page.next_after ? h("a", { href: "#/pending" + qs({ connector,
            after: page.next_after }) }, "next »") : null));
    } catch (e) {
      if (seq === routeSeq) showError(box, e);
    }
  }

  function reportTable(lines) {
    if (!lines.length) return h("div", { class: "empty", text: "nothing would be exported" });
    return h("table", {}, h("thead", {}, h("tr", {}, ["Connector", "Op", "Object",
      "Changes"].map((t) => h("th", { text: t })))),
    h("tbody", {}, lines.map((l) => h("tr", {},
      h("td", {}, l.connector || ""), h("td", {}, pill(l.op || "?", "pending")),
      h("td", {}, (l.dn || l.anchor || "") + (l.new_dn ? " → " + l.new_dn : "")),
      h("td", {}, h("pre", { class: "change" }, (l.changes || []).map((c) =>
        c.op + " " + c.attr + ": " + (c.old || []).map(valueText).join(" | ") + " → " +
        (c.new || []).map(valueText).join(" | ")).join("\n")))))));
  }

  /* ---- routing --------------------------------------------------------------- */

  async function route() {
    const seq = ++routeSeq;
    stopRefresh();
    const { path, params } = routeParams();
    const parts = path.split("/").filter(Boolean);
    const section = parts[0] || "dashboard";
    for (const a of document.querySelectorAll("#nav a")) {
      const r = a.getAttribute("data-route");
      a.classList.toggle("active", r === section ||
        (r === "search" && (section === "mv" || section === "cs")));
    }
    document.title = "idsync · " + section;
    if (section !== "dashboard") updateHeader().catch(() => {});
    if (section === "dashboard") return dashboard(seq);
    if (section === "runs" && parts[1]) return runPage(seq, parts[1]);
    if (section === "runs") return runsPage(seq, params);
    if (section === "errors") return errorsPage(seq, params);
    if (section === "search") return searchPage(seq, params);
    if (section === "mv" && parts[1]) return mvPage(seq, parts[1]);
    if (section === "cs" && parts[1]) return csPage(seq, parts[1]);
    if (section === "pending") return pendingPage(seq, params);
    main.replaceChildren(h("div", { class: "notice", text: "No such page." }));
  }

  window.addEventListener("hashchange", route);
  route();
})();
