"""The ``vgh`` command: list, run, reproduce and build the book.

Examples::

    vgh list
    vgh run 01_costates_are_value_gradients --profile smoke -p seed 3
    vgh reproduce --profile default --jobs 2
    vgh reproduce --dask tcp://scheduler:8786      # the grids run on a Dask cluster
    vgh book
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vgh_lib.common import parallel
from vgh_lib.driver import registry, runner
from vgh_lib.harness.params import PROFILE_NAMES, ParameterError

DASK_HELP = (f"run the experiment grids on the Dask cluster at this scheduler address "
             f"(default: ${parallel.SCHEDULER_ENV}); workers need vgh_lib and a shared filesystem")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgh", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="each notebook with its parameters, types and defaults")

    run = sub.add_parser("run", help="execute one notebook with papermill")
    run.add_argument("name", help="notebook name, e.g. 01_costates_are_value_gradients")
    run.add_argument("--profile", default="default", choices=PROFILE_NAMES)
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("KEY", "VALUE"), help="override one parameter (repeatable)")
    run.add_argument("--out", type=Path, default=runner.DEFAULT_OUT,
                     help="output folder (default: book/executed)")
    run.add_argument("--force", action="store_true", help="run even if cached")
    run.add_argument("--dask", metavar="ADDRESS", help=DASK_HELP)

    rep = sub.add_parser("reproduce", help="execute every notebook (cached ones are skipped)")
    rep.add_argument("--profile", default="default", choices=PROFILE_NAMES)
    rep.add_argument("--jobs", type=int, default=1)
    rep.add_argument("--only", nargs="+", metavar="NAME")
    rep.add_argument("--out", type=Path, default=runner.DEFAULT_OUT)
    rep.add_argument("--force", action="store_true")
    rep.add_argument("--dask", metavar="ADDRESS", help=DASK_HELP)

    book = sub.add_parser("book", help="reproduce, then build the HTML book (strict)")
    book.add_argument("--profile", default="default", choices=PROFILE_NAMES)
    book.add_argument("--jobs", type=int, default=1)
    book.add_argument("--root", type=Path, default=runner.REPO_ROOT,
                      help="book root holding _config.yml and _toc.yml")

    from vgh_lib.tools import probe
    probe.add_arguments(sub.add_parser("probe", help="value impact (S, H, I = S·H) of local checkpoints"))
    return p


def _list() -> int:
    for nb in registry.NOTEBOOKS.values():
        print(f"{nb.name}: {nb.title}")
        for name, allowed, default, help_ in nb.params.describe():
            print(f"    {name:<22} {allowed:<34} default {default!r:<12} {help_}")
        for prof, over in nb.profiles.items():
            if over:
                print(f"    profile {prof}: " + ", ".join(f"{k}={v}" for k, v in over.items()))
        print()
    return 0


def _summary(results: list[runner.RunResult]) -> int:
    print("\nsummary:")
    for r in results:
        extra = f" (failed identity claims: {', '.join(r.failed_claims)})" if r.failed_claims else ""
        print(f"  {r.name:<40} {r.status:<7} {r.seconds:7.1f}s{extra}")
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    saved_scheduler = os.environ.get(parallel.SCHEDULER_ENV)
    try:
        if args.command == "list":
            return _list()
        address = getattr(args, "dask", None) or parallel.scheduler_address()
        if address and args.command in ("run", "reproduce"):
            # papermill's kernels inherit the environment; run_jobs reads it there (restored on
            # return). The address is neither a parameter nor part of the cache key: results
            # do not depend on it.
            os.environ[parallel.SCHEDULER_ENV] = address
            try:
                print(f"grids run on the {parallel.check_scheduler(address)}")
            except (ImportError, ConnectionError) as exc:
                print(f"vgh: error: {exc}", file=sys.stderr)
                return 2
        if args.command == "probe":
            from vgh_lib.tools import probe
            return probe.run_cli(args)
        if args.command == "run":
            overrides = dict(args.parameter)
            result = runner.run_notebook(args.name, args.profile, overrides, out=args.out,
                                         force=args.force)
            return _summary([result])
        if args.command == "reproduce":
            return _summary(runner.reproduce(args.profile, args.jobs, args.only, out=args.out,
                                             force=args.force))
        if args.command == "book":
            results = runner.reproduce(args.profile, args.jobs,
                                       out=args.root / "book" / "executed")
            status = _summary(results)
            code = runner.build_book(args.root)
            if code == 0:
                print(f"book built: {args.root / '_build' / 'html' / 'index.html'}")
            else:
                print("jupyter-book build failed (warnings are errors)", file=sys.stderr)
            return status or code
    except ParameterError as exc:
        print(f"vgh: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if saved_scheduler is None:
            os.environ.pop(parallel.SCHEDULER_ENV, None)
        else:
            os.environ[parallel.SCHEDULER_ENV] = saved_scheduler
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
