/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// Preact's JSX through esbuild (no framework plugin needed); one entry, hashed assets under
// assets/ (the gateway serves them as immutable).
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    target: "es2022",
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    // No inline scripts or data: URLs: the gateway's Content-Security-Policy forbids them.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: { port: 5173, strictPort: true },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
