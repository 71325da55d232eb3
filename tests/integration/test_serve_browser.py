"""The web console of `idsync serve` in headless Chromium (issue 6).

Starts a daemon over CSV files (with an ambiguous join, so that the errors
page has something to show), then runs browser/console.test.js, which opens
every page, searches an object, follows its lineage, triggers a cycle and
waits for it to finish. Screenshots land in <test dir>/screenshots.

Needs Debian's chromium (scripts/deps.sh) and playwright-core
(`npm ci --prefix tests/integration/browser`).
"""
import os
import shutil
import subprocess

import pytest

from test_serve import prepare

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER = os.path.join(HERE, "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def test_console_pages_search_lineage_and_cycle(workdir, serve_daemon):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("no Chromium at %s: run scripts/deps.sh" % CHROMIUM)
    if not os.path.isdir(os.path.join(BROWSER, "node_modules", "playwright-core")):
        pytest.fail("playwright-core is not installed: npm ci --prefix %s" % BROWSER)
    port, people = prepare(workdir, n=40)
    (workdir / "out/users.csv").write_text(
        "id,externalId,displayName,mail,title\r\n"
        "X1,,Twin One,user2@example.com,\r\n"
        "X2,,Twin Two,user2@example.com,\r\n", encoding="utf-8")
    d = serve_daemon(port)
    st = d.wait_idle()
    assert st["last_cycle"]["status"] == "success"
    shots = workdir / "screenshots"
    env = dict(os.environ, IDSYNC_URL=d.base, OUT_DIR=str(shots), SEARCH="E0003",
               EXPECT_NAME="Given3 Family3", CHROMIUM=CHROMIUM)
    p = subprocess.run([shutil.which("node") or "node", "console.test.js"], cwd=BROWSER,
                       env=env, capture_output=True, text=True, timeout=600)
    print(p.stdout)
    assert p.returncode == 0, "browser test failed:\n%s\n%s" % (p.stdout, p.stderr)
    names = sorted(os.listdir(shots))
    assert names == ["01-dashboard.png", "02-runs.png", "03-run.png", "04-errors.png",
                     "05-errors-filtered.png", "06-search.png", "07-mv-lineage.png",
                     "08-cs.png", "09-pending.png", "10-cycle-finished.png"], names
    assert all(os.path.getsize(shots / n) > 10000 for n in names)
    # the cycle the browser asked for ran in the daemon
    reqs = d.get("/api/requests")["requests"]
    assert any(r["origin"] == "api" and r["state"] == "done" for r in reqs)
