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
