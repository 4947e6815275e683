"""A real SMTP server for freezer-dr-email's tests: aiosmtpd (Debian python3-aiosmtpd) writing a Maildir.

Options: plain, STARTTLS (optionally required), SMTPS, AUTH (password from FREEZER_DR_TEST_SMTP_PASSWORD),
and a recipient policy: local parts starting with "reject" get 550 (for good), local parts starting with
"later" get 451 the first time (then accepted). Prints READY once it listens.
"""

import argparse
import asyncio
import os
import ssl
import sys

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult


class Handler(Mailbox):
    def __init__(self, maildir):
        super().__init__(maildir)
        self.deferred = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: no such user here" % address
        if local.startswith("later") and address not in self.deferred:
            self.deferred.add(address)
            return "451 4.3.0 <%s>: mailbox busy, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--smtps", action="store_true")
    p.add_argument("--user")
    a = p.parse_args()

    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)

    kw = {}
    if ctx is not None and not a.smtps:
        kw["tls_context"] = ctx
        kw["require_starttls"] = a.require_starttls
    if a.user:
        password = os.environ["FREEZER_DR_TEST_SMTP_PASSWORD"].encode()
        user = a.user.encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user and auth_data.password == password
            return AuthResult(success=ok, handled=False)

        kw["authenticator"] = authenticator
        kw["auth_required"] = True
        kw["auth_require_tls"] = False

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Handler(a.maildir)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="localhost", loop=loop, **kw),
            "127.0.0.1",
            a.port,
            ssl=ctx if a.smtps else None,
        )
    )
    print("READY", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
