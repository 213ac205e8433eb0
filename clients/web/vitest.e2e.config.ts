import { defineConfig } from "vitest/config";

// The end-to-end suite: a real persys-stack serving dist/, driven in Debian's Chromium through
// playwright-core. One file, run in order; each test waits on real conditions, bounded.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  test: {
    include: ["e2e/**/*.e2e.ts"],
    environment: "node",
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["verbose"],
  },
});
