"""``python -m sweeps dashboard RUN [--port P] [--host H]``: optuna-dashboard over a run's Optuna study.

The searcher keeps its study in ``<run_dir>/optuna.journal`` (Optuna's JournalStorage on a file,
study name = the run folder's name). This command serves optuna-dashboard (the ``optuna-dashboard``
package) over that file, on loopback unless ``--host`` says otherwise. The journal is re-read on
every request, so the dashboard follows a sweep while it runs and shows it whole after it ends.

Contract: ``main(args) -> int`` returns 2 with a one-line message (no traceback) when the run, its
journal or the package is missing; otherwise it serves until interrupted (Ctrl-C) and returns 0.
The served pages hold the study's trial parameters and values only (no cohort data).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

JOURNAL = "optuna.journal"
LOOPBACK = "127.0.0.1"


class DashboardError(RuntimeError):
    """The dashboard cannot start; the message says why and what to do."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run name (under the runs folder) or the path of a run folder")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)")
    p.add_argument("--host", default=LOOPBACK,
                   help="interface to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--storage", help="the folder the run was started with")
    p.add_argument("--allow-writes", action="store_true",
                   help="let the page change the study (notes, deleting trials or studies); default: read-only")


def journal_storage(run_dir: Path):
    """The run's Optuna JournalStorage; DashboardError when the run has no journal (a run started
    before the searcher kept one, or one whose searcher has not yet written it)."""
    path = Path(run_dir) / JOURNAL
    if not path.exists():
        raise DashboardError(
            f"run {Path(run_dir).name!r} has no Optuna study on disk ({path} is missing): runs started before "
            f"studies were stored, and fixed-configuration runs (nothing to search), have none. "
            f"Its report is under reports/{Path(run_dir).name}/.")
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def read_only(app):
    """A WSGI app that answers every request but GET/HEAD with 403: the study stays the searcher's."""

    def guarded(environ, start_response):
        if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
            return app(environ, start_response)
        body = b'{"reason": "read-only dashboard: start it with --allow-writes to change the study"}'
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return guarded


def make_server(run_dir: Path, host: str = LOOPBACK, port: int = 8080, *, allow_writes: bool = False):
    """A WSGI server (not yet serving) of optuna-dashboard over the run's journal; ``server.server_port``
    is the port it got (useful with ``port=0``). Read-only (GET/HEAD) unless ``allow_writes``."""
    try:
        import optuna_dashboard
    except ImportError:
        raise DashboardError("the dashboard needs the optuna-dashboard package: pip install optuna-dashboard "
                             "(or: pip install -e '.[dashboard]')") from None
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
    from wsgiref.simple_server import make_server as wsgi_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):  # no request lines on the terminal
            pass

    app = optuna_dashboard.wsgi(journal_storage(run_dir))
    if not allow_writes:
        app = read_only(app)
    try:
        return wsgi_server(host, port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(args: argparse.Namespace) -> int:
    import os

    from .runs import find_run

    if getattr(args, "storage", None):
        os.environ["SWEEPS_RUNS"] = str(Path(args.storage).resolve())
    try:
        run_dir = find_run(args.run)
        server = make_server(run_dir, args.host, args.port, allow_writes=getattr(args, "allow_writes", False))
    except (DashboardError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines; the default is {LOOPBACK}",
              file=sys.stderr)
    print(f"optuna-dashboard for run {run_dir.name}: http://{args.host}:{server.server_port}/ (Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m sweeps.dashboard", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
