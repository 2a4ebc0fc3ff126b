"""FAKE alert receivers for the delivery tests: a webhook / Slack-shaped HTTP receiver and an SMTP sink
(aiosmtpd), each on 127.0.0.1 in a thread of the test process, recording what Alertmanager sent them."""
from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes
from email.message import Message

from aiohttp import web

from tests.support.serverthread import ServerThread


class FakeHTTPReceiver:
    """Records every POST (path, headers, JSON body) and answers as Slack's incoming webhooks do (200 "ok");
    with `failing` set it answers 503, as a receiver that cannot take the notification. Served by the tests'
    one server-in-a-thread harness."""

    def __init__(self):
        self.posts: list[dict] = []
        self.failing = False
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/{path:.*}", self._post)
        self.server = ServerThread(app, name="fake-alert-receiver").start()
        self.port = self.server.port

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.failing:
            return web.Response(status=503, text="unavailable")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        with self._lock:
            self.posts.append({"path": request.path, "headers": dict(request.headers), "json": doc})
        return web.Response(text="ok")

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def received(self, path: str) -> list[dict]:
        with self._lock:
            return [p["json"] for p in self.posts if p["path"] == path]

    def stop(self) -> None:
        self.server.stop()


class SMTPSink:
    """An SMTP server (aiosmtpd) that keeps every message it is sent, parsed; with `login` set it offers AUTH
    (over plain text: a local test server) and takes only that user and password."""

    def __init__(self, login: tuple[str, str] | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP, AuthResult

        class AsMailServersAsk(SMTP):
            # AUTH LOGIN's prompts as Postfix and Gmail send them; aiosmtpd's own ("User Name\0") are refused
            # by Alertmanager 0.25 ("loginAuth auth: unexpected server challenge").
            AuthLoginUsernameChallenge = "Username:"
            AuthLoginPasswordChallenge = "Password:"

        class Served(Controller):
            def factory(self):
                return AsMailServersAsk(self.handler, **self.SMTP_kwargs)

        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        owner = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            accepted = login is not None and (user, password) == login
            owner.logins.append((user, accepted))
            return AuthResult(success=accepted)

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                owner.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                owner.messages.append(message_from_bytes(envelope.original_content or envelope.content))
                return "250 OK"

        with socket.socket() as probe:  # a free port: aiosmtpd's Controller needs one named
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        extra = {"authenticator": authenticator, "auth_require_tls": False} if login else {}
        self.controller = Served(Handler(), hostname="127.0.0.1", port=self.port, **extra)
        self.controller.start()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in list(self.messages)]

    def stop(self) -> None:
        self.controller.stop()
