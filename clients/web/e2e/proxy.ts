// A TCP proxy on loopback in front of the gateway, so a test can break the browser's streams
// for real: `cut()` destroys every open connection and refuses new ones until `restore()`.
import { createConnection, createServer, type Socket } from "node:net";

/** A running proxy. */
export interface Proxy {
  url: string;
  cut: () => void;
  restore: () => void;
  /** Bytes sent from the gateway to the browser so far. */
  bytesToClient: () => number;
  close: () => Promise<void>;
}

/** Starts a proxy to `target` (http://host:port). */
export async function startProxy(target: string): Promise<Proxy> {
  const { hostname, port } = new URL(target);
  const open = new Set<Socket>();
  let refusing = false;
  let toClient = 0;
  const server = createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = createConnection({ host: hostname, port: Number(port) });
    for (const s of [client, upstream]) {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.on("data", (d: Buffer) => {
      toClient += d.length;
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("the proxy has no TCP address");
  return {
    url: `http://127.0.0.1:${addr.port}`,
    cut: () => {
      refusing = true;
      for (const s of open) s.destroy();
    },
    restore: () => {
      refusing = false;
    },
    bytesToClient: () => toClient,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
