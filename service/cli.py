"""`fraudvae serve`: registered with the library's command line through the ``fraudvae.commands``
entry point, so the library never imports the service."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="serve POST /score over HTTP (needs the 'service' extra)")
    s.add_argument("--model", help="model directory (default: $FRAUDVAE_MODEL)")
    s.add_argument("--host", help="default: $FRAUDVAE_HOST or 127.0.0.1")
    s.add_argument("--port", type=int, help="default: $FRAUDVAE_PORT or 8000")
    s.add_argument("--device", help="auto, cpu or cuda (default: $FRAUDVAE_DEVICE or auto)")
    s.add_argument("--workers", type=int, help="server processes (default: $FRAUDVAE_WORKERS, or one per core on "
                                               "CPU and one on a GPU)")
    s.add_argument("--shadow", metavar="DIR", help="a challenger model scoring every request too, off the "
                                                   "response path (default: $FRAUDVAE_SHADOW_MODEL)")
    s.add_argument("--state-dir", metavar="DIR", help="a model with entity columns: the embedded history state "
                                                      "store's folder (default: $FRAUDVAE_STATE_DIR, else "
                                                      "$XDG_STATE_HOME/fraudvae, else .fraudvae-state here)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(run=serve)


OPTIONS = {"shadow_model": "--shadow"}  # a setting whose option is not --its-name


def settings_from(given: dict) -> Settings:
    """The settings from the environment and the options `given`; a bad value is a `ConfigError`
    naming what the user set: the option, or the ``FRAUDVAE_*`` variable."""
    from pydantic import ValidationError

    from fraudvae import ConfigError

    from .settings import Settings

    try:
        return Settings(**given)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            name = OPTIONS.get(field, f"--{field.replace('_', '-')}") if field in given else f"FRAUDVAE_{field.upper()}"
            value = given.get(field, os.environ.get(f"FRAUDVAE_{field.upper()}"))
            problems.append(f"{name}={value}: {err['msg']}" if value is not None else f"{name}: {err['msg']}")
        raise ConfigError("; ".join(problems)) from None


def serve(a: argparse.Namespace) -> int:
    try:
        import pydantic_settings  # noqa: F401
        import uvicorn
    except ImportError as e:
        from fraudvae import ConfigError

        raise ConfigError(f"the service needs its extra ({e.name} is missing): "
                          "pip install 'fraudvae[service]'") from None
    given = {"model": a.model, "host": a.host, "port": a.port, "device": a.device, "workers": a.workers,
             "shadow_model": a.shadow, "state_dir": a.state_dir}
    # checked before the app module is imported: it reads the environment's settings on import
    settings = settings_from({k: v for k, v in given.items() if v is not None})
    from .app import create_app, load_detector
    detector = load_detector(settings)  # a bad model directory stops here, with a one-line reason
    if settings.shadow_model is not None:  # so does a challenger that cannot read the champion's requests
        from fraudvae import FraudVAE

        from .shadow import check_schemas

        check_schemas(detector, FraudVAE.load(settings.shadow_model, device="cpu"))
    workers = settings.worker_count(cuda=detector.device_.type == "cuda")
    common = {"host": settings.host, "port": settings.port, "log_level": a.log_level, "access_log": False,
              **settings.uvicorn_options()}
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal: exit 0 on it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if workers == 1:
        uvicorn.Server(uvicorn.Config(create_app(settings, detector), **common)).run()
    else:  # each worker process loads the model itself, from the settings passed in its environment
        import shutil
        import tempfile

        del detector
        os.environ.update({**settings.to_env(), "FRAUDVAE_WORKERS": str(workers)})  # each names the count it is in
        # one set of metrics across the workers: prometheus-client's multiprocess files, in a
        # directory of this server's own (stale files from another run would be counted)
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fraudvae-metrics-")
        try:
            uvicorn.run("fraudvae_service.app:app", workers=workers, **common)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
