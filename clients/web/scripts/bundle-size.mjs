// Prints the dashboard's initial JavaScript (the scripts and module preloads index.html loads
// before anything else), raw and gzipped, and fails when the gzipped total passes the budget
// of issue 14 (250 KB). Usage: node scripts/bundle-size.mjs [dist]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 250 * 1024;
const dist = process.argv[2] ?? "dist";
const html = readFileSync(join(dist, "index.html"), "utf8");
const srcs = [
  ...html.matchAll(/<script[^>]*\bsrc="([^"]+)"/g),
  ...html.matchAll(/<link[^>]*rel="modulepreload"[^>]*href="([^"]+)"/g),
].map((m) => m[1]);
if (srcs.length === 0) throw new Error(`no script in ${dist}/index.html`);
let raw = 0;
let gz = 0;
for (const src of srcs) {
  const bytes = readFileSync(join(dist, src.replace(/^\//, "")));
  const g = gzipSync(bytes, { level: 9 }).length;
  raw += bytes.length;
  gz += g;
  console.log(`  ${src}: ${(bytes.length / 1024).toFixed(1)} KB, ${(g / 1024).toFixed(1)} KB gzipped`);
}
console.log(
  `dashboard initial JavaScript: ${(raw / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB)`,
);
if (gz > BUDGET) {
  console.error("over the budget");
  process.exit(1);
}
