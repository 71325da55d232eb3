// Browser test of the idsync web console (issue 6), in Debian's headless
// Chromium driven by playwright-core.
//
//   IDSYNC_URL=http://127.0.0.1:PORT OUT_DIR=/tmp/shots SEARCH=E0003 node console.test.js
//
// Opens every page, searches an object, follows its lineage to the
// connector-space object and back, triggers a cycle and waits for it to
// finish, and saves a screenshot of each page under OUT_DIR. Exits 0 when
// every check passed; otherwise prints the failed check and exits 1.
// Run by tests/integration/test_serve_browser.py, which starts the daemon.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const BASE = process.env.IDSYNC_URL;
const OUT = process.env.OUT_DIR;
const SEARCH = process.env.SEARCH || "E0003";
const EXPECT_NAME = process.env.EXPECT_NAME || "Given3 Family3";
const TIMEOUT = 30000;

if (!BASE || !OUT) {
  console.error("usage: IDSYNC_URL=... OUT_DIR=... node console.test.js");
  process.exit(2);
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("ok - " + what);
}

async function shot(page, name) {
  const file = path.join(OUT, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  console.log("screenshot " + file);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "idsync-chromium-"));
  // An empty profile and these flags keep Chromium from connecting anywhere
  // at start-up.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1360, height: 900 },
  });
  const errors = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (e) => errors.push("page error: " + e.message));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push("console error: " + m.text());
    });
    // nothing may be fetched from anywhere but the daemon
    await page.route("**/*", (route) => {
      const u = route.request().url();
      if (u.startsWith(BASE + "/")) return route.continue();
      errors.push("request outside the daemon: " + u);
      return route.abort();
    });

    // dashboard
    await page.goto(BASE + "/", { waitUntil: "load" });
    await page.getByTestId("card-last-cycle").waitFor();
    await page.locator("[data-testid=card-last-cycle] .pill.success").waitFor();
    check(await page.getByTestId("card-connectors").locator("tbody tr").count() >= 2,
      "dashboard lists the connectors");
    check((await page.getByTestId("next-run").textContent()).includes("in "),
      "dashboard shows the next run");
    check(await page.getByTestId("card-runs").locator("tbody tr").count() >= 1,
      "dashboard lists the last runs");
    await shot(page, "01-dashboard");

    // run history with its chart
    await page.click("#nav a[data-route=runs]");
    await page.getByTestId("chart").waitFor();
    check(await page.locator("[data-testid=chart] polyline").count() >= 1,
      "run history draws the counters chart");
    await page.getByTestId("runs-table").waitFor();
    await shot(page, "02-runs");

    // one run
    await page.locator("[data-testid=runs-table] tbody tr a").first().click();
    await page.locator("h1", { hasText: "Run " }).waitFor();
    await shot(page, "03-run");

    // errors with filters
    await page.click("#nav a[data-route=errors]");
    await page.getByTestId("errors-table").waitFor();
    const before = await page.locator("[data-testid=errors-table] tbody tr").count();
    check(before >= 1, "the errors page lists errors");
    await shot(page, "04-errors");
    await page.getByTestId("filter-code").selectOption("ambiguous-join");
    await page.locator("form.toolbar button[type=submit]").click();
    // the table that answers this filter (the page showed every code before it)
    const filtered = page.locator("[data-testid=errors-table][data-code=ambiguous-join]");
    await filtered.waitFor();
    const codes = await filtered.locator("tbody tr td:nth-child(5)").allTextContents();
    check(codes.length >= 1 && codes.every((c) => c === "ambiguous-join"),
      "the code filter keeps only ambiguous-join errors");
    await shot(page, "05-errors-filtered");

    // object search, detail, lineage
    await page.click("#nav a[data-route=search]");
    await page.getByTestId("search-q").fill(SEARCH);
    await page.getByTestId("search-go").click();
    // the table that answers this query (the page listed every object before it)
    const results = page.locator(`[data-testid=search-results][data-q="${SEARCH}"]`);
    await results.waitFor();
    const found = await results.locator("tbody tr").count();
    check(found === 1, "searching " + SEARCH + " finds one metaverse object");
    await shot(page, "06-search");
    await page.getByTestId("mv-link").first().click();
    await page.getByTestId("mv-attributes").waitFor();
    check((await page.getByTestId("mv-title").textContent()).includes(EXPECT_NAME),
      "the metaverse object is " + EXPECT_NAME);
    const dnRow = page.locator("[data-testid=mv-attributes] tr[data-attr=displayName]");
    check((await dnRow.textContent()).includes("givenName .. \" \" .. sn"),
      "lineage names the rule that computed displayName");
    await shot(page, "07-mv-lineage");
    await dnRow.getByTestId("lineage-link").click();
    await page.getByTestId("cs-attributes").waitFor();
    check((await page.getByTestId("cs-title").textContent()).includes("hr"),
      "the lineage link opens the hr connector-space object");
    await shot(page, "08-cs");
    await page.getByTestId("mv-link").click();
    await page.getByTestId("mv-links").waitFor();
    check(await page.locator("[data-testid=mv-links] tbody tr").count() >= 2,
      "the metaverse object links a source and a target object");

    // pending exports
    await page.click("#nav a[data-route=pending]");
    await page.locator("[data-testid=pending-table], [data-testid=no-pending]").first()
      .waitFor();
    await shot(page, "09-pending");

    // trigger a cycle and watch it finish
    await page.click("#nav a[data-route=dashboard]");
    await page.getByTestId("card-state").waitFor();
    await page.getByTestId("sync-now").click();
    await page.getByTestId("request-run").waitFor({ timeout: 120000 });
    const state = await page.getByTestId("sync-status").textContent();
    check(/success|completed-with-errors/.test(state), "the cycle asked for finished: " +
      state.trim());
    const runId = (await page.getByTestId("request-run").textContent()).replace("run ", "");
    await page.locator("[data-testid=card-last-cycle] a", { hasText: "run " + runId })
      .waitFor();
    console.log("ok - the dashboard shows the new cycle as the last one");
    await shot(page, "10-cycle-finished");

    check(errors.length === 0, "no page errors and nothing fetched elsewhere" +
      (errors.length ? ": " + errors.join("; ") : ""));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
