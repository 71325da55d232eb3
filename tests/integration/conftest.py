"""Shared fixtures for the integration tests.

The binary under test is $IDSYNC (default: <repo>/build-test/idsync).

    def test_something(workdir, idsync):
        write_yaml(workdir / "idsync.yaml", CONFIG)
        write_csv(workdir / "src/people.csv", ["id", "mail"], [["E1", "a@example.com"]])
        code, out, err = idsync("cycle", "--full")
        assert code == 0, err
        data = idsync("history", "--json").json()

Fixtures:
  workdir   a fresh temporary folder (pathlib.Path) for a configuration, its
            data files and its store.
  idsync    run(*args, config=..., cwd=..., env=..., timeout=...) runs the
            binary with `-c CONFIG` (default: workdir/idsync.yaml) in `cwd`
            (default: workdir) and returns Result(code, out, err), which
            unpacks as a 3-tuple; Result.json() parses stdout.

Helpers (plain functions, import them with `from conftest import ...`):
  write_file(path, text)            create parent folders, write text as is
  write_yaml(path, text)            the same, after textwrap.dedent
  write_csv(path, header, rows)     RFC 4180 with CRLF line ends
  read_csv(path, key)               rows as {key value: {column: value}}

Others append their fixtures below; keep this part small.
"""
import collections
import csv
import io
import json
import os
import subprocess
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
IDSYNC = os.environ.get("IDSYNC", os.path.join(TOP, "build-test", "idsync"))


class Result(collections.namedtuple("Result", "code out err")):
    """Exit status, stdout and stderr of one run of idsync."""

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError as e:
            raise AssertionError("stdout is not JSON (%s): %r\nstderr: %s"
                                 % (e, self.out[:2000], self.err[:2000]))


def write_file(path, text):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path


def write_yaml(path, text):
    return write_file(path, textwrap.dedent(text).lstrip("\n"))


def write_csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow(r)
    return write_file(path, buf.getvalue())


def read_csv(path, key):
    with open(os.fspath(path), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        assert r[key] not in out, "duplicate row %s in %s" % (r[key], path)
        out[r[key]] = r
    return out


def run_idsync(*args, config=None, cwd=None, env=None, timeout=300):
    """Run the binary; config=None passes no -c (the default applies)."""
    if not os.access(IDSYNC, os.X_OK):
        raise AssertionError("no idsync binary at %s (build it, or set $IDSYNC)" % IDSYNC)
    e = dict(os.environ)
    e.pop("IDSYNC_CONFIG", None)
    e.pop("IDSYNC_FAULT", None)
    if env:
        e.update(env)
    cmd = [IDSYNC]
    if config is not None:
        cmd += ["-c", os.fspath(config)]
    p = subprocess.run(cmd + [str(a) for a in args], cwd=cwd, env=e, capture_output=True,
                       text=True, errors="replace", timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def workdir(tmp_path):
    """A fresh temporary folder for a configuration, data files and store."""
    return tmp_path


@pytest.fixture
def idsync(workdir):
    """run(*args, config=workdir/idsync.yaml, cwd=workdir, env=None) -> Result."""

    def run(*args, config=workdir / "idsync.yaml", cwd=workdir, env=None, timeout=300):
        return run_idsync(*args, config=config, cwd=cwd, env=env, timeout=timeout)

    return run


# ---- idsync serve (issue 6) ---------------------------------------------------
# serve_daemon(config=workdir/idsync.yaml, args=(), env=None) -> ServeDaemon:
# starts `idsync serve` as a child of the fixture and stops it (SIGTERM, then
# SIGKILL after 60 s) at the end of the test. Its log is workdir/serve-N.log.

import signal as _signal
import socket as _socket
import ssl as _ssl
import time as _time
import urllib.error as _urlerror
import urllib.request as _urlrequest


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=60, interval=0.05, what="condition"):
    """Poll cond() until it returns a true value (returned); fail after timeout."""
    deadline = _time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if _time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        _time.sleep(interval)


class ServeDaemon:
    """One `idsync serve` process and a small client for its API."""

    def __init__(self, workdir, config, port, args=(), env=None, token=None, cafile=None,
                 scheme="http"):
        self.workdir = workdir
        self.config = os.fspath(config)
        self.port = port
        self.args = list(args)
        self.env = env
        self.token = token
        self.scheme = scheme
        self.ctx = _ssl.create_default_context(cafile=cafile) if cafile else None
        self.proc = None
        self.logs = []

    @property
    def base(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None
        e = dict(os.environ)
        e.pop("IDSYNC_CONFIG", None)
        e.pop("IDSYNC_FAULT", None)
        if self.env:
            e.update(self.env)
        log = os.path.join(os.fspath(self.workdir), "serve-%d.log" % (len(self.logs) + 1))
        self.logs.append(log)
        self.logf = open(log, "w")
        self.proc = subprocess.Popen([IDSYNC, "-c", self.config, "serve"] + self.args,
                                     cwd=os.fspath(self.workdir), env=e, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        if wait:
            wait_until(lambda: self.proc.poll() is not None or self._healthy(), 30,
                       what="the daemon to answer /healthz")
            assert self.proc.poll() is None, "daemon exited %s:\n%s" % (self.proc.returncode,
                                                                      self.log())
        return self

    def _healthy(self):
        try:
            return self.request("GET", "/healthz", raw=True)[0] == 200
        except (OSError, _urlerror.URLError):
            return False

    def log(self):
        return "".join(open(p, encoding="utf-8", errors="replace").read() for p in self.logs)

    def request(self, method, path, body=None, headers=None, raw=False, token=True):
        h = {"Content-Type": "application/json"} if method == "POST" else {}
        if self.token and token:
            h["Authorization"] = "Bearer " + self.token
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST"
                                                                      else None)
        req = _urlrequest.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with _urlrequest.urlopen(req, timeout=30, context=self.ctx) as r:
                status, text = r.status, r.read().decode("utf-8")
        except _urlerror.HTTPError as err:
            status, text = err.code, err.read().decode("utf-8")
        if raw:
            return status, text
        return status, (json.loads(text) if text.strip() else None)

    def get(self, path):
        status, doc = self.request("GET", path)
        assert status == 200, (path, status, doc)
        return doc

    def post(self, path, body=None):
        return self.request("POST", path, body)

    def status(self):
        return self.get("/api/status")

    def cycle(self, full=False, dry_run=False, timeout=300):
        """Ask for a cycle and wait for it; returns the finished request."""
        status, req = self.post("/api/cycle", {"full": full, "dry_run": dry_run})
        assert status == 202, (status, req)
        return self.wait_request(req["id"], timeout)

    def wait_request(self, rid, timeout=300):
        return wait_until(lambda: (lambda r: r if r["state"] == "done" else None)(
            self.get("/api/requests/%d" % rid)), timeout, 0.1, "request %d" % rid)

    def wait_idle(self, timeout=300):
        """Wait until no cycle runs or is queued (e.g. the one at start)."""
        return wait_until(lambda: (lambda s: s if s["state"] == "idle" and not s["queue"]
                                   else None)(self.status()), timeout, 0.1, "an idle daemon")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(_signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the daemon did not stop within %ss after SIGTERM" % timeout)
        finally:
            self.logf.close()


@pytest.fixture
def serve_daemon(workdir):
    """Factory: serve_daemon(port, config=..., args=(), env=None, token=None, cafile=None,
    scheme="http", start=True) -> ServeDaemon (started). Every daemon is stopped at the end."""
    started = []

    def make(port, config=None, args=(), env=None, token=None, cafile=None, scheme="http",
             start=True):
        d = ServeDaemon(workdir, config or workdir / "idsync.yaml", port, args, env, token,
                        cafile, scheme)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        if d.proc is not None:
            d.logf.close()
