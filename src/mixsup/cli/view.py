"""The viewer command: serve a prediction folder's slides to a local browser."""

from __future__ import annotations

import argparse

from mixsup.cli.common import Command, port


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("view", help="browse a prediction folder's slides, heatmaps and top-K "
                       "regions in a web browser")
    p.add_argument("pred", help="the --out folder of `mixsup predict`")
    p.add_argument("--data", default=None,
                   help="dataset directory: adds true labels, centers and the metrics")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8765, help="port (0: any free one)")
    return {"view": cmd_view}


def cmd_view(args: argparse.Namespace) -> int:
    from mixsup.view.assets import osd_files
    from mixsup.view.catalog import load_catalog
    from mixsup.view.server import make_server

    osd_files(require=True)
    catalog = load_catalog(args.pred, args.data)
    server = make_server(catalog, args.host, args.port)
    if not server.loopback:
        print(f"warning: listening on {args.host}: anyone who can reach this machine can see "
              "these slides", flush=True)
    print(f"mixsup view: {len(catalog.slides)} slides of {args.pred} at {server.url} "
          "(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
