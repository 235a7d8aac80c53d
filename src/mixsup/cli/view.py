"""The viewer command: serve a prediction folder's slides to a local browser."""

from __future__ import annotations

import argparse

from mixsup.cli.common import Command, in_arg, port


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("view", help="browse a prediction folder's slides, heatmaps and top-K "
                       "regions in a web browser")
    p.add_argument("pred", type=in_arg, help="the --out folder of `mixsup predict`")
    p.add_argument("--data", default=None, type=in_arg,
                   help="dataset directory: adds true labels, centers and the metrics")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any "
                   "other needs --allow-remote)")
    p.add_argument("--allow-remote", action="store_true",
                   help="let --host be an address other machines can reach (anyone who can "
                   "reach it sees the slides)")
    p.add_argument("--port", type=port, default=8765, help="port (0: any free one)")
    return {"view": cmd_view}


def cmd_view(args: argparse.Namespace) -> int:
    from mixsup.view.assets import osd_files
    from mixsup.view.catalog import load_catalog
    from mixsup.view.server import check_host, make_server

    check_host(args.host, args.allow_remote)
    osd_files(require=True)
    catalog = load_catalog(args.pred, args.data)
    server = make_server(catalog, args.host, args.port)
    missing = sum(s.missing for s in catalog.slides)
    print(f"mixsup view: {len(catalog.slides)} slides of {args.pred}"
          + (f" ({missing} missing)" if missing else "")
          + f" at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
