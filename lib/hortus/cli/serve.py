"""The `hortus serve` command: the online scoring service, and its bearer tokens.

    hortus serve [--model NAME] [--alias champion] [--host 127.0.0.1] [--port 8765]
    hortus serve token --user shop-web [--days 30] [--note TEXT]

Tokens are never taken from the command line: the service reads HORTUS_SERVE_TOKENS
and the git-ignored .hortus/secrets/serve_tokens.yaml (hashes only; format in
`hortus.serving._tokens`).  `hortus serve token` draws a random token for a user of
access_policy.yaml, stores its hash and prints the token once.
"""

from __future__ import annotations

import argparse
import sys

from hortus.cli._common import _paths
from hortus.errors import HortusError

SERVICE_USER = "hortus-serve"  # hortus.serving.service.SERVICE_USER (not imported: fast --help)


def cmd_serve(args: argparse.Namespace) -> int:
    from hortus.serving.service import ServeConfig, Service, build_app

    paths = _paths(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.public:
        raise HortusError(
            f"--host {args.host}: the service listens on loopback unless --public is given "
            "(put TLS in front of it first: bearer tokens travel in clear HTTP)"
        )
    config = ServeConfig(
        root=paths.root,
        models=tuple(args.model or ()),
        alias=args.alias,
        poll=args.poll,
        user=args.user,
    )
    service = Service(config)
    import uvicorn

    url = f"http://{args.host}:{args.port}"
    print(f"hortus serve: {', '.join(service.model_names)} ({args.alias}) on {url}  "
          f"(docs {url}/docs, readiness {url}/readyz)", flush=True)  # fmt: skip
    if not len(service.tokens):
        print("hortus serve: no tokens yet: issue one with "
              "`hortus serve token --user shop-web`", file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(build_app(service), host=args.host, port=args.port, log_level="warning",
                access_log=False, lifespan="on")  # fmt: skip
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from hortus.governance.access import Policy
    from hortus.serving._tokens import issue

    paths = _paths(args)
    policy = Policy.for_project(paths.policy)
    if args.user not in policy.users:
        raise HortusError(f"user {args.user!r} is not in {paths.policy}: add it there first")
    token, path = issue(paths.secrets, args.user, days=args.days, note=args.note or "")
    print(f"token for {args.user} (valid {args.days:g} days; its sha256 is in {path}):",
          file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def add_parsers(sub) -> None:
    """Register `hortus serve` (and `hortus serve token`) on the top-level subparsers."""
    s = sub.add_parser(
        "serve",
        help="online scoring service: predict, recommend, health, metrics (Starlette/uvicorn)",
        description="Serve the project's models over HTTP on 127.0.0.1 with bearer tokens, "
        "hot swap on promotion and logged predictions (hortus.serving.service).",
    )
    s.add_argument("--model", action="append", help="model to serve (repeatable; default: all)")
    s.add_argument("--alias", default="champion", help="registry alias to follow (champion)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (8765)")
    s.add_argument("--public", action="store_true", help="allow a non-loopback --host")
    s.add_argument("--poll", type=float, default=1.0, help="seconds between alias checks (1)")
    s.add_argument(
        "--user", default=SERVICE_USER, help=f"the service's own identity ({SERVICE_USER})"
    )
    s.set_defaults(func=cmd_serve)
    ssub = s.add_subparsers(dest="serve_command")
    t = ssub.add_parser("token", help="issue a bearer token for a user of the access policy",
                        description="Draw a random token, store its sha256 in "
                        ".hortus/secrets/serve_tokens.yaml and print the token once.")  # fmt: skip
    t.add_argument("--user", required=True, help="user of access_policy.yaml (e.g. shop-web)")
    t.add_argument("--days", type=float, default=30.0, help="validity in days (30)")
    t.add_argument("--note", help="why the token was issued (stored beside its hash)")
    t.set_defaults(func=cmd_token)
