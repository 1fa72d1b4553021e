"""The status page's HTTP surface on a real `bot4d --sim`: halt is the only action, nothing
else changes state; beyond loopback it needs a credential (else exit 78) and a wrong token
gets 401."""
from __future__ import annotations

import json

from tests.daemon_harness import wait_for
from tests.operator.helpers import WEB_ON, halt_via_page, http, page_url

TOKEN = "s3cret-token-for-the-tests-0123456789"


def test_halt_is_the_only_action_and_nothing_else_changes_state(start_daemon):
    d = start_daemon(env=WEB_ON)
    d.wait_ready()
    base = page_url(d)
    assert d.status()["state"] == "ready"
    # Paths that would be actions elsewhere do not exist; the page's own paths are GET only.
    for path in ("api/reset", "api/start", "api/sim", "api/estop", "api/command", "reset",
                 "start", "api/breaker", "api/halt/../reset", "static/../cli.py"):
        code, _, _ = http(base + path, "POST", b"{}", {"Content-Type": "application/json"})
        assert code == 404, (path, code)
    for path in ("", "api/status", "api/events", "api/history", "metrics", "static/app.js"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            code, _, _ = http(base + path, method, b"{}", {"Content-Type": "application/json"})
            assert code == 405, (method, path, code)
    for method in ("GET", "PUT", "DELETE"):
        code, _, _ = http(base + "api/halt", method)
        assert code == 405, (method, code)
    assert d.status()["state"] == "ready"
    # The halt needs JSON (a cross-site form cannot send it) and the page's own origin.
    code, _, _ = http(base + "api/halt", "POST", b"reason=x",
                      {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415
    code, _, _ = http(base + "api/halt", "POST", b'{"reason": "x"}',
                      {"Content-Type": "application/json", "Origin": "http://evil.example"})
    assert code == 403
    assert d.status()["state"] == "ready"

    code, body = halt_via_page(base, "checking the halt button")
    assert code == 200 and body["ok"] and body["result"]["state"] == "halted"
    st = d.status()
    assert st["state"] == "halted" and st["latch"]["kind"] == "halt"
    assert "web page (127.0.0.1): checking the halt button" in st["reason"]
    assert "halt requested from the status page" in d.log
    # A second halt is refused the way bot4ctl's would be, and reset is still not offered.
    code, body = halt_via_page(base, "again")
    assert code == 200 or (code == 409 and body["error"])
    code, _, _ = http(base + "api/reset", "POST", b"{}", {"Content-Type": "application/json"})
    assert code == 404 and d.status()["state"] == "halted"
    # The page itself came with its security headers and the vendored chart library.
    code, headers, page = http(base)
    assert code == 200 and b'id="halt-button"' in page and b"uPlot.iife.min.js" in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    code, _, lic = http(base + "static/uPlot.LICENSE")
    assert code == 200 and b"MIT License" in lic
    assert d.terminate() == 0


def test_beyond_loopback_without_a_credential_refuses_to_start(start_daemon):
    d = start_daemon(env={**WEB_ON, "BOT4__WEB__LISTEN": "0.0.0.0"})
    assert d.proc.wait(30) == 78, d.log
    assert "listen" in d.log and "beyond loopback" in d.log
    assert not d.state_dir.exists() or not (d.state_dir / "journal.sqlite3").exists()


def test_a_named_credential_that_is_missing_refuses_to_start(start_daemon, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    d = start_daemon(env={**WEB_ON, "BOT4__WEB__LISTEN": "0.0.0.0",
                          "BOT4__WEB__TOKEN_CREDENTIAL": "bot4-web-token",
                          "CREDENTIALS_DIRECTORY": str(creds)})
    assert d.proc.wait(30) == 78, d.log
    assert "cannot start" in d.log and "bot4-web-token" in d.log
    assert TOKEN not in d.log


def test_token_required_beyond_loopback_wrong_token_401(start_daemon, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "bot4-web-token").write_text(TOKEN + "\n")
    d = start_daemon(env={**WEB_ON, "BOT4__WEB__LISTEN": "0.0.0.0",
                          "BOT4__WEB__TOKEN_CREDENTIAL": "bot4-web-token",
                          "CREDENTIALS_DIRECTORY": str(creds)})
    d.wait_ready()
    port = page_url(d).rstrip("/").rsplit(":", 1)[1]
    base = f"http://127.0.0.1:{port}/"
    for path in ("", "api/status", "metrics", "static/app.js", "api/history"):
        for kw in ({}, {"token": "wrong-token"}, {"basic": "wrong-token"},
                   {"token": TOKEN[:-1]}, {"headers": {"Authorization": "Basic !!!"}}):
            code, headers, _ = http(base + path, **kw)
            assert code == 401, (path, kw, code)
            assert headers["WWW-Authenticate"].startswith("Basic")
        assert http(base + path, token=TOKEN)[0] == 200
        assert http(base + path, basic=TOKEN)[0] == 200   # what a phone's browser sends
    code, _ = halt_via_page(base, "no token")
    assert code == 401 and d.status()["state"] == "ready"
    code, body = halt_via_page(base, "with the token", token=TOKEN)
    assert code == 200 and d.status()["state"] == "halted"
    web = d.status()["operator"]["web"]
    assert web["auth"] == "token" and web["unauthorized"] >= 26 and web["halts"] == 1
    assert TOKEN not in d.log and TOKEN not in json.dumps(d.status())
    assert d.terminate() == 0


def test_web_off_by_default_serves_nothing(start_daemon):
    d = start_daemon()
    d.wait_ready()
    st = d.status()
    assert st["operator"]["web"] is None
    assert "status page on" not in d.log
    wait_for(lambda: d.status()["state"] == "ready", 5)
    assert d.terminate() == 0


def _self_signed(tmp_path):
    import shutil
    import subprocess
    if not shutil.which("openssl"):
        import pytest
        pytest.skip("openssl not installed (makes the test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_with_the_configured_certificate(start_daemon, tmp_path):
    import ssl
    import urllib.request
    cert, key = _self_signed(tmp_path)
    d = start_daemon(env={**WEB_ON, "BOT4__WEB__TLS_CERT": str(cert),
                          "BOT4__WEB__TLS_KEY": str(key)})
    d.wait_ready()
    base = page_url(d)
    assert base.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False   # the test certificate names localhost, we dial 127.0.0.1
    with urllib.request.urlopen(base + "api/status", context=ctx, timeout=10) as r:
        assert r.status == 200 and json.loads(r.read())["status"]["state"] == "ready"
    # Plain HTTP on the TLS port gets no page.
    code = None
    try:
        code, _, _ = http(base.replace("https://", "http://") + "api/status")
    except OSError:
        pass
    assert code != 200
    assert d.status()["operator"]["web"]["tls"] is True
    assert d.terminate() == 0


def test_unreadable_certificate_refuses_to_start(start_daemon, tmp_path):
    d = start_daemon(env={**WEB_ON, "BOT4__WEB__TLS_CERT": str(tmp_path / "missing.pem"),
                          "BOT4__WEB__TLS_KEY": str(tmp_path / "missing.key")})
    assert d.proc.wait(30) == 78, d.log
    assert "tls_cert" in d.log


def test_port_in_use_is_a_failed_step_not_a_failed_boot(start_daemon):
    import socket
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        d = start_daemon(env={"BOT4__WEB__ENABLED": "true", "BOT4__WEB__PORT": str(port)})
        d.wait_ready()   # the safety chain is up without its page
        st = d.status()
        assert st["state"] == "ready"
        assert any(f.startswith("boot: operator's view failed") for f in st["failures"]), st
        assert st["operator"]["web"]["url"] is None
        assert d.terminate() == 0
    finally:
        blocker.close()
