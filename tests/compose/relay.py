#!/usr/bin/env python3
"""A byte relay between two endpoints, for tests/compose/run.sh.

    relay.py LISTEN CONNECT      each one tcp:HOST:PORT or unix:PATH

Accepts connections on LISTEN and copies bytes both ways to a new connection to CONNECT, until
either side closes. The compose test runs one on the host (a unix socket in its temporary root,
relayed to the test bench's kube-apiserver on 127.0.0.1) and one inside its network namespace
(a TCP port relayed to that socket): a unix socket is the one door between the two network
namespaces, so the containers reach the API server without it listening beyond loopback. TLS
passes through untouched. Prints "listening" on stdout once the listener is bound.
"""

import asyncio
import sys


def parse(spec):
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest:
        return ("unix", rest)
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return ("tcp", (host, int(port)))
    sys.exit(f"relay: `{spec}` is neither tcp:HOST:PORT nor unix:PATH")


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def main(listen, connect):
    async def handle(reader, writer):
        try:
            if connect[0] == "unix":
                up_reader, up_writer = await asyncio.open_unix_connection(connect[1])
            else:
                up_reader, up_writer = await asyncio.open_connection(*connect[1])
        except OSError as e:
            print(f"relay: cannot reach {connect[1]}: {e}", file=sys.stderr, flush=True)
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    if listen[0] == "unix":
        server = await asyncio.start_unix_server(handle, listen[1])
    else:
        server = await asyncio.start_server(handle, *listen[1])
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(main(parse(sys.argv[1]), parse(sys.argv[2])))
