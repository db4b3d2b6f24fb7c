"""What each middleware adds to the similar view's web CPU, in the search path's own context.

rpc_path_bench's part 3 (the view through Django's WSGI handler, each request followed by
the same search through the RPC client alone), repeated with handlers built without one
middleware each (SessionMiddleware goes with the two that need it: authentication and
messages), without the project's own four (catalog.middleware), and without any. The
variants are interleaved in blocks; each row is the p50 of (view CPU - RPC CPU) per
request and what leaving the middleware out saves against the full list. A middleware
measured alone in a tight loop looks cheaper than here, where every request runs after a
wait on a socket.

    python bench/middleware_bench.py --quick --work /tmp/rpb   # shards+DB as rpc_path_bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.in_process_view import ViewCaller, view_cpu  # noqa: E402
from bench.search_data import query_products  # noqa: E402
from bench.search_procs import web_env  # noqa: E402
from bench.served import served  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402

NEEDS_SESSION = (
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)


def variants(full: list[str]) -> dict[str, list[str]]:
    out = {"all": full}
    for name in full:
        dropped = {name, *NEEDS_SESSION} if name.endswith(".SessionMiddleware") else {name}
        label = "- " + name.rsplit(".", 1)[1] + (" (+auth, messages)" if len(dropped) > 1 else "")
        out[label] = [m for m in full if m not in dropped]
    out["- catalog.middleware (4)"] = [m for m in full if not m.startswith("catalog.")]
    out["none"] = []
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50k vectors, 6 rounds")
    parser.add_argument("--n", type=int, default=200_000, help="vectors in all shards")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=50, help="requests per variant a round")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--work", type=Path, help="keep shards+DB here and reuse them")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 50_000, 6
    use_search_threads(1)
    started = time.perf_counter()
    ids, vectors = query_products(args.n, 300)
    catalog = served(args.work, args.n, 2, "hnsw", (ids, vectors), prefix="middleware-bench-")
    with catalog as s:
        view = ViewCaller(web_env(s.work / "data", s.redis.url, 2))
        view_cpu(view, ids, vectors, args.k, len(ids))  # every card cached
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIHandler
        from django.test import override_settings

        handlers = {}
        for label, middleware in variants(list(settings.MIDDLEWARE)).items():
            with override_settings(MIDDLEWARE=middleware):
                handlers[label] = WSGIHandler()
        added: dict[str, list[np.ndarray]] = {label: [] for label in handlers}
        for _ in range(args.rounds):
            for label, handler in handlers.items():
                view.handler = handler
                costs = view_cpu(view, ids, vectors, args.k, args.block)
                added[label].append(costs[:, 0] - costs[:, 1])

    p50 = {label: float(np.median(np.concatenate(v))) for label, v in added.items()}
    base = p50["all"]
    print(f"\nmiddleware_bench: {args.n:,} vectors, 2 shards, k={args.k}; "
          f"{args.rounds} rounds x {args.block} requests a variant; load avg "
          f"{os.getloadavg()[0]:.1f} (shared cores: noisy)")  # fmt: skip
    print(f"{'handler built with':<44}{'view - RPC CPU p50 ms':>22}{'saves ms':>10}")
    for label, value in p50.items():
        print(f"{label:<44}{value:22.3f}{base - value:10.3f}")
    print(
        f"middleware_bench: the view adds {base:.3f} ms CPU p50 over the RPC with every "
        f"middleware, {p50['none']:.3f} with none ({base - p50['none']:.3f} of it theirs, "
        f"{base - p50['- catalog.middleware (4)']:.3f} the project's own four); "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
